//! [`KvStore`] for [`MemoryStore`]: each app's keys in one ordered map, with
//! the usage of each app and an index of expiries beside it.
//!
//! Like every port here, each call holds the store's one lock throughout,
//! which makes it atomic as one PostgreSQL transaction is (the PostgreSQL
//! store serialises an app's writes on its usage row). An expired key stays
//! in the map, counted in the usage, until a sweep or a write of the key
//! removes it; every read skips it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use picloud_core::domain::{
    KV_MAX_LIST_LIMIT, KV_MAX_TTL_SECS, KvEntry, KvPage, KvQuota, KvUsage, KvWrite, kv_integer,
};
use picloud_core::ids::AppId;
use picloud_core::ports::{KvError, KvStore};

use crate::MemoryStore;

/// The KV part of the state.
#[derive(Debug, Default)]
pub(crate) struct Kv {
    /// Every key, expired or not, by `(app, key)`: one app's keys are a
    /// range, in byte order.
    entries: BTreeMap<(AppId, String), KvEntry>,
    /// What each app holds (expired keys until they go).
    usage: HashMap<AppId, KvUsage>,
    /// `(expires_at, app, key)` of every key with a TTL.
    expiries: BTreeSet<(DateTime<Utc>, AppId, String)>,
    /// The last version handed out (PostgreSQL's sequence).
    last_version: i64,
}

fn expired(entry: &KvEntry, now: DateTime<Utc>) -> bool {
    entry.expires_at.is_some_and(|at| at <= now)
}

/// When a key written now with `ttl_secs` expires (a TTL past the longest
/// allowed counts as the longest, as in the PostgreSQL store).
fn expiry(now: DateTime<Utc>, ttl_secs: Option<u64>) -> Option<DateTime<Utc>> {
    ttl_secs.map(|s| {
        let secs = i64::try_from(s.min(KV_MAX_TTL_SECS)).unwrap_or(i64::MAX);
        now + chrono::TimeDelta::seconds(secs)
    })
}

impl Kv {
    /// The unexpired entry of `key`.
    fn live(&self, app: AppId, key: &str, now: DateTime<Utc>) -> Option<&KvEntry> {
        self.entries
            .get(&(app, key.to_owned()))
            .filter(|e| !expired(e, now))
    }

    fn usage(&self, app: AppId) -> KvUsage {
        self.usage.get(&app).copied().unwrap_or_default()
    }

    /// Removes `key` (expired or not), giving its room back.
    fn remove(&mut self, app: AppId, key: &str) -> Option<KvEntry> {
        let entry = self.entries.remove(&(app, key.to_owned()))?;
        if let Some(at) = entry.expires_at {
            self.expiries.remove(&(at, app, entry.key.clone()));
        }
        let usage = self.usage.entry(app).or_default();
        usage.keys = usage.keys.saturating_sub(1);
        usage.bytes = usage.bytes.saturating_sub(entry.size_bytes());
        Some(entry)
    }

    /// Writes `value` to `key` within `quota`, replacing whatever was there
    /// (an expired entry too), with a new version.
    fn write(
        &mut self,
        app: AppId,
        key: &str,
        value: String,
        expires_at: Option<DateTime<Utc>>,
        quota: KvQuota,
        now: DateTime<Utc>,
    ) -> Result<KvEntry, KvError> {
        let held = self.usage(app);
        let replaced = self
            .entries
            .get(&(app, key.to_owned()))
            .map(KvEntry::size_bytes);
        let bytes = (key.len() + value.len()) as u64;
        let next = held.after_write(replaced, bytes);
        if !held.admits(next, quota) {
            return Err(KvError::QuotaExceeded(held));
        }
        self.remove(app, key);
        self.last_version += 1;
        let entry = KvEntry {
            key: key.to_owned(),
            value,
            version: self.last_version,
            expires_at,
            updated_at: now,
        };
        if let Some(at) = expires_at {
            self.expiries.insert((at, app, key.to_owned()));
        }
        self.entries.insert((app, key.to_owned()), entry.clone());
        self.usage.insert(app, next);
        Ok(entry)
    }

