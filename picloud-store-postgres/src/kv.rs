//! [`KvStore`] for [`PostgresStore`] (migration `0011_kv_env.sql`).
//!
//! - **A write** (`set`, `cas`, `incr`, `delete`) is one transaction: lock
//!   the app's row (`FOR KEY SHARE`) and its `kv_usage` row (`FOR UPDATE`,
//!   created on the app's first write) in one statement, read the key's
//!   current row, decide in Rust with the rules of `picloud-core`
//!   ([`KvUsage::admits`], [`kv_integer`]), then write the key and the new
//!   usage in one statement. The usage lock serialises one app's writes, so
//!   the quota is exact and no `incr` or `cas` is lost; every writer takes
//!   the locks in the same order (app, usage, key), so writers, sweeps and
//!   app deletes do not deadlock.
//! - **Reads** are one statement each, and skip expired keys.
//! - **A sweep** locks the apps of the soonest expired keys (app rows, then
//!   usage rows, each in id order), deletes up to `limit` of those keys and
//!   gives their room back, in one transaction.
//! - "Now" is always the database's `now()`: nodes with skewed clocks agree
//!   on what expired.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use picloud_core::domain::{
    KV_MAX_LIST_LIMIT, KV_MAX_TTL_SECS, KvEntry, KvPage, KvQuota, KvUsage, KvWrite, kv_integer,
};
use picloud_core::ids::AppId;
use picloud_core::ports::{KvError, KvStore};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::PostgresStore;
use crate::error::{Failure, kv_error};

/// Locks the app's row and its usage row (creating it), and returns the
/// usage; no row when the app does not exist.
const LOCK_USAGE: &str = "WITH a AS (SELECT id FROM apps WHERE id = $1 FOR KEY SHARE) \
     INSERT INTO kv_usage (app_id, keys, bytes) SELECT id, 0, 0 FROM a \
     ON CONFLICT (app_id) DO UPDATE SET keys = kv_usage.keys \
     RETURNING keys, bytes";

/// The key's row, expired or not, with whether it expired.
const CURRENT: &str = "SELECT key, value, version, expires_at, updated_at, bytes, \
            (expires_at IS NOT NULL AND expires_at <= now()) AS expired \
     FROM kv WHERE app_id = $1 AND key = $2";

/// Writes the key with a new version (an expiry kept as `$4`, or `$5`
/// seconds from now) and the app's new usage (`$6`, `$7`).
const WRITE: &str = "WITH w AS ( \
         INSERT INTO kv (app_id, key, value, version, expires_at, updated_at) \
         VALUES ($1, $2, $3, nextval('kv_version_seq'), \
                 COALESCE($4::timestamptz, now() + make_interval(secs => $5::float8)), now()) \
         ON CONFLICT (app_id, key) DO UPDATE SET value = EXCLUDED.value, \
             version = EXCLUDED.version, expires_at = EXCLUDED.expires_at, \
             updated_at = EXCLUDED.updated_at \
         RETURNING key, value, version, expires_at, updated_at), \
     u AS (UPDATE kv_usage SET keys = $6, bytes = $7 WHERE app_id = $1) \
     SELECT key, value, version, expires_at, updated_at FROM w";

/// Deletes the key (expired or not) and gives its room back; whether it
/// was unexpired.
const DELETE: &str = "WITH d AS ( \
         DELETE FROM kv WHERE app_id = $1 AND key = $2 \
         RETURNING bytes, (expires_at IS NULL OR expires_at > now()) AS live), \
     u AS (UPDATE kv_usage SET keys = kv_usage.keys - 1, bytes = kv_usage.bytes - d.bytes \
           FROM d WHERE kv_usage.app_id = $1) \
     SELECT live FROM d";

const GET: &str = "SELECT key, value, version, expires_at, updated_at FROM kv \
     WHERE app_id = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > now())";

/// Unexpired keys from `$2` (the prefix, inclusive), after `$3` (the
/// cursor, or ''), before `$4` (the first string past the prefix).
const LIST: &str = "SELECT key FROM kv \
     WHERE app_id = $1 AND key >= $2 AND key > $3 AND key < $4 \
       AND (expires_at IS NULL OR expires_at > now()) \
     ORDER BY key LIMIT $5";

