//! The environment port: each app's variables and secrets, and each app's
//! data key (wrapped by the instance's master key, which never reaches the
//! store).
//!
//! A store keeps secrets only in their sealed form; it never sees a
//! plaintext secret or a plaintext data key.

use async_trait::async_trait;

use super::BoxError;
use crate::domain::{EnvName, EnvValue, EnvVar, WrappedKey};
use crate::ids::AppId;

/// Errors of [`EnvRepository`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvRepoError {
    /// No such app.
    #[error("app not found")]
    AppNotFound,
    /// The app already holds `max` variables and this one is new.
    #[error("an app may hold at most {0} variables")]
    TooMany(usize),
    /// A wrapped data key is not the one expected (a racing rotation).
    #[error("the data key changed")]
    KeyChanged,
    /// The backend failed.
    #[error("env store backend error: {0}")]
    Backend(#[source] BoxError),
}

/// Stores each app's environment and its data key. Both go with their app.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait EnvRepository: Send + Sync {
    /// Creates or replaces `name`; `true` if it was created. A new name
    /// past `max_vars` variables is [`EnvRepoError::TooMany`] (checked
    /// atomically with the insert).
    async fn env_put(
        &self,
        app: AppId,
        name: &EnvName,
        value: EnvValue,
        max_vars: usize,
    ) -> Result<bool, EnvRepoError>;

    /// Deletes `name`; whether it was there.
    async fn env_delete(&self, app: AppId, name: &EnvName) -> Result<bool, EnvRepoError>;

    /// The app's variables, by name.
    async fn env_list(&self, app: AppId) -> Result<Vec<EnvVar>, EnvRepoError>;

    /// The app's data key, if it has one yet.
    async fn data_key(&self, app: AppId) -> Result<Option<WrappedKey>, EnvRepoError>;

    /// Stores `key` as the app's data key unless it has one already, and
    /// returns the one it has after the call (so racing first writers agree
    /// on one key).
    async fn data_key_insert(
        &self,
        app: AppId,
        key: WrappedKey,
    ) -> Result<WrappedKey, EnvRepoError>;

    /// Every app's data key (for a master key rotation).
    async fn data_keys(&self) -> Result<Vec<(AppId, WrappedKey)>, EnvRepoError>;

    /// Replaces the app's data key `old` by `new` (the same key wrapped
    /// under another master key); [`EnvRepoError::KeyChanged`] if the
    /// stored one is not `old`.
    async fn data_key_replace(
        &self,
        app: AppId,
        old: &WrappedKey,
        new: WrappedKey,
    ) -> Result<(), EnvRepoError>;
}
