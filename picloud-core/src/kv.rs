//! [`KvService`]: the admin API over each app's KV state, and the
//! [`KvSweeper`] that deletes expired keys.
//!
//! Scripts reach their app's keys through the sandbox's `kv` module (see
//! `executor::host`); this is the operator's view: list, read, write and
//! delete keys (`AppView` to read, `AppEdit` to write), under the same key
//! and value rules and the same quota as scripts.
//!
//! Expired keys are never returned (every store read filters them), so
//! sweeping only gives their room back. The sweeper sleeps until the next
//! expiry the store reports, or until a run writes a key with a TTL (the
//! script service's `kv_signal`): an idle server with no expiring keys has
//! no timer at all on the memory store. On PostgreSQL, other nodes' writes
//! are not signalled here, so a backstop re-reads the next expiry every
//! five minutes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::authz::{AuthzRepoError, Capability};
use crate::domain::{
    App, KV_MAX_LIST_LIMIT, KV_MAX_TTL_SECS, KV_MAX_VALUE_BYTES, KvEntry, KvPage, KvUsage, KvWrite,
    Principal, validate_kv_key,
};
use crate::error::{ErrorKind, ServiceError};
use crate::ids::AppId;
use crate::ports::{AppRepoError, KvError, SettingsRepoError};
use crate::stores::Stores;

/// Every outcome of [`KvService`] other than success.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KvServiceError {
    /// The caller may not do this.
    #[error("forbidden")]
    Forbidden,
    /// No app has this id or slug.
    #[error("app not found: {0}")]
    AppNotFound(String),
    /// The app has no such key (or it expired).
    #[error("no key {0:?}")]
    KeyNotFound(String),
    /// The input breaks a rule (a bad key, a value too large, a bad TTL).
    #[error("{0}")]
    Invalid(String),
    /// The app's quota is full; nothing changed.
    #[error(
        "the app's KV quota is full ({} keys, {} bytes held); raise kv_max_keys or kv_max_bytes in its limits",
        .0.keys,
        .0.bytes
    )]
    QuotaExceeded(KvUsage),
    /// The KV store failed.
    #[error("KV store error: {0}")]
    Kv(KvError),
    /// The app store failed.
    #[error("app repository error: {0}")]
    Apps(#[from] AppRepoError),
    /// The settings store failed.
    #[error("settings repository error: {0}")]
    Settings(#[from] SettingsRepoError),
    /// The authorization lookup failed.
    #[error("authorization repo error: {0}")]
    Authz(#[from] AuthzRepoError),
}

crate::error::from_authz_denied!(KvServiceError, not_found = AppNotFound);

impl From<KvError> for KvServiceError {
    fn from(e: KvError) -> Self {
        match e {
            KvError::QuotaExceeded(usage) => Self::QuotaExceeded(usage),
            other => Self::Kv(other),
        }
    }
}

impl ServiceError for KvServiceError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Forbidden => ErrorKind::Forbidden,
            Self::AppNotFound(_) | Self::KeyNotFound(_) => ErrorKind::NotFound,
            Self::Invalid(_) | Self::QuotaExceeded(_) => ErrorKind::Invalid,
            Self::Kv(_) | Self::Apps(_) | Self::Settings(_) | Self::Authz(_) => ErrorKind::Internal,
        }
    }
}

/// The admin API over each app's keys.
#[derive(Clone)]
pub struct KvService {
    stores: Stores,
    ttl_signal: Arc<Notify>,
}

impl std::fmt::Debug for KvService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvService").finish_non_exhaustive()
    }
}

fn key(key: &str) -> Result<String, KvServiceError> {
    validate_kv_key(key).map_err(|e| KvServiceError::Invalid(e.to_string()))?;
    Ok(key.to_owned())
}

impl KvService {
    /// The service over `stores`; a write with a TTL rings `ttl_signal`
    /// (the sweeper's).
    pub fn new(stores: Stores, ttl_signal: Arc<Notify>) -> Self {
        Self { stores, ttl_signal }
    }

    async fn app(
        &self,
        principal: &Principal,
        ident: &str,
        capability: fn(AppId) -> Capability,
    ) -> Result<App, KvServiceError> {
        Ok(crate::authz::resolve_and_require(&self.stores, principal, ident, capability).await?)
    }

    /// Keys of the app starting with `prefix` (AppView), a page of at most
    /// `limit` (1 to 1000, default 100) after `cursor`.
    pub async fn list(
        &self,
        principal: &Principal,
        app: &str,
        prefix: &str,
        cursor: Option<String>,
        limit: Option<usize>,
    ) -> Result<KvPage, KvServiceError> {
        let app = self.app(principal, app, Capability::AppView).await?;
        let limit = limit.unwrap_or(100);
        if !(1..=KV_MAX_LIST_LIMIT).contains(&limit) {
            return Err(KvServiceError::Invalid(format!(
                "limit must be 1 to {KV_MAX_LIST_LIMIT}"
            )));
        }
        Ok(self
            .stores
            .kv
            .kv_list(app.id, prefix, cursor, limit)
            .await?)
    }

