//! The scripts service (feature `executor`): deploy, list, roll back, show
//! invocations, set an app's limits, and invoke.
//!
//! **Hot path.** `invoke` reads nothing from the store and compiles nothing:
//! each live version is compiled once (at deploy, at rollback, or when the
//! node warms up) and kept in the [`ScriptCache`], keyed by app slug and
//! script name, with the app's effective
//! [`Limits`](crate::executor::Limits). The invocation record is handed to
//! the [`InvocationWriter`], a background task that writes batches, so the
//! request never waits on the invocation log.
//!
//! **Cluster mode** (not built yet): a deploy on one node must reach the
//! others. The hook is [`ScriptService::refresh`]: a node that hears of a
//! deploy (PostgreSQL `LISTEN script_deployed`, payload `app_id/name`) calls
//! it to recompile that script's live version into its own cache.

mod cache;
mod credentials;
mod host;
mod service;
mod tails;
mod writer;

pub use cache::{LiveScript, ScriptCache};
pub(crate) use credentials::strip_credentials as strip_stored_credentials;
pub use credentials::{MAX_CREDENTIAL_LOOKUPS, SESSION_COOKIE};
pub use host::{KV_CALLS_AT_ONCE, OutboundHttp, RunHost};
pub use service::{
    AppInvocationsQuery, AppSettings, LogTail, ScriptDetail, ScriptService, SettingsPatch,
    StorageUsage, TAIL_BACKLOG, TAIL_RECORD_MAX_BYTES, TailEvent, TailItem, exec_status,
    to_the_end,
};
pub use tails::{MAX_TAILS, MAX_TAILS_PER_USER};
pub use writer::InvocationWriter;

use crate::authz::AuthzRepoError;
use crate::error::{ErrorKind, ServiceError};
use crate::executor::{CompileError, ExecError};
use crate::ports::{
    AppRepoError, InvocationRepoError, QuotaExceeded, ScriptRepoError, SettingsRepoError,
};

/// The largest script source accepted, in bytes.
pub const MAX_SOURCE_BYTES: usize = 2 * 1024 * 1024;

/// How many compiles of one app may run at once. A compile holds one of
/// these from start to finish, even after its uploader went away (it is
/// cancelled then, and ends within a few tokens), so abandoned uploads
/// cannot pile up. Apps never wait for each other's compiles.
pub const COMPILES_PER_APP: usize = 2;

/// Every outcome of [`ScriptService`]'s admin calls other than success.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScriptError {
    /// The caller may not do this.
    #[error("forbidden")]
    Forbidden,
    /// No app has this id or slug.
    #[error("app not found: {0}")]
    AppNotFound(String),
    /// The app has no script of this name.
    #[error("script not found: {0}")]
    ScriptNotFound(String),
    /// The script has no such version.
    #[error("version {0} not found")]
    VersionNotFound(u32),
    /// The request breaks a rule (a bad name, a source too large, bad limits).
    #[error("{0}")]
    Invalid(String),
    /// The source does not compile; nothing was stored.
    #[error("{0}")]
    Compile(CompileError),
    /// The deploy would pass the app's storage quota; nothing was stored.
    #[error(transparent)]
    QuotaExceeded(QuotaExceeded),
    /// The script store failed.
    #[error("script repository error: {0}")]
    Scripts(ScriptRepoError),
    /// The app store failed.
    #[error("app repository error: {0}")]
    Apps(#[from] AppRepoError),
    /// The authorization lookup failed.
    #[error("authorization repo error: {0}")]
    Authz(#[from] AuthzRepoError),
    /// The invocation log failed.
    #[error("invocation log error: {0}")]
    Invocations(#[from] InvocationRepoError),
    /// The settings store failed.
    #[error("settings repository error: {0}")]
    Settings(SettingsRepoError),
    /// The app's stored limits override cannot be read: its scripts do not
    /// run (rather than run under defaults that may be higher) until an app
    /// admin sets its limits again.
    #[error("the stored limits of app {app} cannot be read: {reason}")]
    StoredLimits {
        /// The app.
        app: crate::ids::AppId,
        /// Why not.
        reason: String,
    },
    /// The node has [`MAX_TAILS`] log streams open.
    #[error("too many log streams are open on this server; try again later")]
    TailsFull,
    /// The caller has [`MAX_TAILS_PER_USER`] log streams open.
    #[error("you have {MAX_TAILS_PER_USER} log streams open already; close one first")]
    TooManyTails,
}

impl From<ScriptRepoError> for ScriptError {
    fn from(e: ScriptRepoError) -> Self {
        Self::Scripts(e)
    }
}

crate::error::from_authz_denied!(ScriptError, not_found = AppNotFound);

impl ServiceError for ScriptError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Forbidden => ErrorKind::Forbidden,
            Self::AppNotFound(_) | Self::ScriptNotFound(_) | Self::VersionNotFound(_) => {
                ErrorKind::NotFound
            }
            Self::Invalid(_) | Self::Compile(_) | Self::QuotaExceeded(_) => ErrorKind::Invalid,
            Self::Scripts(_)
            | Self::Apps(_)
            | Self::Authz(_)
            | Self::Invocations(_)
            | Self::Settings(_)
            | Self::StoredLimits { .. } => ErrorKind::Internal,
            Self::TailsFull => ErrorKind::Busy,
            Self::TooManyTails => ErrorKind::Throttled,
        }
    }
}

/// Why an invocation produced no script response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvokeError {
    /// No app has this slug.
    #[error("no app {0}")]
    AppNotFound(String),
    /// The app has no script of this name.
    #[error("no script {script} in app {app}")]
    NotFound {
        /// The app slug asked for.
        app: String,
        /// The script name asked for.
        script: String,
    },
    /// A private script, and no PiCloud credentials came with the call.
    #[error("this script is private: send a PiCloud token with access to its app")]
    Unauthenticated,
    /// A private script, and the caller may not see its app.
    #[error("forbidden")]
    Forbidden,
    /// The executor refused or failed before running the script.
    #[error(transparent)]
    Exec(ExecError),
}
