//! The API-token port. Stores keep only a hash of each token: the secret is
//! shown once, when it is issued, and never stored.

use async_trait::async_trait;

use super::BoxError;
use crate::domain::{AdminUser, ApiToken, NewApiToken};
use crate::ids::{AdminUserId, TokenId};

/// Errors of [`TokenRepository`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenRepoError {
    /// The token's user or scope app does not exist (a foreign key), or there
    /// is no such token.
    #[error("token, user or app not found")]
    NotFound,
    /// The token id or hash is already taken.
    #[error("token conflict: {0}")]
    Conflict(String),
    /// The backend failed.
    #[error("token store backend error: {0}")]
    Backend(#[source] BoxError),
}

/// Stores API tokens (hashed) and resolves a presented token to its user.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait TokenRepository: Send + Sync {
    /// Stores a new token. [`TokenRepoError::NotFound`] if its user or scope
    /// app does not exist.
    ///
    /// Expired tokens must not pile up (a login creates a token every time):
    /// `create` also deletes tokens of any user whose `expires_at` has passed,
    /// a bounded batch of the oldest at a time and never the token it stores,
    /// so that after a `create` an already expired token is gone when the
    /// batch covers it (the conformance suite checks a handful). A store may
    /// also delete expired tokens at any other time.
    async fn create(&self, token: NewApiToken) -> Result<ApiToken, TokenRepoError>;

    /// The token with this hash and its user, read together (one query), so
    /// that a deactivated user is seen at once. Expiry is the caller's check:
    /// an expired token may still be returned until it is purged.
    async fn find_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<(ApiToken, AdminUser)>, TokenRepoError>;

    /// The tokens of `user`, newest first (expired ones until they are
    /// purged).
    async fn list_for_user(&self, user: AdminUserId) -> Result<Vec<ApiToken>, TokenRepoError>;

    /// Deletes `user`'s token `id`. Idempotent; another user's token is left alone.
    async fn revoke(&self, user: AdminUserId, id: TokenId) -> Result<(), TokenRepoError>;
}