    /// One key's entry (AppView).
    pub async fn get(
        &self,
        principal: &Principal,
        app: &str,
        name: &str,
    ) -> Result<KvEntry, KvServiceError> {
        let app = self.app(principal, app, Capability::AppView).await?;
        let k = key(name).map_err(|_| KvServiceError::KeyNotFound(name.to_owned()))?;
        self.stores
            .kv
            .kv_get(app.id, &k)
            .await?
            .ok_or_else(|| KvServiceError::KeyNotFound(name.to_owned()))
    }

    /// Writes a key (AppEdit): `value` is any JSON, at most 1 MiB of it;
    /// `ttl_secs` 1 s to a year. Within the app's quota.
    pub async fn put(
        &self,
        principal: &Principal,
        app: &str,
        name: &str,
        value: &serde_json::Value,
        ttl_secs: Option<u64>,
    ) -> Result<KvEntry, KvServiceError> {
        let app = self.app(principal, app, Capability::AppEdit).await?;
        let key = key(name)?;
        if let Some(ttl) = ttl_secs
            && !(1..=KV_MAX_TTL_SECS).contains(&ttl)
        {
            return Err(KvServiceError::Invalid(format!(
                "ttl is 1 to {KV_MAX_TTL_SECS} seconds"
            )));
        }
        let value = value.to_string();
        if value.len() > KV_MAX_VALUE_BYTES {
            return Err(KvServiceError::Invalid(format!(
                "a value may hold at most {KV_MAX_VALUE_BYTES} bytes of JSON"
            )));
        }
        let limits = self
            .stores
            .settings
            .app_limits(app.id)
            .await?
            .unwrap_or_default();
        let write = KvWrite {
            key,
            value,
            ttl_secs,
        };
        let stores = self.stores.clone();
        let entry = crate::scripts::to_the_end(async move {
            stores.kv.kv_set(app.id, write, limits.kv_quota()).await
        })
        .await?;
        if ttl_secs.is_some() {
            self.ttl_signal.notify_one();
        }
        Ok(entry)
    }

    /// Deletes a key (AppEdit); idempotent.
    pub async fn delete(
        &self,
        principal: &Principal,
        app: &str,
        name: &str,
    ) -> Result<(), KvServiceError> {
        let app = self.app(principal, app, Capability::AppEdit).await?;
        let Ok(key) = key(name) else {
            return Ok(());
        };
        let stores = self.stores.clone();
        crate::scripts::to_the_end(async move { stores.kv.kv_delete(app.id, &key).await }).await?;
        Ok(())
    }

    /// What the app holds (AppView).
    pub async fn usage(&self, principal: &Principal, app: &str) -> Result<KvUsage, KvServiceError> {
        let app = self.app(principal, app, Capability::AppView).await?;
        Ok(self.stores.kv.kv_usage(app.id).await?)
    }
}

/// Deletes expired keys, sleeping until the next one expires.
#[derive(Debug)]
pub struct KvSweeper {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// The shortest sleep after a sweep that deleted nothing.
const MIN_IDLE_WAIT: Duration = Duration::from_secs(1);

/// How many keys one sweep deletes before it looks again.
const SWEEP_BATCH: usize = 1000;

impl KvSweeper {
    /// Starts the sweeper over `stores`, woken by `signal`; `backstop` is
    /// the longest it sleeps without a known expiry (`None`: forever, for a
    /// store only this process writes).
    pub fn start(stores: Stores, signal: Arc<Notify>, backstop: Option<Duration>) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                if *stopped.borrow() {
                    break;
                }
                // Sweep what is due, then learn when the next key expires.
                let idle;
                let next = loop {
                    match stores.kv.kv_sweep(SWEEP_BATCH).await {
                        Ok(n) if n as usize >= SWEEP_BATCH => continue,
                        Ok(n) => idle = n == 0,
                        Err(e) => {
                            idle = true;
                            tracing::warn!(error = %e, "KV sweeper: sweeping failed");
                        }
                    }
                    match stores.kv.kv_next_expiry().await {
                        Ok(next) => break next,
                        Err(e) => {
                            tracing::warn!(error = %e, "KV sweeper: reading the next expiry failed");
                            break Some(crate::clock::now() + chrono::Duration::seconds(1));
                        }
                    }
                };
                let wait = next.map(|at| {
                    (at - crate::clock::now())
                        .to_std()
                        .unwrap_or(Duration::ZERO)
                        // Past the expiry by a hair, so the sweep finds it.
                        .saturating_add(Duration::from_millis(5))
                });
                // A sweep that found nothing although a key was due (this
                // node's clock ahead of the store's, or a failing store):
                // look again in a second, not at once.
                let wait = wait.map(|w| {
                    if idle && w < MIN_IDLE_WAIT {
                        MIN_IDLE_WAIT
                    } else {
                        w
                    }
                });
                let wait = match (wait, backstop) {
                    (Some(w), Some(b)) => Some(w.min(b)),
                    (w, b) => w.or(b),
                };
                tokio::select! {
                    _ = stopped.changed() => break,
                    _ = signal.notified() => {}
                    _ = async {
                        match wait {
                            Some(w) => tokio::time::sleep(w).await,
                            None => std::future::pending().await,
                        }
                    } => {}
                }
            }
        });
        Self { stop, task }
    }

    /// Stops the sweeper and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
