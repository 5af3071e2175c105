//! [`ScriptRepository`] and [`InvocationRepository`] for [`PostgresStore`]: the
//! `scripts`, `script_versions` and `invocations` tables and
//! `apps.script_source_bytes`.
//!
//! **The storage quota** is checked by the deploy statement itself: its first
//! step raises `apps.script_source_bytes` only if the new total fits, which
//! takes the app row's lock, so concurrent deploys to one app queue there and
//! each sees the bytes of those before it. The versions cap is the upsert's
//! `DO UPDATE … WHERE`, evaluated on the locked, current script row. When
//! either refuses, the transaction is rolled back and a second query says
//! which quota it was. Deleting a script takes the app row's lock first too
//! (the same order as a deploy: no deadlock).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use picloud_core::domain::{
    Deployed, InvocationContext, InvocationRecord, Script, ScriptName, ScriptVersion,
    ScriptVersionInfo, Trigger, Visibility,
};
use picloud_core::ids::{AdminUserId, AppId, ScriptId};
use picloud_core::ports::{
    INVOCATION_BYTES_PER_APP, INVOCATION_BYTES_PER_SCRIPT, INVOCATION_RECORD_MAX_BYTES,
    INVOCATIONS_KEPT, InvocationFilter, InvocationRepoError, InvocationRepository, QuotaExceeded,
    ScriptRepoError, ScriptRepository, StorageQuota, WrittenRecord, fit_record,
};
use uuid::Uuid;

use crate::PostgresStore;
use crate::error::{Failure, script_error};
use crate::rows::DecodeError;

/// A row of `scripts`.
#[derive(Debug, sqlx::FromRow)]
struct ScriptRow {
    id: Uuid,
    app_id: Uuid,
    name: String,
    live_version: i32,
    latest_version: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    visibility: String,
}

fn version_number(column: &'static str, v: i32) -> Result<u32, DecodeError> {
    u32::try_from(v).map_err(|_| DecodeError::new(column, v.to_string()))
}

impl TryFrom<ScriptRow> for Script {
    type Error = DecodeError;

    fn try_from(r: ScriptRow) -> Result<Self, Self::Error> {
        Ok(Script {
            id: r.id.into(),
            app_id: r.app_id.into(),
            name: ScriptName::parse_stored(&r.name)
                .map_err(|_| DecodeError::new("name", r.name))?,
            live_version: version_number("live_version", r.live_version)?,
            latest_version: version_number("latest_version", r.latest_version)?,
            created_at: r.created_at,
            updated_at: r.updated_at,
            visibility: Visibility::parse(&r.visibility)
                .ok_or_else(|| DecodeError::new("visibility", r.visibility.clone()))?,
        })
    }
}

/// A row of `script_versions`.
#[derive(Debug, sqlx::FromRow)]
struct VersionRow {
    script_id: Uuid,
    version: i32,
    source: String,
    created_by: Uuid,
    created_at: DateTime<Utc>,
}

impl TryFrom<VersionRow> for ScriptVersion {
    type Error = DecodeError;

    fn try_from(r: VersionRow) -> Result<Self, Self::Error> {
        Ok(ScriptVersion {
            script_id: r.script_id.into(),
            version: version_number("version", r.version)?,
            source: r.source,
            created_by: r.created_by.into(),
            created_at: r.created_at,
        })
    }
}

/// A row of `script_versions` without its source.
#[derive(Debug, sqlx::FromRow)]
struct VersionInfoRow {
    script_id: Uuid,
    version: i32,
    size_bytes: i64,
    created_by: Uuid,
    created_at: DateTime<Utc>,
}

impl TryFrom<VersionInfoRow> for ScriptVersionInfo {
    type Error = DecodeError;

