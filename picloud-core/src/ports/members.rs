//! The app-members port. Every method is atomic: in SQL, each is one statement.

use async_trait::async_trait;

use super::BoxError;
use crate::domain::{AppMembership, AppMembershipDetail, AppRole};
use crate::ids::{AdminUserId, AppId};

/// Errors of [`AppMembersRepository`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppMembersRepoError {
    /// The app or the user does not exist (a foreign-key violation).
    #[error("app or user not found")]
    NotFound,
    /// A uniqueness rule was violated.
    #[error("membership conflict: {0}")]
    Conflict(String),
    /// The backend failed.
    #[error("membership store backend error: {0}")]
    Backend(#[source] BoxError),
}

/// Stores explicit app memberships.
///
/// | method | returns | rule |
/// |---|---|---|
/// | `list_for_app_enriched` | rows joined with users | includes inactive users; ordered by username |
/// | `find` | `Option<row>` | |
/// | `try_insert` | `Option<row>` | `None` iff the pair exists; never overwrites |
/// | `update_role` | `Option<row>` | `None` iff no row; never creates |
/// | `upsert` | row | for bootstrap and test helpers only |
/// | `remove` | `()` | idempotent |
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait AppMembersRepository: Send + Sync {
    /// Every member of `app` joined with their user, inactive users included,
    /// ordered by username (byte order).
    async fn list_for_app_enriched(
        &self,
        app: AppId,
    ) -> Result<Vec<AppMembershipDetail>, AppMembersRepoError>;

    /// The membership of `user` on `app`, if any.
    async fn find(
        &self,
        app: AppId,
        user: AdminUserId,
    ) -> Result<Option<AppMembership>, AppMembersRepoError>;

    /// Inserts the membership unless the pair already exists. `None` iff it
    /// existed; an existing row is never overwritten.
    /// [`AppMembersRepoError::NotFound`] if the app or the user does not exist.
    async fn try_insert(
        &self,
        app: AppId,
        user: AdminUserId,
        role: AppRole,
    ) -> Result<Option<AppMembership>, AppMembersRepoError>;

    /// Changes the role of an existing membership. `None` iff there is no row;
    /// a row is never created.
    async fn update_role(
        &self,
        app: AppId,
        user: AdminUserId,
        role: AppRole,
    ) -> Result<Option<AppMembership>, AppMembersRepoError>;

    /// Inserts or overwrites. For bootstrap and test helpers only: the service
    /// uses `try_insert` and `update_role`.
    async fn upsert(
        &self,
        app: AppId,
        user: AdminUserId,
        role: AppRole,
    ) -> Result<AppMembership, AppMembersRepoError>;

    /// Removes the membership. Idempotent: removing a missing row succeeds.
    async fn remove(&self, app: AppId, user: AdminUserId) -> Result<(), AppMembersRepoError>;
}
