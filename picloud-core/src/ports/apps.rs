//! The apps port.

use async_trait::async_trait;
use uuid::Uuid;

use super::BoxError;
use crate::domain::{App, AppRole, DisplayName, NewApp};
use crate::ids::{AdminUserId, AppId};

/// Errors of [`AppRepository`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppRepoError {
    /// No such app.
    #[error("app not found")]
    NotFound,
    /// The slug (or id) is already taken.
    #[error("app slug already taken: {0}")]
    Conflict(String),
    /// The backend failed.
    #[error("app store backend error: {0}")]
    Backend(#[source] BoxError),
}

/// Stores apps.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait AppRepository: Send + Sync {
    /// Stores a new app. [`AppRepoError::Conflict`] if its slug is taken.
    async fn create(&self, app: NewApp) -> Result<App, AppRepoError>;

    /// The app with this id, if any.
    async fn get(&self, id: AppId) -> Result<Option<App>, AppRepoError>;

    /// The app with this slug, if any.
    async fn find_by_slug(&self, slug: &str) -> Result<Option<App>, AppRepoError>;

    /// Every app, ordered by slug.
    async fn list(&self) -> Result<Vec<App>, AppRepoError>;

    /// The apps on which `user` holds an explicit membership, with that
    /// role, ordered by slug.
    async fn list_for_member(&self, user: AdminUserId)
    -> Result<Vec<(App, AppRole)>, AppRepoError>;

    /// Gives the app `id` a new display name (its slug and id stay), and
    /// returns it. [`AppRepoError::NotFound`] if there is no such app.
    async fn rename(&self, id: AppId, name: DisplayName) -> Result<App, AppRepoError>;

    /// Deletes an app and, with it, its memberships.
    /// [`AppRepoError::NotFound`] if there is no such app.
    async fn delete(&self, id: AppId) -> Result<(), AppRepoError>;

    /// Resolves a path segment that is either an app id or a slug. An id is
    /// tried first; a UUID-shaped string that matches no id is tried as a slug.
    /// A string that is not a valid slug matches nothing and reaches no
    /// store (it may hold bytes a database refuses, such as NUL).
    async fn resolve(&self, id_or_slug: &str) -> Result<Option<App>, AppRepoError> {
        if let Ok(id) = Uuid::parse_str(id_or_slug)
            && let Some(app) = self.get(AppId::from(id)).await?
        {
            return Ok(Some(app));
        }
        if crate::domain::Slug::parse(id_or_slug).is_err() {
            return Ok(None);
        }
        self.find_by_slug(id_or_slug).await
    }
}
