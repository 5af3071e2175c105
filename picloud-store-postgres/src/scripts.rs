//! [`ScriptRepository`] and [`InvocationLog`] for [`PostgresStore`]: the
//! `scripts`, `script_versions` and `invocations` tables, and `apps.limits`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use picloud_core::domain::{Deployed, InvocationRecord, Script, ScriptName, ScriptVersion};
use picloud_core::ids::{AdminUserId, AppId, ScriptId};
use picloud_core::ports::{
    INVOCATIONS_KEPT, InvocationLog, InvocationLogError, ScriptRepoError, ScriptRepository,
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
            name: ScriptName::parse(&r.name).map_err(|_| DecodeError::new("name", r.name))?,
            live_version: version_number("live_version", r.live_version)?,
            latest_version: version_number("latest_version", r.latest_version)?,
            created_at: r.created_at,
            updated_at: r.updated_at,
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
    ) -> Result<Deployed, ScriptRepoError> {
        let now = picloud_core::clock::now();
        let row: DeployRow = sqlx::query_as(
            "WITH s AS ( \
               INSERT INTO scripts AS t \
                 (id, app_id, name, live_version, latest_version, created_at, updated_at) \
               VALUES ($1, $2, $3, 1, 1, $5, $5) \
               ON CONFLICT (app_id, name) DO UPDATE \
                 SET latest_version = t.latest_version + 1, \
                     live_version = t.latest_version + 1, \
                     updated_at = EXCLUDED.updated_at \
               RETURNING id, app_id, name, live_version, latest_version, created_at, \
                         updated_at, (xmax = 0) AS created \
             ), v AS ( \
               INSERT INTO script_versions (script_id, version, source, created_by, created_at) \
               SELECT id, latest_version, $4, $6, $5 FROM s \
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
        .fetch_one(&self.pool)
        .await
        .map_err(err)?;
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
        })
    }

    async fn get(&self, app: AppId, name: &ScriptName) -> Result<Option<Script>, ScriptRepoError> {
        let row: Option<ScriptRow> = sqlx::query_as(
            "SELECT id, app_id, name, live_version, latest_version, created_at, updated_at \
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
            "SELECT id, app_id, name, live_version, latest_version, created_at, updated_at \
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
    ) -> Result<Vec<ScriptVersion>, ScriptRepoError> {
        let rows: Vec<VersionRow> = sqlx::query_as(
            "SELECT v.script_id, v.version, v.source, v.created_by, v.created_at \
             FROM script_versions v JOIN scripts s ON s.id = v.script_id \
             WHERE s.app_id = $1 AND s.name = $2 ORDER BY v.version",
        )
        .bind(app.as_uuid())
        .bind(name.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.into_iter()
            .map(ScriptVersion::try_from)
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
             RETURNING id, app_id, name, live_version, latest_version, created_at, updated_at",
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

    async fn all_live(&self) -> Result<Vec<(Script, ScriptVersion)>, ScriptRepoError> {
        let rows: Vec<LiveRow> = sqlx::query_as(
            "SELECT s.id, s.app_id, s.name, s.live_version, s.latest_version, s.created_at, \
                    s.updated_at, v.source AS v_source, v.created_by AS v_created_by, \
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

    async fn app_limits(&self, app: AppId) -> Result<Option<String>, ScriptRepoError> {
        let limits: Option<Option<String>> =
            sqlx::query_scalar("SELECT limits FROM apps WHERE id = $1")
                .bind(app.as_uuid())
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?;
        Ok(limits.flatten())
    }

    async fn set_app_limits(
        &self,
        app: AppId,
        limits: Option<String>,
    ) -> Result<(), ScriptRepoError> {
        let done = sqlx::query("UPDATE apps SET limits = $2 WHERE id = $1")
            .bind(app.as_uuid())
            .bind(limits)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        if done.rows_affected() == 0 {
            Err(ScriptRepoError::NotFound)
        } else {
            Ok(())
        }
    }
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
        })
    }
}

fn log_error(e: impl Into<Failure>) -> InvocationLogError {
    match e.into() {
        Failure::Backend(e) => InvocationLogError::Backend(e),
        other => InvocationLogError::Backend(format!("unexpected {other:?}").into()),
    }
}

#[async_trait]
impl InvocationLog for PostgresStore {
    async fn append(&self, records: Vec<InvocationRecord>) -> Result<(), InvocationLogError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut scripts = Vec::with_capacity(records.len());
        let mut versions = Vec::with_capacity(records.len());
        let mut ats = Vec::with_capacity(records.len());
        let mut statuses = Vec::with_capacity(records.len());
        let mut durations = Vec::with_capacity(records.len());
        let mut logs = Vec::with_capacity(records.len());
        let mut errors = Vec::with_capacity(records.len());
        for r in &records {
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
            "INSERT INTO invocations (script_id, version, at, status, duration_us, logs, error) \
             SELECT r.script_id, r.version, r.at, r.status, r.duration_us, r.logs, r.error \
             FROM UNNEST($1::uuid[], $2::int[], $3::timestamptz[], $4::int[], $5::bigint[], \
                         $6::text[], $7::text[]) \
                  WITH ORDINALITY AS r(script_id, version, at, status, duration_us, logs, error, n) \
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
        .execute(&mut *tx)
        .await
        .map_err(log_error)?;
        // Retention: keep the newest INVOCATIONS_KEPT per touched script.
        sqlx::query(
            "DELETE FROM invocations i \
             WHERE i.script_id = ANY($1) AND i.id NOT IN ( \
               SELECT k.id FROM invocations k WHERE k.script_id = i.script_id \
               ORDER BY k.at DESC, k.id DESC LIMIT $2)",
        )
        .bind(&scripts)
        .bind(i64::try_from(INVOCATIONS_KEPT).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await
        .map_err(log_error)?;
        tx.commit().await.map_err(log_error)
    }

    async fn recent(
        &self,
        script: ScriptId,
        limit: usize,
    ) -> Result<Vec<InvocationRecord>, InvocationLogError> {
        let rows: Vec<InvocationRow> = sqlx::query_as(
            "SELECT script_id, version, at, status, duration_us, logs, error \
             FROM invocations WHERE script_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
        )
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
}

/// `text` with each NUL replaced by U+FFFD (PostgreSQL `text` cannot hold NUL).
fn without_nul(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}