    /// Drops every key of `app` (an app delete).
    pub(crate) fn drop_app(&mut self, app: AppId) {
        let keys: Vec<String> = self
            .entries
            .range((app, String::new())..)
            .take_while(|((a, _), _)| *a == app)
            .map(|((_, k), _)| k.clone())
            .collect();
        for key in keys {
            self.remove(app, &key);
        }
        self.usage.remove(&app);
    }
}

fn now() -> DateTime<Utc> {
    picloud_core::clock::now()
}

#[async_trait]
impl KvStore for MemoryStore {
    async fn kv_get(&self, app: AppId, key: &str) -> Result<Option<KvEntry>, KvError> {
        Ok(self.read().kv.live(app, key, now()).cloned())
    }

    async fn kv_set(&self, app: AppId, write: KvWrite, quota: KvQuota) -> Result<KvEntry, KvError> {
        let mut s = self.write();
        if !s.apps.contains_key(&app) {
            return Err(KvError::AppNotFound);
        }
        let now = now();
        s.kv.write(
            app,
            &write.key,
            write.value,
            expiry(now, write.ttl_secs),
            quota,
            now,
        )
    }

    async fn kv_cas(
        &self,
        app: AppId,
        expected: Option<i64>,
        write: KvWrite,
        quota: KvQuota,
    ) -> Result<Option<KvEntry>, KvError> {
        let mut s = self.write();
        if !s.apps.contains_key(&app) {
            return Err(KvError::AppNotFound);
        }
        let now = now();
        let current = s.kv.live(app, &write.key, now).map(|e| e.version);
        if current != expected {
            return Ok(None);
        }
        s.kv.write(
            app,
            &write.key,
            write.value,
            expiry(now, write.ttl_secs),
            quota,
            now,
        )
        .map(Some)
    }

    async fn kv_incr(
        &self,
        app: AppId,
        key: &str,
        by: i64,
        quota: KvQuota,
    ) -> Result<i64, KvError> {
        let mut s = self.write();
        if !s.apps.contains_key(&app) {
            return Err(KvError::AppNotFound);
        }
        let now = now();
        let (current, expires_at) = match s.kv.live(app, key, now) {
            Some(e) => (
                kv_integer(&e.value).ok_or(KvError::NotAnInteger)?,
                e.expires_at,
            ),
            None => (0, None),
        };
        let sum = current.checked_add(by).ok_or(KvError::Overflow)?;
        s.kv.write(app, key, sum.to_string(), expires_at, quota, now)?;
        Ok(sum)
    }

    async fn kv_delete(&self, app: AppId, key: &str) -> Result<bool, KvError> {
        let mut s = self.write();
        let now = now();
        Ok(s.kv.remove(app, key).is_some_and(|e| !expired(&e, now)))
    }

    async fn kv_list(
        &self,
        app: AppId,
        prefix: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<KvPage, KvError> {
        let limit = limit.clamp(1, KV_MAX_LIST_LIMIT);
        let s = self.read();
        let now = now();
        let from = match after {
            Some(after) if after.as_str() >= prefix => Bound::Excluded((app, after)),
            _ => Bound::Included((app, prefix.to_owned())),
        };
        let mut keys: Vec<String> =
            s.kv.entries
                .range((from, Bound::Unbounded))
                .take_while(|((a, k), _)| *a == app && k.starts_with(prefix))
                .filter(|(_, e)| !expired(e, now))
                .map(|((_, k), _)| k.clone())
                .take(limit + 1)
                .collect();
        let cursor = if keys.len() > limit {
            keys.truncate(limit);
            keys.last().cloned()
        } else {
            None
        };
        Ok(KvPage { keys, cursor })
    }

    async fn kv_usage(&self, app: AppId) -> Result<KvUsage, KvError> {
        Ok(self.read().kv.usage(app))
    }

    async fn kv_sweep(&self, limit: usize) -> Result<u64, KvError> {
        let mut s = self.write();
        let now = now();
        let due: Vec<(AppId, String)> =
            s.kv.expiries
                .iter()
                .take_while(|(at, _, _)| *at <= now)
                .take(limit)
                .map(|(_, app, key)| (*app, key.clone()))
                .collect();
        for (app, key) in &due {
            s.kv.remove(*app, key);
        }
        Ok(due.len() as u64)
    }

    async fn kv_next_expiry(&self) -> Result<Option<DateTime<Utc>>, KvError> {
        Ok(self.read().kv.expiries.first().map(|(at, _, _)| *at))
    }
}
