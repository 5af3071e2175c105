//! The settings port: what an app has set for itself, apart from its
//! scripts: its limits override, and how much of a script error its public
//! callers see.

use async_trait::async_trait;

use super::BoxError;
use crate::domain::PublicErrors;
use crate::ids::AppId;
use crate::limits::Limits;

/// Errors of [`AppSettingsRepository`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsRepoError {
    /// No such app.
    #[error("app not found")]
    NotFound,
    /// A stored value could not be read back (written by another version
    /// of PiCloud, say: a limits override with a field this one does not
    /// know). The reason says what could not be read.
    #[error("stored value unreadable: {0}")]
    Unreadable(String),
    /// The backend failed.
    #[error("settings store backend error: {0}")]
    Backend(#[source] BoxError),
}

/// Stores each app's settings. They go with their app.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait AppSettingsRepository: Send + Sync {
    /// The app's limits override, if any (`None` for an unknown app too).
    /// One the store cannot read back is [`SettingsRepoError::Unreadable`],
    /// never `None`: the defaults may be higher than what the app was given.
    async fn app_limits(&self, app: AppId) -> Result<Option<Limits>, SettingsRepoError>;

    /// Sets (or, with `None`, clears) the app's limits override. A store
    /// may keep `wall_clock` to the millisecond only (its JSON form,
    /// `wall_clock_ms`); every other field is kept exactly.
    /// [`SettingsRepoError::NotFound`] if the app does not exist.
    async fn set_app_limits(
        &self,
        app: AppId,
        limits: Option<Limits>,
    ) -> Result<(), SettingsRepoError>;

    /// How much of a script error the app's callers see (the default,
    /// [`PublicErrors::Detailed`], for an app that never set it, and for an
    /// unknown app).
    async fn public_errors(&self, app: AppId) -> Result<PublicErrors, SettingsRepoError>;

    /// Sets it. [`SettingsRepoError::NotFound`] if the app does not exist.
    async fn set_public_errors(
        &self,
        app: AppId,
        errors: PublicErrors,
    ) -> Result<(), SettingsRepoError>;

    /// The app's allowlist of outbound hosts, in the order set; `None` (any
    /// host the instance's egress rule allows) for an app that never set
    /// one, and for an unknown app.
    async fn egress_hosts(&self, app: AppId) -> Result<Option<Vec<String>>, SettingsRepoError>;

    /// Sets (or, with `None`, clears) it; the hosts are already checked
    /// ([`validate_egress_hosts`](crate::domain::validate_egress_hosts)).
    /// [`SettingsRepoError::NotFound`] if the app does not exist.
    async fn set_egress_hosts(
        &self,
        app: AppId,
        hosts: Option<Vec<String>>,
    ) -> Result<(), SettingsRepoError>;
}
