//! The scripts port: scripts and their immutable versions.
//!
//! **Storage is bounded per app.** Every version is kept (rollback needs
//! them), so a deploy is refused once the app's script sources, across all
//! versions of all its scripts, would pass [`StorageQuota::source_bytes_per_app`]
//! (default [`SOURCE_BYTES_PER_APP`], 64 MiB), or once a script has
//! [`StorageQuota::versions_per_script`] versions (default
//! [`VERSIONS_PER_SCRIPT`], 1000). The check and the insert are one atomic
//! step, so concurrent deploys never pass the quota together. Deleting a
//! script ([`ScriptRepository::delete`]) frees its versions' bytes.
//! Listings ([`ScriptRepository::versions`]) return metadata only: a source
//! is read one version at a time.

use async_trait::async_trait;

use super::BoxError;
use crate::domain::{Deployed, Script, ScriptName, ScriptVersion, ScriptVersionInfo, Visibility};
use crate::ids::{AdminUserId, AppId};

/// The default bound on an app's script sources, all versions of all its
/// scripts together: 64 MiB.
pub const SOURCE_BYTES_PER_APP: u64 = 64 * 1024 * 1024;

/// The default bound on the versions of one script: 1000.
pub const VERSIONS_PER_SCRIPT: u32 = 1000;

/// The storage bounds a deploy must stay within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageQuota {
    /// The most bytes of source an app may store, every version counted.
    pub source_bytes_per_app: u64,
    /// The most versions one script may have.
    pub versions_per_script: u32,
}

impl Default for StorageQuota {
    fn default() -> Self {
        Self {
            source_bytes_per_app: SOURCE_BYTES_PER_APP,
            versions_per_script: VERSIONS_PER_SCRIPT,
        }
    }
}

/// Which storage quota a deploy would have passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuotaExceeded {
    /// The app's script sources would pass `limit` bytes.
    #[error(
        "storage quota exceeded: the app's script sources would take more than {limit} bytes \
         (all versions count; delete scripts you no longer need)"
    )]
    SourceBytesPerApp {
        /// The quota, in bytes.
        limit: u64,
    },
    /// The script already has `limit` versions.
    #[error(
        "storage quota exceeded: a script keeps at most {limit} versions \
         (delete the script to start again)"
    )]
    VersionsPerScript {
        /// The quota, in versions.
        limit: u32,
    },
}

/// Errors of [`ScriptRepository`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScriptRepoError {
    /// No such app, script or version.
    #[error("script, version or app not found")]
    NotFound,
    /// A uniqueness rule was violated.
    #[error("script conflict: {0}")]
    Conflict(String),
    /// The deploy would pass a storage quota; nothing was stored.
    #[error(transparent)]
    QuotaExceeded(QuotaExceeded),
    /// The backend failed.
    #[error("script store backend error: {0}")]
    Backend(#[source] BoxError),
}

/// Stores scripts and their versions. Versions are immutable; a deploy
/// appends one and makes it live, a rollback makes an older one live again.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ScriptRepository: Send + Sync {
    /// Appends a version (`latest + 1`, or 1 for a new script) and makes it
    /// live, atomically: concurrent deploys get distinct version numbers.
    /// [`ScriptRepoError::NotFound`] if the app does not exist;
    /// [`ScriptRepoError::QuotaExceeded`] if the app's sources would pass
    /// `quota.source_bytes_per_app` bytes with this one (its `len()`), or the
    /// script already has `quota.versions_per_script` versions. The quota is
    /// checked in the same atomic step as the insert: concurrent deploys
    /// never exceed it together.
    async fn deploy(
        &self,
        app: AppId,
        name: &ScriptName,
        source: String,
        by: AdminUserId,
        quota: StorageQuota,
    ) -> Result<Deployed, ScriptRepoError>;

    /// The script, if any.
    async fn get(&self, app: AppId, name: &ScriptName) -> Result<Option<Script>, ScriptRepoError>;

    /// The app's scripts, by name.
    async fn list(&self, app: AppId) -> Result<Vec<Script>, ScriptRepoError>;

    /// A script's versions, oldest first: metadata only, no source is read.
    async fn versions(
        &self,
        app: AppId,
        name: &ScriptName,
    ) -> Result<Vec<ScriptVersionInfo>, ScriptRepoError>;

    /// One version, if it exists.
    async fn version(
        &self,
        app: AppId,
        name: &ScriptName,
        version: u32,
    ) -> Result<Option<ScriptVersion>, ScriptRepoError>;

    /// Makes `version` live again. [`ScriptRepoError::NotFound`] if the script
    /// or the version does not exist.
    async fn set_live(
        &self,
        app: AppId,
        name: &ScriptName,
        version: u32,
    ) -> Result<Script, ScriptRepoError>;

    /// Sets who may call the script `name` of `app`, and returns it.
    /// [`ScriptRepoError::NotFound`] if there is no such script.
    async fn set_visibility(
        &self,
        app: AppId,
        name: &ScriptName,
        visibility: Visibility,
    ) -> Result<Script, ScriptRepoError>;

    /// Deletes a script with its versions and invocation records, freeing
    /// their bytes of the app's quota. Returns whether it existed; deleting
    /// a missing script is not an error.
    async fn delete(&self, app: AppId, name: &ScriptName) -> Result<bool, ScriptRepoError>;

    /// The bytes of script source the app stores now, every version of
    /// every script counted (what [`StorageQuota::source_bytes_per_app`]
    /// bounds). 0 for an unknown app.
    async fn source_bytes(&self, app: AppId) -> Result<u64, ScriptRepoError>;

    /// Every script's live version, across all apps (to warm a node's cache).
    async fn all_live(&self) -> Result<Vec<(Script, ScriptVersion)>, ScriptRepoError>;
}