/// [`LIST`] for a prefix with no string past it (the empty prefix).
const LIST_TO_END: &str = "SELECT key FROM kv \
     WHERE app_id = $1 AND key >= $2 AND key > $3 \
       AND (expires_at IS NULL OR expires_at > now()) \
     ORDER BY key LIMIT $4";

/// The apps of the soonest `$1` expired keys.
const SWEEP_APPS: &str = "SELECT DISTINCT app_id FROM ( \
         SELECT app_id FROM kv WHERE expires_at <= now() ORDER BY expires_at LIMIT $1) e";

/// Deletes the soonest `$2` expired keys of the (locked) apps `$1`, gives
/// their room back, and counts them.
const SWEEP: &str = "WITH e AS ( \
         SELECT app_id, key FROM kv WHERE app_id = ANY($1) AND expires_at <= now() \
         ORDER BY expires_at LIMIT $2), \
     gone AS (DELETE FROM kv USING e WHERE kv.app_id = e.app_id AND kv.key = e.key \
              RETURNING kv.app_id, kv.bytes), \
     per_app AS (SELECT app_id, count(*) AS n, sum(bytes)::bigint AS b \
                 FROM gone GROUP BY app_id), \
     u AS (UPDATE kv_usage SET keys = kv_usage.keys - per_app.n, \
                               bytes = kv_usage.bytes - per_app.b \
           FROM per_app WHERE kv_usage.app_id = per_app.app_id) \
     SELECT count(*) FROM gone";

fn unsigned(v: i64) -> Result<u64, Failure> {
    Ok(u64::try_from(v)?)
}

fn signed(v: u64) -> Result<i64, Failure> {
    Ok(i64::try_from(v)?)
}