    fn try_from(r: VersionInfoRow) -> Result<Self, Self::Error> {
        Ok(ScriptVersionInfo {
            script_id: r.script_id.into(),
            version: version_number("version", r.version)?,
            size_bytes: u64::try_from(r.size_bytes)
                .map_err(|_| DecodeError::new("size_bytes", r.size_bytes.to_string()))?,
            created_by: r.created_by.into(),
            created_at: r.created_at,
        })
    }
}

/// Why a deploy inserted nothing: the app's stored bytes and the script's
/// newest version, if the app exists.
#[derive(Debug, sqlx::FromRow)]
struct RefusalRow {
    script_source_bytes: i64,
    latest_version: Option<i32>,
}

/// A deleted script: whether there was one, and its versions' bytes.
#[derive(Debug, sqlx::FromRow)]
struct DeletedRow {
    deleted: i64,
    freed: i64,
}

/// A deploy's result row: the script, and whether the upsert inserted it.
#[derive(Debug, sqlx::FromRow)]
struct DeployRow {
    #[sqlx(flatten)]
    script: ScriptRow,
    created: bool,
}

/// A script joined with its live version (`v_` columns).
#[derive(Debug, sqlx::FromRow)]
struct LiveRow {
    #[sqlx(flatten)]
    script: ScriptRow,
    v_source: String,
    v_created_by: Uuid,
    v_created_at: DateTime<Utc>,
}

fn err(e: impl Into<Failure>) -> ScriptRepoError {
    script_error(e)
}

#[async_trait]
impl ScriptRepository for PostgresStore {
    async fn deploy(
        &self,
        app: AppId,
        name: &ScriptName,
        source: String,
        by: AdminUserId,
        quota: StorageQuota,
    ) -> Result<Deployed, ScriptRepoError> {
        let now = picloud_core::clock::now();
        let size = i64::try_from(source.len()).unwrap_or(i64::MAX);
        let byte_quota = i64::try_from(quota.source_bytes_per_app).unwrap_or(i64::MAX);
        let version_quota = i32::try_from(quota.versions_per_script).unwrap_or(i32::MAX);
        let mut tx = self.pool.begin().await.map_err(err)?;
        // `a` raises the app's bytes only if they fit (and locks the app
        // row); `s` inserts or bumps the script only after `a` (it reads
        // `a`), and only below the versions cap; `v` inserts the version.
        let row: Option<DeployRow> = sqlx::query_as(
            "WITH a AS ( \
               UPDATE apps SET script_source_bytes = script_source_bytes + $7 \
               WHERE id = $2 AND script_source_bytes + $7 <= $8 \
               RETURNING id \
             ), s AS ( \
               INSERT INTO scripts AS t \
                 (id, app_id, name, live_version, latest_version, created_at, updated_at) \
               SELECT $1, a.id, $3, 1, 1, $5, $5 FROM a \
               ON CONFLICT (app_id, name) DO UPDATE \
                 SET latest_version = t.latest_version + 1, \
                     live_version = t.latest_version + 1, \
                     updated_at = EXCLUDED.updated_at \
                 WHERE t.latest_version < $9 \
               RETURNING id, app_id, name, live_version, latest_version, created_at, \
                         updated_at, visibility, (xmax = 0) AS created \
             ), v AS ( \
               INSERT INTO script_versions \
                 (script_id, version, source, created_by, created_at, size_bytes) \
               SELECT id, latest_version, $4, $6, $5, $7 FROM s \
               RETURNING version \
             ) \
             SELECT s.* FROM s, v",
        )
        .bind(Uuid::new_v4())
        .bind(app.as_uuid())
        .bind(name.as_str())
        .bind(&source)
        .bind(now)
        .bind(by.as_uuid())
        .bind(size)
        .bind(byte_quota)
        .bind(version_quota)
        .fetch_optional(&mut *tx)
        .await
        .map_err(err)?;
        let Some(row) = row else {
            tx.rollback().await.map_err(err)?;
            return Err(self.refusal(app, name, size, quota).await);
        };
        tx.commit().await.map_err(err)?;
        let script = Script::try_from(row.script).map_err(err)?;
        let version = ScriptVersion {
            script_id: script.id,
            version: script.latest_version,
            source,
            created_by: by,
            created_at: now,
        };
        Ok(Deployed {
            script,
            version,
            created: row.created,
            unchanged: false,
        })
    }

