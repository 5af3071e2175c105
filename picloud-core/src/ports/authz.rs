//! The authorization fact port: a user's explicit role on an app.

use async_trait::async_trait;

use super::BoxError;
use crate::domain::AppRole;
use crate::ids::{AdminUserId, AppId};

/// Errors of [`AuthzRepository`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthzRepoError {
    /// The backend failed.
    #[error("authorization store backend error: {0}")]
    Backend(#[source] BoxError),
}

/// Answers the one fact [`crate::authz::require`] needs from a store.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait AuthzRepository: Send + Sync {
    /// The explicit role `user` holds on `app`, if any.
    async fn app_role(
        &self,
        app: AppId,
        user: AdminUserId,
    ) -> Result<Option<AppRole>, AuthzRepoError>;
}
