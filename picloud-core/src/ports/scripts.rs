//! The scripts port: scripts, their immutable versions, per-app limits.

use async_trait::async_trait;

use super::BoxError;
use crate::domain::{Deployed, Script, ScriptName, ScriptVersion};
use crate::ids::{AdminUserId, AppId};

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
    /// [`ScriptRepoError::NotFound`] if the app does not exist.
    async fn deploy(
        &self,
        app: AppId,
        name: &ScriptName,
        source: String,
        by: AdminUserId,
    ) -> Result<Deployed, ScriptRepoError>;

    /// The script, if any.
    async fn get(&self, app: AppId, name: &ScriptName) -> Result<Option<Script>, ScriptRepoError>;

    /// The app's scripts, by name.
    async fn list(&self, app: AppId) -> Result<Vec<Script>, ScriptRepoError>;

    /// A script's versions, oldest first.
    async fn versions(
        &self,
        app: AppId,
        name: &ScriptName,
    ) -> Result<Vec<ScriptVersion>, ScriptRepoError>;

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

    /// Every script's live version, across all apps (to warm a node's cache).
    async fn all_live(&self) -> Result<Vec<(Script, ScriptVersion)>, ScriptRepoError>;

    /// The app's limits override, as JSON text, if any.
    async fn app_limits(&self, app: AppId) -> Result<Option<String>, ScriptRepoError>;

    /// Sets (or, with `None`, clears) the app's limits override.
    /// [`ScriptRepoError::NotFound`] if the app does not exist.
    async fn set_app_limits(
        &self,
        app: AppId,
        limits: Option<String>,
    ) -> Result<(), ScriptRepoError>;
}