    async fn get(&self, app: AppId, name: &ScriptName) -> Result<Option<Script>, ScriptRepoError> {
        let row: Option<ScriptRow> = sqlx::query_as(
            "SELECT id, app_id, name, live_version, latest_version, created_at, updated_at, visibility \
             FROM scripts WHERE app_id = $1 AND name = $2",
        )
        .bind(app.as_uuid())
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        row.map(Script::try_from).transpose().map_err(err)
    }

    async fn list(&self, app: AppId) -> Result<Vec<Script>, ScriptRepoError> {
        let rows: Vec<ScriptRow> = sqlx::query_as(
            "SELECT id, app_id, name, live_version, latest_version, created_at, updated_at, visibility \
             FROM scripts WHERE app_id = $1 ORDER BY name COLLATE \"C\"",
        )
        .bind(app.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.into_iter()
            .map(Script::try_from)
            .collect::<Result<_, _>>()
            .map_err(err)
    }

    async fn versions(
        &self,
        app: AppId,
        name: &ScriptName,
    ) -> Result<Vec<ScriptVersionInfo>, ScriptRepoError> {
        let rows: Vec<VersionInfoRow> = sqlx::query_as(
            "SELECT v.script_id, v.version, v.size_bytes, v.created_by, v.created_at \
             FROM script_versions v JOIN scripts s ON s.id = v.script_id \
             WHERE s.app_id = $1 AND s.name = $2 ORDER BY v.version",
        )
        .bind(app.as_uuid())
        .bind(name.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.into_iter()
            .map(ScriptVersionInfo::try_from)
            .collect::<Result<_, _>>()
            .map_err(err)
    }

    async fn version(
        &self,
        app: AppId,
        name: &ScriptName,
        version: u32,
    ) -> Result<Option<ScriptVersion>, ScriptRepoError> {
        let Ok(version) = i32::try_from(version) else {
            return Ok(None);
        };
        let row: Option<VersionRow> = sqlx::query_as(
            "SELECT v.script_id, v.version, v.source, v.created_by, v.created_at \
             FROM script_versions v JOIN scripts s ON s.id = v.script_id \
             WHERE s.app_id = $1 AND s.name = $2 AND v.version = $3",
        )
        .bind(app.as_uuid())
        .bind(name.as_str())
        .bind(version)
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        row.map(ScriptVersion::try_from).transpose().map_err(err)
    }

    async fn set_live(
        &self,
        app: AppId,
        name: &ScriptName,
        version: u32,
    ) -> Result<Script, ScriptRepoError> {
        let version = i32::try_from(version).map_err(|_| ScriptRepoError::NotFound)?;
        let row: Option<ScriptRow> = sqlx::query_as(
            "UPDATE scripts s SET live_version = $3, updated_at = $4 \
             WHERE s.app_id = $1 AND s.name = $2 AND EXISTS ( \
               SELECT 1 FROM script_versions v WHERE v.script_id = s.id AND v.version = $3) \
             RETURNING id, app_id, name, live_version, latest_version, created_at, updated_at, \
                       visibility",
        )
        .bind(app.as_uuid())
        .bind(name.as_str())
        .bind(version)
        .bind(picloud_core::clock::now())
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        row.map(Script::try_from)
            .transpose()
            .map_err(err)?
            .ok_or(ScriptRepoError::NotFound)
    }

    async fn set_visibility(
        &self,
        app: AppId,
        name: &ScriptName,
        visibility: Visibility,
    ) -> Result<Script, ScriptRepoError> {
        let row: Option<ScriptRow> = sqlx::query_as(
            "UPDATE scripts SET visibility = $3 WHERE app_id = $1 AND name = $2 \
             RETURNING id, app_id, name, live_version, latest_version, created_at, updated_at, \
                       visibility",
        )
        .bind(app.as_uuid())
        .bind(name.as_str())
        .bind(visibility.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        row.ok_or(ScriptRepoError::NotFound)?
            .try_into()
            .map_err(err)
    }

    async fn delete(&self, app: AppId, name: &ScriptName) -> Result<bool, ScriptRepoError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        // The app row first, as a deploy locks it: no deploy of this app
        // commits a version between the sum below and the update.
        let app_exists: Option<i64> = sqlx::query_scalar(
            "SELECT script_source_bytes FROM apps WHERE id = $1 FOR NO KEY UPDATE",
        )
        .bind(app.as_uuid())
        .fetch_optional(&mut *tx)
        .await
        .map_err(err)?;
        if app_exists.is_none() {
            return Ok(false);
        }
        // Versions and invocations go by ON DELETE CASCADE; the sum reads
        // the statement's snapshot, from before the delete.
        let gone: DeletedRow = sqlx::query_as(
            "WITH d AS (DELETE FROM scripts WHERE app_id = $1 AND name = $2 RETURNING id) \
             SELECT (SELECT count(*) FROM d) AS deleted, \
                    coalesce((SELECT sum(v.size_bytes) FROM script_versions v \
                              WHERE v.script_id IN (SELECT id FROM d)), 0)::bigint AS freed",
        )
        .bind(app.as_uuid())
        .bind(name.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(err)?;
        if gone.deleted == 0 {
            return Ok(false);
        }
        sqlx::query("UPDATE apps SET script_source_bytes = script_source_bytes - $2 WHERE id = $1")
            .bind(app.as_uuid())
            .bind(gone.freed)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(true)
    }

    async fn source_bytes(&self, app: AppId) -> Result<u64, ScriptRepoError> {
        let bytes: Option<i64> =
            sqlx::query_scalar("SELECT script_source_bytes FROM apps WHERE id = $1")
                .bind(app.as_uuid())
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?;
        Ok(bytes.map_or(0, |b| u64::try_from(b).unwrap_or(0)))
    }

    async fn all_live(&self) -> Result<Vec<(Script, ScriptVersion)>, ScriptRepoError> {
        let rows: Vec<LiveRow> = sqlx::query_as(
            "SELECT s.id, s.app_id, s.name, s.live_version, s.latest_version, s.created_at, \
                    s.updated_at, s.visibility, v.source AS v_source, v.created_by AS v_created_by, \
                    v.created_at AS v_created_at \
             FROM scripts s JOIN script_versions v \
               ON v.script_id = s.id AND v.version = s.live_version",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.into_iter()
            .map(|r| {
                let script = Script::try_from(r.script)?;
                let version = ScriptVersion {
                    script_id: script.id,
                    version: script.live_version,
                    source: r.v_source,
                    created_by: r.v_created_by.into(),
                    created_at: r.v_created_at,
                };
                Ok((script, version))
            })
            .collect::<Result<_, DecodeError>>()
            .map_err(err)
    }
}

impl PostgresStore {
    /// Why a deploy of `size` bytes inserted nothing: an unknown app, or
    /// which quota it would pass.
    async fn refusal(
        &self,
        app: AppId,
        name: &ScriptName,
        size: i64,
        quota: StorageQuota,
    ) -> ScriptRepoError {
        let row: Result<Option<RefusalRow>, _> = sqlx::query_as(
            "SELECT a.script_source_bytes, \
                    (SELECT s.latest_version FROM scripts s \
                     WHERE s.app_id = a.id AND s.name = $2) AS latest_version \
             FROM apps a WHERE a.id = $1",
        )
        .bind(app.as_uuid())
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await;
        match row {
            Err(e) => err(e),
            Ok(None) => ScriptRepoError::NotFound,
            Ok(Some(r)) => {
                let limit = quota.source_bytes_per_app;
                let would = u64::try_from(r.script_source_bytes.saturating_add(size)).unwrap_or(0);
                let versions = r.latest_version.and_then(|v| u32::try_from(v).ok());
                if would > limit {
                    ScriptRepoError::QuotaExceeded(QuotaExceeded::SourceBytesPerApp { limit })
                } else if versions.is_some_and(|v| v >= quota.versions_per_script) {
                    ScriptRepoError::QuotaExceeded(QuotaExceeded::VersionsPerScript {
                        limit: quota.versions_per_script,
                    })
                } else {
                    // A concurrent delete freed room between the two queries.
                    ScriptRepoError::Conflict("the app changed during the deploy; retry".into())
                }
            }
        }
    }
}

/// The columns of an [`InvocationRow`], of `invocations i`.
macro_rules! invocation_columns {
    () => {
        "i.script_id, i.version, i.at, i.status, i.duration_us, i.logs, i.error, \
         i.request_id, i.trigger, i.method, i.path, i.query, i.line, i.col"
    };
}

/// A row of `invocations`.
#[derive(Debug, sqlx::FromRow)]
struct InvocationRow {
    script_id: Uuid,
    version: i32,
    at: DateTime<Utc>,
    status: i32,
    duration_us: i64,
    logs: String,
    error: Option<String>,
    request_id: String,
    trigger: String,
    method: Option<String>,
    path: Option<String>,
    query: Option<String>,
    line: Option<i32>,
    col: Option<i32>,
}

impl TryFrom<InvocationRow> for InvocationRecord {
    type Error = DecodeError;

    fn try_from(r: InvocationRow) -> Result<Self, Self::Error> {
        Ok(InvocationRecord {
            script_id: r.script_id.into(),
            version: version_number("version", r.version)?,
            at: r.at,
            status: u16::try_from(r.status)
                .map_err(|_| DecodeError::new("status", r.status.to_string()))?,
            duration_us: u64::try_from(r.duration_us)
                .map_err(|_| DecodeError::new("duration_us", r.duration_us.to_string()))?,
            logs: serde_json::from_str(&r.logs).map_err(|_| DecodeError::new("logs", r.logs))?,
            error: r.error,
            line: r.line.and_then(|l| u32::try_from(l).ok()),
            column: r.col.and_then(|c| u32::try_from(c).ok()),
            context: InvocationContext {
                trigger: Trigger::parse(&r.trigger)
                    .ok_or_else(|| DecodeError::new("trigger", r.trigger.clone()))?,
                request_id: r.request_id,
                method: r.method,
                path: r.path,
                query: r.query,
            },
        })
    }
}

fn log_error(e: impl Into<Failure>) -> InvocationRepoError {
    match e.into() {
        Failure::Backend(e) => InvocationRepoError::Backend(e),
        other => InvocationRepoError::Backend(format!("unexpected {other:?}").into()),
    }
}

#[async_trait]
impl InvocationRepository for PostgresStore {
    async fn append(&self, mut records: Vec<InvocationRecord>) -> Result<(), InvocationRepoError> {
        if records.is_empty() {
            return Ok(());
        }
        for r in &mut records {
            fit_record(r, INVOCATION_RECORD_MAX_BYTES);
        }
        let mut scripts = Vec::with_capacity(records.len());
        let mut versions = Vec::with_capacity(records.len());
        let mut ats = Vec::with_capacity(records.len());
        let mut statuses = Vec::with_capacity(records.len());
        let mut durations = Vec::with_capacity(records.len());
        let mut logs = Vec::with_capacity(records.len());
        let mut errors = Vec::with_capacity(records.len());
        let mut sizes = Vec::with_capacity(records.len());
        let mut request_ids = Vec::with_capacity(records.len());
        let mut triggers = Vec::with_capacity(records.len());
        let mut methods = Vec::with_capacity(records.len());
        let mut paths = Vec::with_capacity(records.len());
        let mut queries = Vec::with_capacity(records.len());
        let mut lines = Vec::with_capacity(records.len());
        let mut columns = Vec::with_capacity(records.len());
        for r in &records {
            let c = &r.context;
            request_ids.push(without_nul(&c.request_id));
            triggers.push(c.trigger.as_str());
            methods.push(c.method.as_deref().map(without_nul));
            paths.push(c.path.as_deref().map(without_nul));
            queries.push(c.query.as_deref().map(without_nul));
            lines.push(r.line.map(|l| i32::try_from(l).unwrap_or(i32::MAX)));
            columns.push(r.column.map(|l| i32::try_from(l).unwrap_or(i32::MAX)));
            sizes.push(i64::try_from(r.log_bytes()).unwrap_or(i64::MAX));
            scripts.push(r.script_id.as_uuid());
            versions.push(i32::try_from(r.version).unwrap_or(i32::MAX));
            ats.push(r.at);
            statuses.push(i32::from(r.status));
            durations.push(i64::try_from(r.duration_us).unwrap_or(i64::MAX));
            logs.push(serde_json::to_string(&r.logs).unwrap_or_else(|_| "[]".to_owned()));
            // A script's error text may carry NUL (from the request body,
            // say), which PostgreSQL text cannot hold: one such record must
            // not fail the whole batch.
            errors.push(r.error.as_deref().map(without_nul));
        }
        let mut tx = self.pool.begin().await.map_err(log_error)?;
        // One statement for the whole batch; records of deleted scripts are
        // skipped rather than failing the batch.
        sqlx::query(
            "INSERT INTO invocations \
               (script_id, version, at, status, duration_us, logs, error, size_bytes, \
                request_id, trigger, method, path, query, line, col) \
             SELECT r.script_id, r.version, r.at, r.status, r.duration_us, r.logs, r.error, \
                    r.size_bytes, r.request_id, r.trigger, r.method, r.path, r.query, r.line, \
                    r.col \
             FROM UNNEST($1::uuid[], $2::int[], $3::timestamptz[], $4::int[], $5::bigint[], \
                         $6::text[], $7::text[], $8::bigint[], $9::text[], $10::text[], \
                         $11::text[], $12::text[], $13::text[], $14::int[], $15::int[]) \
                  WITH ORDINALITY AS r(script_id, version, at, status, duration_us, logs, error, \
                                       size_bytes, request_id, trigger, method, path, query, \
                                       line, col, n) \
             WHERE EXISTS (SELECT 1 FROM scripts s WHERE s.id = r.script_id) \
             ORDER BY r.n",
        )
        .bind(&scripts)
        .bind(&versions)
        .bind(&ats)
        .bind(&statuses)
        .bind(&durations)
        .bind(&logs)
        .bind(&errors)
        .bind(&sizes)
        .bind(&request_ids)
        .bind(&triggers)
        .bind(&methods)
        .bind(&paths)
        .bind(&queries)
        .bind(&lines)
        .bind(&columns)
        .execute(&mut *tx)
        .await
        .map_err(log_error)?;
        // Retention, per touched script: the newest records while they fit
        // INVOCATIONS_KEPT and INVOCATION_BYTES_PER_SCRIPT (a running sum
        // from the newest; the first record past a bound goes, with every
        // older one).
        scripts.sort_unstable();
        scripts.dedup();
        sqlx::query(
            "DELETE FROM invocations WHERE id IN ( \
               SELECT r.id FROM ( \
                 SELECT k.id, row_number() OVER w AS n, sum(k.size_bytes) OVER w AS bytes \
                 FROM invocations k WHERE k.script_id = ANY($1) \
                 WINDOW w AS (PARTITION BY k.script_id ORDER BY k.at DESC, k.id DESC) \
               ) r WHERE r.n > $2 OR r.bytes > $3)",
        )
        .bind(&scripts)
        .bind(i64::try_from(INVOCATIONS_KEPT).unwrap_or(i64::MAX))
        .bind(i64::try_from(INVOCATION_BYTES_PER_SCRIPT).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await
        .map_err(log_error)?;
        // Then per touched app, across its scripts: the same running sum,
        // bounded by INVOCATION_BYTES_PER_APP.
        sqlx::query(
            "DELETE FROM invocations WHERE id IN ( \
               SELECT r.id FROM ( \
                 SELECT k.id, sum(k.size_bytes) OVER ( \
                          PARTITION BY s.app_id ORDER BY k.at DESC, k.id DESC) AS bytes \
                 FROM invocations k JOIN scripts s ON s.id = k.script_id \
                 WHERE s.app_id IN (SELECT t.app_id FROM scripts t WHERE t.id = ANY($1)) \
               ) r WHERE r.bytes > $2)",
        )
        .bind(&scripts)
        .bind(i64::try_from(INVOCATION_BYTES_PER_APP).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await
        .map_err(log_error)?;
        tx.commit().await.map_err(log_error)
    }

    async fn recent(
        &self,
        script: ScriptId,
        limit: usize,
    ) -> Result<Vec<InvocationRecord>, InvocationRepoError> {
        let rows: Vec<InvocationRow> = sqlx::query_as(concat!(
            "SELECT ",
            invocation_columns!(),
            " FROM invocations i \
             WHERE i.script_id = $1 ORDER BY i.at DESC, i.id DESC LIMIT $2"
        ))
        .bind(script.as_uuid())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(log_error)?;
        rows.into_iter()
            .map(InvocationRecord::try_from)
            .collect::<Result<_, _>>()
            .map_err(log_error)
    }

    async fn query(
        &self,
        app: AppId,
        filter: &InvocationFilter,
    ) -> Result<Vec<InvocationRecord>, InvocationRepoError> {
        let rows: Vec<InvocationRow> = sqlx::query_as(concat!(
            "SELECT ",
            invocation_columns!(),
            " FROM invocations i JOIN scripts s ON s.id = i.script_id \
             WHERE s.app_id = $1 \
               AND ($2::uuid IS NULL OR i.script_id = $2) \
               AND ($3::int IS NULL OR i.status = $3) \
               AND ($4::timestamptz IS NULL OR i.at >= $4) \
               AND ($5::text IS NULL OR i.request_id = $5) \
             ORDER BY i.at DESC, i.id DESC LIMIT $6"
        ))
        .bind(app.as_uuid())
        .bind(filter.script.map(|s| s.as_uuid()))
        .bind(filter.status.map(i32::from))
        .bind(filter.since)
        .bind(filter.request_id.as_deref().map(without_nul))
        .bind(i64::try_from(filter.limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(log_error)?;
        rows.into_iter()
            .map(InvocationRecord::try_from)
            .collect::<Result<_, _>>()
            .map_err(log_error)
    }

    async fn written_by(
        &self,
        app: AppId,
        node: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<WrittenRecord>, InvocationRepoError> {
        #[derive(sqlx::FromRow)]
        struct Written {
            position: i64,
            script: String,
            #[sqlx(flatten)]
            row: InvocationRow,
        }
        let rows: Vec<Written> = sqlx::query_as(concat!(
            "SELECT i.id AS position, s.name AS script, ",
            invocation_columns!(),
            " FROM invocations i JOIN scripts s ON s.id = i.script_id \
             WHERE i.id > $3 AND i.node = $2 AND s.app_id = $1 \
             ORDER BY i.id LIMIT $4"
        ))
        .bind(app.as_uuid())
        .bind(node)
        .bind(after)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(log_error)?;
        rows.into_iter()
            .map(|w| {
                Ok(WrittenRecord {
                    position: w.position,
                    script: w.script,
                    record: InvocationRecord::try_from(w.row)?,
                })
            })
            .collect::<Result<_, DecodeError>>()
            .map_err(log_error)
    }
}

/// `text` with each NUL replaced by U+FFFD (PostgreSQL `text` cannot hold NUL).
fn without_nul(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}