fn entry_from_row(row: &PgRow) -> Result<KvEntry, Failure> {
    Ok(KvEntry {
        key: row.try_get("key")?,
        value: row.try_get("value")?,
        version: row.try_get("version")?,
        expires_at: row.try_get("expires_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn usage_from_row(row: &PgRow) -> Result<KvUsage, Failure> {
    Ok(KvUsage {
        keys: unsigned(row.try_get("keys")?)?,
        bytes: unsigned(row.try_get("bytes")?)?,
    })
}

/// The first string after every string that starts with `prefix`, in byte
/// (code point) order: the prefix with its last character that has a
/// successor replaced by that successor. `None` when there is none (the
/// empty prefix, or one of U+10FFFF only).
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(u32::from(c) + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// The key's current row, read after the usage lock.
struct Current {
    entry: KvEntry,
    bytes: u64,
    expired: bool,
}

impl Current {
    /// The entry, unless it expired.
    fn live(&self) -> Option<&KvEntry> {
        (!self.expired).then_some(&self.entry)
    }
}

/// Locks the app's row and its usage row, and returns what the app holds:
/// `None` when the app does not exist. The first statement of every write.
async fn lock(conn: &mut PgConnection, app: AppId) -> Result<Option<KvUsage>, Failure> {
    let row = sqlx::query(LOCK_USAGE)
        .bind(app.as_uuid())
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(usage_from_row).transpose()
}

/// The key's row, expired or not.
async fn current(
    conn: &mut PgConnection,
    app: AppId,
    key: &str,
) -> Result<Option<Current>, Failure> {
    let row = sqlx::query(CURRENT)
        .bind(app.as_uuid())
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|row| {
        Ok(Current {
            entry: entry_from_row(&row)?,
            bytes: unsigned(row.try_get("bytes")?)?,
            expired: row.try_get("expired")?,
        })
    })
    .transpose()
}

/// When a write's key expires: kept from the entry it replaces, or some
/// seconds from now, or never.
enum Expiry {
    Keep(Option<DateTime<Utc>>),
    In(Option<u64>),
}

/// Writes `value` to `key` over `current` (what `current` read) within
/// `quota`, the app holding `held`: the new entry, or `QuotaExceeded` and
/// nothing written.
#[allow(clippy::too_many_arguments)]
async fn write(
    conn: &mut PgConnection,
    app: AppId,
    held: KvUsage,
    key: &str,
    value: &str,
    current: Option<&Current>,
    expiry: Expiry,
    quota: KvQuota,
) -> Result<KvEntry, KvError> {
    let next = held.after_write(current.map(|c| c.bytes), (key.len() + value.len()) as u64);
    if !held.admits(next, quota) {
        return Err(KvError::QuotaExceeded(held));
    }
    let (keep, ttl) = match expiry {
        Expiry::Keep(at) => (at, None),
        // A TTL past the longest allowed counts as the longest, as in the
        // memory store.
        Expiry::In(secs) => (None, secs.map(|s| s.min(KV_MAX_TTL_SECS) as f64)),
    };
    let row = sqlx::query(WRITE)
        .bind(app.as_uuid())
        .bind(key)
        .bind(value)
        .bind(keep)
        .bind(ttl)
        .bind(signed(next.keys).map_err(kv_error)?)
        .bind(signed(next.bytes).map_err(kv_error)?)
        .fetch_one(&mut *conn)
        .await
        .map_err(kv_error)?;
    entry_from_row(&row).map_err(kv_error)
}

#[async_trait]
impl KvStore for PostgresStore {
    async fn kv_get(&self, app: AppId, key: &str) -> Result<Option<KvEntry>, KvError> {
        let row = sqlx::query(GET)
            .bind(app.as_uuid())
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(kv_error)?;
        row.as_ref()
            .map(entry_from_row)
            .transpose()
            .map_err(kv_error)
    }

    async fn kv_set(&self, app: AppId, w: KvWrite, quota: KvQuota) -> Result<KvEntry, KvError> {
        let mut tx = self.pool.begin().await.map_err(kv_error)?;
        let held = lock(&mut tx, app)
            .await
            .map_err(kv_error)?
            .ok_or(KvError::AppNotFound)?;
        let now = current(&mut tx, app, &w.key).await.map_err(kv_error)?;
        let entry = write(
            &mut tx,
            app,
            held,
            &w.key,
            &w.value,
            now.as_ref(),
            Expiry::In(w.ttl_secs),
            quota,
        )
        .await?;
        tx.commit().await.map_err(kv_error)?;
        Ok(entry)
    }

    async fn kv_cas(
        &self,
        app: AppId,
        expected: Option<i64>,
        w: KvWrite,
        quota: KvQuota,
    ) -> Result<Option<KvEntry>, KvError> {
        let mut tx = self.pool.begin().await.map_err(kv_error)?;
        let held = lock(&mut tx, app)
            .await
            .map_err(kv_error)?
            .ok_or(KvError::AppNotFound)?;
        let now = current(&mut tx, app, &w.key).await.map_err(kv_error)?;
        let version = now.as_ref().and_then(Current::live).map(|e| e.version);
        if version != expected {
            return Ok(None);
        }
        let entry = write(
            &mut tx,
            app,
            held,
            &w.key,
            &w.value,
            now.as_ref(),
            Expiry::In(w.ttl_secs),
            quota,
        )
        .await?;
        tx.commit().await.map_err(kv_error)?;
        Ok(Some(entry))
    }

    async fn kv_incr(
        &self,
        app: AppId,
        key: &str,
        by: i64,
        quota: KvQuota,
    ) -> Result<i64, KvError> {
        let mut tx = self.pool.begin().await.map_err(kv_error)?;
        let held = lock(&mut tx, app)
            .await
            .map_err(kv_error)?
            .ok_or(KvError::AppNotFound)?;
        let now = current(&mut tx, app, key).await.map_err(kv_error)?;
        let (n, expires_at) = match now.as_ref().and_then(Current::live) {
            Some(e) => (
                kv_integer(&e.value).ok_or(KvError::NotAnInteger)?,
                e.expires_at,
            ),
            None => (0, None),
        };
        let sum = n.checked_add(by).ok_or(KvError::Overflow)?;
        write(
            &mut tx,
            app,
            held,
            key,
            &sum.to_string(),
            now.as_ref(),
            Expiry::Keep(expires_at),
            quota,
        )
        .await?;
        tx.commit().await.map_err(kv_error)?;
        Ok(sum)
    }

    async fn kv_delete(&self, app: AppId, key: &str) -> Result<bool, KvError> {
        let mut tx = self.pool.begin().await.map_err(kv_error)?;
        if lock(&mut tx, app).await.map_err(kv_error)?.is_none() {
            return Ok(false);
        }
        let live: Option<bool> = sqlx::query_scalar(DELETE)
            .bind(app.as_uuid())
            .bind(key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(kv_error)?;
        tx.commit().await.map_err(kv_error)?;
        Ok(live.unwrap_or(false))
    }

    async fn kv_list(
        &self,
        app: AppId,
        prefix: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<KvPage, KvError> {
        let limit = limit.clamp(1, KV_MAX_LIST_LIMIT);
        // One more than a page: whether a key follows it.
        let fetch = signed(limit as u64 + 1).map_err(kv_error)?;
        let after = after.unwrap_or_default();
        let query = match prefix_end(prefix) {
            Some(end) => sqlx::query_scalar(LIST)
                .bind(app.as_uuid())
                .bind(prefix)
                .bind(after)
                .bind(end)
                .bind(fetch),
            None => sqlx::query_scalar(LIST_TO_END)
                .bind(app.as_uuid())
                .bind(prefix)
                .bind(after)
                .bind(fetch),
        };
        let mut keys: Vec<String> = query.fetch_all(&self.pool).await.map_err(kv_error)?;
        let cursor = if keys.len() > limit {
            keys.truncate(limit);
            keys.last().cloned()
        } else {
            None
        };
        Ok(KvPage { keys, cursor })
    }

    async fn kv_usage(&self, app: AppId) -> Result<KvUsage, KvError> {
        let row = sqlx::query("SELECT keys, bytes FROM kv_usage WHERE app_id = $1")
            .bind(app.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(kv_error)?;
        Ok(row
            .as_ref()
            .map(usage_from_row)
            .transpose()
            .map_err(kv_error)?
            .unwrap_or_default())
    }

    async fn kv_sweep(&self, limit: usize) -> Result<u64, KvError> {
        let limit = signed(limit as u64).map_err(kv_error)?;
        if limit == 0 {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await.map_err(kv_error)?;
        let apps: Vec<Uuid> = sqlx::query_scalar(SWEEP_APPS)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await
            .map_err(kv_error)?;
        if apps.is_empty() {
            return Ok(0);
        }
        // The lock order of a write: the apps' rows, then their usage rows,
        // each in id order so that sweeps do not deadlock each other.
        let apps: Vec<Uuid> =
            sqlx::query_scalar("SELECT id FROM apps WHERE id = ANY($1) ORDER BY id FOR KEY SHARE")
                .bind(&apps)
                .fetch_all(&mut *tx)
                .await
                .map_err(kv_error)?;
        sqlx::query(
            "SELECT app_id FROM kv_usage WHERE app_id = ANY($1) ORDER BY app_id FOR UPDATE",
        )
        .bind(&apps)
        .execute(&mut *tx)
        .await
        .map_err(kv_error)?;
        let swept: i64 = sqlx::query_scalar(SWEEP)
            .bind(&apps)
            .bind(limit)
            .fetch_one(&mut *tx)
            .await
            .map_err(kv_error)?;
        tx.commit().await.map_err(kv_error)?;
        unsigned(swept).map_err(kv_error)
    }

    async fn kv_next_expiry(&self) -> Result<Option<DateTime<Utc>>, KvError> {
        sqlx::query_scalar("SELECT min(expires_at) FROM kv")
            .fetch_one(&self.pool)
            .await
            .map_err(kv_error)
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn the_end_of_a_prefix_follows_every_key_with_it() {
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("a").as_deref(), Some("b"));
        assert_eq!(prefix_end("user:").as_deref(), Some("user;"));
        assert_eq!(prefix_end("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_end("ab\u{10FFFF}").as_deref(), Some("ac"));
        assert_eq!(prefix_end("\u{10FFFF}\u{10FFFF}"), None);
    }
}
