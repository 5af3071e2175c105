//! The KV port: each app's key-value state, for scripts (`kv::get`, …) and
//! the admin API.
//!
//! **Semantics every store keeps** (the conformance cases check each):
//! - **Apps are separate:** no call on one app sees or changes another's
//!   keys.
//! - **Expired keys are never returned** (by `get`, `get` of a versioned
//!   entry, `list`, `incr` or `cas`, which treat them as absent), whether
//!   or not they were swept yet. "Now" is the store's clock.
//! - **Each write is atomic**, one statement (or one transaction) in SQL:
//!   `incr` and `cas` never lose an update under concurrent callers.
//! - **Versions never repeat** within an app: each write gives the key a
//!   version greater than any the app's keys had (a sequence), so a `cas`
//!   against an old version fails even if the key was deleted and written
//!   again since.
//! - **Quotas:** a write that would take the app past its
//!   [`KvQuota`] (keys or bytes, counting the entry it replaces as gone)
//!   is refused with [`KvError::QuotaExceeded`] and changes nothing.
//!   Concurrent writes of one app are checked one after another (a
//!   PostgreSQL store locks the app's usage row), so they cannot pass it
//!   together.
//! - **Sweeping** deletes expired keys and gives their room back; the
//!   caller (a sweeper that sleeps until [`KvStore::kv_next_expiry`]) decides
//!   when, so an idle store burns no CPU.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::BoxError;
use crate::domain::{KvEntry, KvPage, KvQuota, KvUsage, KvWrite};
use crate::ids::AppId;

/// Errors of [`KvStore`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// No such app (a write for an app that does not exist).
    #[error("app not found")]
    AppNotFound,
    /// The write would pass the app's quota; nothing changed. The usage is
    /// what the app held before it.
    #[error("the app's KV quota is full")]
    QuotaExceeded(KvUsage),
    /// `incr` of a key whose value is not an integer.
    #[error("the value is not an integer")]
    NotAnInteger,
    /// `incr` past the range of a 64-bit integer.
    #[error("the value would overflow")]
    Overflow,
    /// The backend failed.
    #[error("KV store backend error: {0}")]
    Backend(#[source] BoxError),
}

/// Stores each app's keys. They go with their app (an app delete removes
/// them).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait KvStore: Send + Sync {
    /// The unexpired entry of `key`, if any.
    async fn kv_get(&self, app: AppId, key: &str) -> Result<Option<KvEntry>, KvError>;

    /// Writes `write` (creating or replacing the key) within `quota`, and
    /// returns the new entry.
    async fn kv_set(&self, app: AppId, write: KvWrite, quota: KvQuota) -> Result<KvEntry, KvError>;

    /// Writes `write` only if the key's current version is `expected`
    /// (`None`: only if the key is absent or expired). `Ok(None)` when the
    /// version moved, and nothing changed.
    async fn kv_cas(
        &self,
        app: AppId,
        expected: Option<i64>,
        write: KvWrite,
        quota: KvQuota,
    ) -> Result<Option<KvEntry>, KvError>;

    /// Adds `by` to the integer value of `key` (an absent or expired key
    /// counts as 0, and is created without a TTL; an existing key keeps its
    /// TTL) and returns the new value. [`KvError::NotAnInteger`] if the
    /// value is not a JSON integer.
    async fn kv_incr(&self, app: AppId, key: &str, by: i64, quota: KvQuota)
    -> Result<i64, KvError>;

    /// Deletes `key`; whether an unexpired key was there.
    async fn kv_delete(&self, app: AppId, key: &str) -> Result<bool, KvError>;

    /// Up to `limit` unexpired keys starting with `prefix`, in byte order,
    /// strictly after `after` if given; the cursor is the last key of a
    /// full page (`None` when no key follows).
    async fn kv_list(
        &self,
        app: AppId,
        prefix: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<KvPage, KvError>;

    /// What the app holds.
    async fn kv_usage(&self, app: AppId) -> Result<KvUsage, KvError>;

    /// Deletes up to `limit` expired keys (of every app), returning how
    /// many.
    async fn kv_sweep(&self, limit: usize) -> Result<u64, KvError>;

    /// When the next key expires (of every app), if any does.
    async fn kv_next_expiry(&self) -> Result<Option<DateTime<Utc>>, KvError>;
}
