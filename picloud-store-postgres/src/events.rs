//! [`JobQueue`], [`ScheduleRepository`] and [`SubscriptionRepository`] for
//! [`PostgresStore`] (migration `0009_events.sql`).
//!
//! - **Claim** is one statement: the apps with queued jobs (a loose index
//!   scan, one descent per app, rather than a scan of every queued job),
//!   for each its earliest due `per_app` (`LATERAL … FOR UPDATE SKIP
//!   LOCKED`), the earliest `limit` of those, updated to running with a
//!   lease from `now()`.
//! - **Completion** of a batch is one `UPDATE … FROM UNNEST(…)`, each row
//!   fenced by `status = 'running' AND attempt = $n`; with events, in one
//!   transaction with their jobs (the outbox).
//! - **Enqueue** far below the app's cap is one `INSERT … RETURNING`; near
//!   it, a transaction that counts first (the private `headroom` module).
//! - **A tick** is one transaction: the compare-and-set on `next_run_at`,
//!   then the job insert, which the unique key `jobs_tick_key` makes
//!   happen at most once per nominal time.
//! - "Now" is always the database's `now()`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use picloud_core::domain::{
    ATTEMPTS_KEPT, Attempt, Event, Job, JobResult, JobSource, JobStatus, NewJob, QueueCap,
    QueueUsage, Schedule, ScheduleName, ScheduleSpec, ScriptName, Subscription, Tick, Topic,
};
use picloud_core::ids::{AppId, JobId};
use picloud_core::ports::{
    BoxError, Completion, Enqueued, JobFilter, JobQueue, JobQueueError, ScheduleRepoError,
    ScheduleRepository, SubscriptionRepoError, SubscriptionRepository,
};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::PostgresStore;
use crate::error::Failure;
use crate::headroom::Admit;

fn jobs_error(e: impl Into<Failure>) -> JobQueueError {
    match e.into() {
        Failure::ForeignKey => JobQueueError::NotFound,
        Failure::Unique { constraint } => JobQueueError::Backend(
            format!(
                "unexpected unique violation: {}",
                constraint.unwrap_or_default()
            )
            .into(),
        ),
        Failure::Backend(e) => JobQueueError::Backend(e),
    }
}

fn schedules_error(e: impl Into<Failure>) -> ScheduleRepoError {
    match e.into() {
        Failure::ForeignKey => ScheduleRepoError::NotFound,
        Failure::Unique { constraint } => ScheduleRepoError::Backend(
            format!(
                "unexpected unique violation: {}",
                constraint.unwrap_or_default()
            )
            .into(),
        ),
        Failure::Backend(e) => ScheduleRepoError::Backend(e),
    }
}

fn subscriptions_error(e: impl Into<Failure>) -> SubscriptionRepoError {
    match e.into() {
        Failure::ForeignKey => SubscriptionRepoError::NotFound,
        Failure::Unique { constraint } => SubscriptionRepoError::Backend(
            format!(
                "unexpected unique violation: {}",
                constraint.unwrap_or_default()
            )
            .into(),
        ),
        Failure::Backend(e) => SubscriptionRepoError::Backend(e),
    }
}

fn backend(e: impl std::fmt::Display) -> BoxError {
    e.to_string().into()
}

/// The apps with queued jobs, as the CTE `a(app_id)` (its last row is
/// NULL): a loose index scan of `jobs_queued_idx`, one descent per app,
/// where `DISTINCT` would read every queued job.
const QUEUED_APPS: &str = "WITH RECURSIVE a(app_id) AS ( \
     (SELECT app_id FROM jobs WHERE status = 'queued' ORDER BY app_id LIMIT 1) \
     UNION ALL \
     SELECT (SELECT q.app_id FROM jobs q \
             WHERE q.status = 'queued' AND q.app_id > a.app_id \
             ORDER BY q.app_id LIMIT 1) \
     FROM a WHERE a.app_id IS NOT NULL)";

/// The columns of a job, as [`job_from_row`] reads them. `attempts` is
/// JSON text; listings pass it without the logs.
const JOB_COLUMNS: &str = "id, app_id, script, status, source, attempt, last_attempt, \
     max_attempts, lease_ms, run_at, lease_until, dedupe_key, attempts::text AS attempts, \
     result, created_at, updated_at";

fn int(v: i32) -> Result<u32, BoxError> {
    u32::try_from(v).map_err(backend)
}

fn job_from_row(row: &sqlx::postgres::PgRow) -> Result<Job, BoxError> {
    let status: String = row.try_get("status")?;
    let source: String = row.try_get("source")?;
    let attempts: String = row.try_get("attempts")?;
    let result: Option<String> = row.try_get("result")?;
    let script: String = row.try_get("script")?;
    Ok(Job {
        id: JobId::from(row.try_get::<Uuid, _>("id")?),
        app_id: AppId::from(row.try_get::<Uuid, _>("app_id")?),
        script: ScriptName::parse_stored(&script).map_err(backend)?,
        source: serde_json::from_str(&source).map_err(backend)?,
        status: JobStatus::parse(&status)
            .ok_or_else(|| backend(format!("unknown job status {status:?}")))?,
        attempt: int(row.try_get("attempt")?)?,
        last_attempt: int(row.try_get("last_attempt")?)?,
        max_attempts: int(row.try_get("max_attempts")?)?,
        lease_ms: int(row.try_get("lease_ms")?)?,
        run_at: row.try_get("run_at")?,
        lease_until: row.try_get("lease_until")?,
        dedupe_key: row.try_get("dedupe_key")?,
        attempts: serde_json::from_str(&attempts).map_err(backend)?,
        result: result
            .map(|r| serde_json::from_str::<JobResult>(&r))
            .transpose()
            .map_err(backend)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn jobs_from_rows(rows: &[sqlx::postgres::PgRow]) -> Result<Vec<Job>, JobQueueError> {
    rows.iter()
        .map(job_from_row)
        .collect::<Result<_, _>>()
        .map_err(JobQueueError::Backend)
}

/// The text PostgreSQL can hold (no NUL), for the JSON of attempts.
fn clean(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

fn attempt_json(record: &Attempt) -> Result<String, BoxError> {
    let mut r = record.clone();
    r.fit();
    r.logs = r.logs.iter().map(|l| clean(l)).collect();
    r.error = r.error.as_deref().map(clean);
    serde_json::to_string(&r).map_err(backend)
}

fn i32_of(v: u32) -> Result<i32, BoxError> {
    i32::try_from(v).map_err(backend)
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Inserts `job` as queued, due now, and returns its row. `ON CONFLICT DO
/// NOTHING` on either unique key (idempotency or tick): `None` when a job
/// with the key exists.
async fn insert_job<'e, E>(conn: E, job: &NewJob) -> Result<Option<sqlx::postgres::PgRow>, Failure>
where
    E: sqlx::Executor<'e, Database = sqlx::Postgres>,
{
    let source = serde_json::to_string(&job.source).map_err(|e| Failure::Backend(backend(e)))?;
    let (schedule, scheduled_at) = match &job.source {
        JobSource::Cron {
            schedule,
            scheduled_at,
            ..
        } => (Some(schedule.as_str().to_owned()), Some(*scheduled_at)),
        _ => (None, None),
    };
    let sql = format!(
        "INSERT INTO jobs (id, app_id, script, kind, status, source, schedule, scheduled_at, \
             attempt, last_attempt, max_attempts, lease_ms, run_at, dedupe_key, size_bytes, \
             created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, 0, $8, $8, $9, now(), $10, $11, now(), now()) \
         ON CONFLICT DO NOTHING RETURNING {JOB_COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(job.id.as_uuid())
        .bind(job.app_id.as_uuid())
        .bind(job.script.as_str())
        .bind(job.source.kind().as_str())
        .bind(source)
        .bind(schedule)
        .bind(scheduled_at)
        .bind(i32_of(job.max_attempts).map_err(Failure::Backend)?)
        .bind(i32_of(job.lease_ms).map_err(Failure::Backend)?)
        .bind(job.dedupe_key.as_deref())
        .bind(i64_of(job.source.size_bytes()))
        .fetch_optional(conn)
        .await?;
    Ok(row)
}

/// The job of `job`'s script that holds the idempotency key `key`.
async fn keyed(
    conn: &mut PgConnection,
    job: &NewJob,
    key: &str,
) -> Result<Option<Uuid>, JobQueueError> {
    sqlx::query_scalar("SELECT id FROM jobs WHERE app_id = $1 AND script = $2 AND dedupe_key = $3")
        .bind(job.app_id.as_uuid())
        .bind(job.script.as_str())
        .bind(key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(jobs_error)
}

/// The held jobs' counts and bytes (a [`QueueUsage`] row), filtered by
/// `$filter` (`jobs_held_idx` answers both uses).
macro_rules! held_counts {
    ($filter:literal) => {
        concat!(
            "SELECT count(*) FILTER (WHERE status = 'queued') AS queued, \
                    count(*) FILTER (WHERE status = 'running') AS running, \
                    count(*) FILTER (WHERE status = 'dead') AS dead, \
                    COALESCE(sum(size_bytes), 0)::bigint AS bytes \
             FROM jobs WHERE status IN ('queued', 'running', 'dead')",
            $filter
        )
    };
}

async fn usage_on(conn: &mut PgConnection, app: AppId) -> Result<QueueUsage, Failure> {
    let row = sqlx::query(held_counts!(" AND app_id = $1"))
        .bind(app.as_uuid())
        .fetch_one(&mut *conn)
        .await?;
    usage_of(&row)
}

/// A `held_counts!` row.
fn usage_of(row: &sqlx::postgres::PgRow) -> Result<QueueUsage, Failure> {
    let n = |c: &str| -> Result<u64, Failure> {
        let v: i64 = row.try_get(c)?;
        Ok(u64::try_from(v).unwrap_or(0))
    };
    Ok(QueueUsage {
        queued: n("queued")?,
        running: n("running")?,
        dead: n("dead")?,
        bytes: n("bytes")?,
    })
}

/// Stores a job of each subscription of each event, at most `room` jobs in
/// all when given (and within the bytes left): the number stored.
async fn fan_out(
    conn: &mut PgConnection,
    app: AppId,
    events: &[Event],
    lease_ms: u32,
    mut room: Option<(u64, u64)>,
) -> Result<u64, Failure> {
    let mut stored = 0;
    for event in events {
        let source = JobSource::Event {
            topic: event.topic.clone(),
            event_id: event.id,
            payload: event.payload.clone(),
        };
        let size = source.size_bytes();
        let limit = match room {
            Some((jobs, bytes)) => jobs.min(bytes / size.max(1)),
            None => u64::from(u32::MAX),
        };
        if limit == 0 {
            break;
        }
        let text = serde_json::to_string(&source).map_err(|e| Failure::Backend(backend(e)))?;
        let done = sqlx::query(
            "INSERT INTO jobs (id, app_id, script, kind, status, source, attempt, last_attempt, \
                 max_attempts, lease_ms, run_at, size_bytes, created_at, updated_at) \
             SELECT gen_random_uuid(), app_id, script, 'event', 'queued', $3, 0, max_attempts, \
                 max_attempts, $4, now(), $5, now(), now() \
             FROM subscriptions WHERE app_id = $1 AND topic = $2 \
             ORDER BY name LIMIT $6",
        )
        .bind(app.as_uuid())
        .bind(event.topic.as_str())
        .bind(text)
        .bind(i32_of(lease_ms).map_err(Failure::Backend)?)
        .bind(i64_of(size))
        .bind(i64_of(limit))
        .execute(&mut *conn)
        .await?;
        let n = done.rows_affected();
        stored += n;
        if let Some((jobs, bytes)) = room.as_mut() {
            *jobs -= n.min(*jobs);
            *bytes -= (n * size).min(*bytes);
        }
    }
    Ok(stored)
}

#[async_trait]
impl JobQueue for PostgresStore {
    async fn enqueue(&self, job: NewJob, cap: QueueCap) -> Result<Enqueued, JobQueueError> {
        let size = job.source.size_bytes();
        let admit = self.headroom.admit(job.app_id, cap, size);
        // Without an idempotency key, far below the cap: one statement.
        if job.dedupe_key.is_none() {
            match admit {
                Admit::Fast => {
                    let row = insert_job(&self.pool, &job).await.map_err(jobs_error)?;
                    let Some(row) = row else {
                        return Err(JobQueueError::Conflict(JobStatus::Queued));
                    };
                    self.headroom.added(job.app_id, size);
                    return Ok(Enqueued::Created(
                        job_from_row(&row).map_err(JobQueueError::Backend)?,
                    ));
                }
                Admit::Full(usage) => return Err(JobQueueError::QueueFull(usage)),
                Admit::Count => {}
            }
        }
        let mut tx = self.pool.begin().await.map_err(jobs_error)?;
        if let Some(key) = &job.dedupe_key {
            sqlx::query(
                "UPDATE jobs SET dedupe_key = NULL \
                 WHERE app_id = $1 AND script = $2 AND dedupe_key = $3 \
                   AND created_at < now() - interval '24 hours'",
            )
            .bind(job.app_id.as_uuid())
            .bind(job.script.as_str())
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(jobs_error)?;
            if let Some(id) = keyed(&mut tx, &job, key).await? {
                tx.commit().await.map_err(jobs_error)?;
                return Ok(Enqueued::Existing(id.into()));
            }
            if let Admit::Full(usage) = admit {
                return Err(JobQueueError::QueueFull(usage));
            }
        }
        if admit != Admit::Fast {
            let usage = usage_on(&mut tx, job.app_id).await.map_err(jobs_error)?;
            let admitted = usage.admits(cap, size);
            self.headroom
                .counted(job.app_id, usage, admitted.then_some(size));
            if !admitted {
                return Err(JobQueueError::QueueFull(usage));
            }
        } else {
            self.headroom.added(job.app_id, size);
        }
        let Some(row) = insert_job(&mut *tx, &job).await.map_err(jobs_error)? else {
            // A racing enqueue with the same key won (this statement waited
            // for its commit): name its job.
            let existing = match &job.dedupe_key {
                Some(key) => keyed(&mut tx, &job, key).await?,
                None => None,
            };
            tx.commit().await.map_err(jobs_error)?;
            return match existing {
                Some(id) => Ok(Enqueued::Existing(id.into())),
                None => Err(JobQueueError::Conflict(JobStatus::Queued)),
            };
        };
        tx.commit().await.map_err(jobs_error)?;
        Ok(Enqueued::Created(
            job_from_row(&row).map_err(JobQueueError::Backend)?,
        ))
    }

    async fn publish(
        &self,
        app: AppId,
        events: Vec<Event>,
        lease_ms: u32,
        cap: QueueCap,
    ) -> Result<u64, JobQueueError> {
        let mut tx = self.pool.begin().await.map_err(jobs_error)?;
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM apps WHERE id = $1")
            .bind(app.as_uuid())
            .fetch_optional(&mut *tx)
            .await
            .map_err(jobs_error)?;
        if exists.is_none() {
            return Err(JobQueueError::NotFound);
        }
        let usage = usage_on(&mut tx, app).await.map_err(jobs_error)?;
        let held = usage.held();
        let room = (
            cap.max_jobs.saturating_sub(held),
            cap.max_bytes.saturating_sub(usage.bytes),
        );
        let n = fan_out(&mut tx, app, &events, lease_ms, Some(room))
            .await
            .map_err(jobs_error)?;
        tx.commit().await.map_err(jobs_error)?;
        Ok(n)
    }

    async fn claim(&self, limit: usize, per_app: usize) -> Result<Vec<Job>, JobQueueError> {
        let sql = format!(
            "{QUEUED_APPS} \
             UPDATE jobs j SET status = 'running', attempt = j.attempt + 1, \
                 lease_until = now() + j.lease_ms * interval '1 millisecond', updated_at = now() \
             WHERE j.status = 'queued' AND j.id IN ( \
                 SELECT c.id FROM a \
                     CROSS JOIN LATERAL ( \
                         SELECT id, run_at FROM jobs \
                         WHERE app_id = a.app_id AND status = 'queued' AND run_at <= now() \
                         ORDER BY run_at LIMIT $2 FOR UPDATE SKIP LOCKED) c \
                 ORDER BY c.run_at LIMIT $1) \
             RETURNING {}",
            JOB_COLUMNS
                .split(", ")
                .map(|c| format!("j.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(i64::try_from(per_app.max(1)).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(jobs_error)?;
        let mut jobs = jobs_from_rows(&rows)?;
        jobs.sort_by_key(|j| (j.run_at, j.id));
        Ok(jobs)
    }

    async fn complete(&self, batch: Vec<Completion>) -> Result<Vec<bool>, JobQueueError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let keep = i32::try_from(ATTEMPTS_KEPT).unwrap_or(i32::MAX);
        let n = batch.len();
        let (mut ids, mut attempts, mut oks) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut retries, mut results, mut records) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for c in &batch {
            ids.push(c.job.as_uuid());
            attempts.push(i32_of(c.attempt).map_err(JobQueueError::Backend)?);
            oks.push(c.record.succeeded);
            retries.push(i64::try_from(c.retry_in.as_micros()).unwrap_or(i64::MAX));
            let result = c
                .result
                .as_ref()
                .map(|r| {
                    serde_json::to_string(&JobResult {
                        status: r.status,
                        body: clean(&r.body),
                    })
                })
                .transpose()
                .map_err(|e| JobQueueError::Backend(backend(e)))?;
            results.push(result);
            records.push(attempt_json(&c.record).map_err(JobQueueError::Backend)?);
        }
        // One statement for the batch, each row fenced by its attempt; with
        // events to store, in one transaction with them (the outbox).
        let statement = sqlx::query_as::<_, (Uuid, i32, Uuid)>(
            "UPDATE jobs j SET \
                 status = CASE WHEN c.ok THEN 'succeeded' \
                               WHEN j.attempt < j.last_attempt THEN 'queued' ELSE 'dead' END, \
                 run_at = CASE WHEN NOT c.ok AND j.attempt < j.last_attempt \
                               THEN now() + c.retry_us * interval '1 microsecond' ELSE j.run_at END, \
                 lease_until = NULL, result = c.result, \
                 attempts = picloud_push_attempt(j.attempts, c.record::jsonb, $7), \
                 updated_at = now() \
             FROM UNNEST($1::uuid[], $2::int[], $3::bool[], $4::bigint[], $5::text[], $6::text[]) \
                  AS c(id, attempt, ok, retry_us, result, record) \
             WHERE j.id = c.id AND j.status = 'running' AND j.attempt = c.attempt \
             RETURNING j.id, j.attempt, j.app_id",
        )
        .bind(&ids)
        .bind(&attempts)
        .bind(&oks)
        .bind(&retries)
        .bind(&results)
        .bind(&records)
        .bind(keep);
        let with_events = batch
            .iter()
            .any(|c| c.record.succeeded && !c.events.is_empty());
        let mut tx = match with_events {
            true => Some(self.pool.begin().await.map_err(jobs_error)?),
            false => None,
        };
        let rows = match tx.as_mut() {
            Some(tx) => statement.fetch_all(&mut **tx).await,
            None => statement.fetch_all(&self.pool).await,
        }
        .map_err(jobs_error)?;
        let mut apps: std::collections::HashMap<(Uuid, i32), Uuid> = rows
            .into_iter()
            .map(|(id, attempt, app)| ((id, attempt), app))
            .collect();
        let mut held = Vec::with_capacity(n);
        for (c, (id, attempt)) in batch.iter().zip(ids.iter().zip(&attempts)) {
            // A duplicate in the batch is not held twice.
            let app = apps.remove(&(*id, *attempt)).map(AppId::from);
            held.push(app.is_some());
            let Some(app) = app else { continue };
            if c.record.succeeded {
                self.headroom.freed(app);
            }
            if let Some(tx) = tx.as_mut()
                && c.record.succeeded
                && !c.events.is_empty()
            {
                let usage = usage_on(tx, app).await.map_err(jobs_error)?;
                let room = (
                    c.events_cap.max_jobs.saturating_sub(usage.held()),
                    c.events_cap.max_bytes.saturating_sub(usage.bytes),
                );
                fan_out(tx, app, &c.events, c.events_lease_ms, Some(room))
                    .await
                    .map_err(jobs_error)?;
            }
        }
        if let Some(tx) = tx {
            tx.commit().await.map_err(jobs_error)?;
        }
        Ok(held)
    }

    async fn reclaim_expired(&self) -> Result<u64, JobQueueError> {
        let keep = i32::try_from(ATTEMPTS_KEPT).unwrap_or(i32::MAX);
        let done = sqlx::query(
            "UPDATE jobs SET \
                 status = CASE WHEN attempt < last_attempt THEN 'queued' ELSE 'dead' END, \
                 run_at = now(), lease_until = NULL, updated_at = now(), \
                 attempts = picloud_push_attempt(attempts, jsonb_build_object( \
                     'attempt', attempt, 'version', 0, 'succeeded', false, 'http_status', 504, \
                     'duration_us', 0, 'logs', '[]'::jsonb, \
                     'error', 'lease expired: the worker holding the attempt stopped', \
                     'at', to_jsonb(date_trunc('microseconds', now()))), $1) \
             WHERE status = 'running' AND lease_until < now()",
        )
        .bind(keep)
        .execute(&self.pool)
        .await
        .map_err(jobs_error)?;
        Ok(done.rows_affected())
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, JobQueueError> {
        let sql = format!(
            "{QUEUED_APPS} \
             SELECT min(t) FROM ( \
                 SELECT (SELECT q.run_at FROM jobs q \
                         WHERE q.app_id = a.app_id AND q.status = 'queued' \
                         ORDER BY q.run_at LIMIT 1) AS t \
                 FROM a WHERE a.app_id IS NOT NULL \
                 UNION ALL \
                 SELECT min(lease_until) FROM jobs WHERE status = 'running') x"
        );
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&self.pool)
            .await
            .map_err(jobs_error)
    }

    async fn get(&self, app: AppId, id: JobId) -> Result<Option<Job>, JobQueueError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE app_id = $1 AND id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(app.as_uuid())
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(jobs_error)?;
        row.as_ref()
            .map(job_from_row)
            .transpose()
            .map_err(JobQueueError::Backend)
    }

    async fn list(&self, app: AppId, filter: JobFilter) -> Result<Vec<Job>, JobQueueError> {
        let limit = match filter.limit {
            0 => 100,
            n => n.min(1000),
        };
        // The attempts without their logs.
        let columns = JOB_COLUMNS.replace(
            "attempts::text AS attempts",
            "(SELECT COALESCE(jsonb_agg(jsonb_set(e, '{logs}', '[]'::jsonb) ORDER BY i), \
                 '[]'::jsonb) FROM jsonb_array_elements(attempts) WITH ORDINALITY AS t(e, i))::text \
             AS attempts",
        );
        let sql = format!(
            "SELECT {columns} FROM jobs WHERE app_id = $1 \
               AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR script = $3) \
             ORDER BY created_at DESC, id DESC LIMIT $4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(app.as_uuid())
            .bind(filter.status.map(JobStatus::as_str))
            .bind(filter.script.as_ref().map(|s| s.as_str().to_owned()))
            .bind(i64::try_from(limit).unwrap_or(100))
            .fetch_all(&self.pool)
            .await
            .map_err(jobs_error)?;
        jobs_from_rows(&rows)
    }

    async fn retry(&self, app: AppId, id: JobId) -> Result<Job, JobQueueError> {
        let sql = format!(
            "UPDATE jobs SET status = 'queued', run_at = now(), lease_until = NULL, \
                 last_attempt = attempt + max_attempts, updated_at = now() \
             WHERE app_id = $1 AND id = $2 AND status IN ('dead', 'succeeded', 'cancelled') \
             RETURNING {JOB_COLUMNS}"
        );
        self.change(app, id, sql).await
    }

    async fn cancel(&self, app: AppId, id: JobId) -> Result<Job, JobQueueError> {
        let sql = format!(
            "UPDATE jobs SET status = 'cancelled', updated_at = now() \
             WHERE app_id = $1 AND id = $2 AND status = 'queued' RETURNING {JOB_COLUMNS}"
        );
        let job = self.change(app, id, sql).await?;
        self.headroom.freed(app);
        Ok(job)
    }

    async fn delete(&self, app: AppId, id: JobId) -> Result<bool, JobQueueError> {
        let done = sqlx::query(
            "DELETE FROM jobs WHERE app_id = $1 AND id = $2 \
               AND status IN ('dead', 'succeeded', 'cancelled')",
        )
        .bind(app.as_uuid())
        .bind(id.as_uuid())
        .execute(&self.pool)
        .await
        .map_err(jobs_error)?;
        if done.rows_affected() > 0 {
            self.headroom.freed(app);
            return Ok(true);
        }
        match self.status_of(app, id).await? {
            None => Ok(false),
            Some(status) => Err(JobQueueError::Conflict(status)),
        }
    }

    async fn usage(&self, app: AppId) -> Result<QueueUsage, JobQueueError> {
        let mut conn = self.pool.acquire().await.map_err(jobs_error)?;
        usage_on(&mut conn, app).await.map_err(jobs_error)
    }

    async fn totals(&self) -> Result<QueueUsage, JobQueueError> {
        let row = sqlx::query(held_counts!(""))
            .fetch_one(&self.pool)
            .await
            .map_err(jobs_error)?;
        usage_of(&row).map_err(jobs_error)
    }

    async fn prune(&self) -> Result<u64, JobQueueError> {
        let done = sqlx::query(
            "DELETE FROM jobs WHERE status IN ('succeeded', 'cancelled') AND ( \
                 updated_at < now() - interval '7 days' \
                 OR id IN (SELECT id FROM ( \
                     SELECT id, \
                         row_number() OVER w AS n, \
                         sum(size_bytes) OVER w AS bytes \
                     FROM jobs WHERE status IN ('succeeded', 'cancelled') \
                     WINDOW w AS (PARTITION BY app_id ORDER BY updated_at DESC, id DESC)) t \
                   WHERE n > $1 OR bytes > $2))",
        )
        .bind(i64::try_from(picloud_core::domain::FINISHED_KEPT_PER_APP).unwrap_or(i64::MAX))
        .bind(i64_of(picloud_core::domain::FINISHED_BYTES_PER_APP))
        .execute(&self.pool)
        .await
        .map_err(jobs_error)?;
        Ok(done.rows_affected())
    }
}

impl PostgresStore {
    /// Runs a state change that returns the job, or says why it did not
    /// apply: no such job, or its state.
    async fn change(&self, app: AppId, id: JobId, sql: String) -> Result<Job, JobQueueError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(app.as_uuid())
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(jobs_error)?;
        match row {
            Some(row) => job_from_row(&row).map_err(JobQueueError::Backend),
            None => match self.status_of(app, id).await? {
                None => Err(JobQueueError::NotFound),
                Some(status) => Err(JobQueueError::Conflict(status)),
            },
        }
    }

    async fn status_of(&self, app: AppId, id: JobId) -> Result<Option<JobStatus>, JobQueueError> {
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM jobs WHERE app_id = $1 AND id = $2")
                .bind(app.as_uuid())
                .bind(id.as_uuid())
                .fetch_optional(&self.pool)
                .await
                .map_err(jobs_error)?;
        Ok(status.and_then(|s| JobStatus::parse(&s)))
    }
}

const SCHEDULE_COLUMNS: &str = "app_id, name, script, cron, timezone, payload, enabled, \
     max_attempts, next_run_at, last_run_at, last_job, created_at, updated_at";

fn schedule_from_row(row: &sqlx::postgres::PgRow) -> Result<Schedule, ScheduleRepoError> {
    let read = || -> Result<Schedule, BoxError> {
        let name: String = row.try_get("name")?;
        let script: String = row.try_get("script")?;
        Ok(Schedule {
            app_id: AppId::from(row.try_get::<Uuid, _>("app_id")?),
            name: ScheduleName::parse(&name).map_err(backend)?,
            script: ScriptName::parse_stored(&script).map_err(backend)?,
            cron: row.try_get("cron")?,
            timezone: row.try_get("timezone")?,
            payload: row.try_get("payload")?,
            enabled: row.try_get("enabled")?,
            max_attempts: int(row.try_get("max_attempts")?)?,
            next_run_at: row.try_get("next_run_at")?,
            last_run_at: row.try_get("last_run_at")?,
            last_job: row.try_get::<Option<Uuid>, _>("last_job")?.map(JobId::from),
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    };
    read().map_err(ScheduleRepoError::Backend)
}

#[async_trait]
impl ScheduleRepository for PostgresStore {
    async fn now(&self) -> Result<DateTime<Utc>, ScheduleRepoError> {
        sqlx::query_scalar("SELECT date_trunc('microseconds', now())")
            .fetch_one(&self.pool)
            .await
            .map_err(schedules_error)
    }

    async fn put(
        &self,
        app: AppId,
        spec: ScheduleSpec,
    ) -> Result<(Schedule, bool), ScheduleRepoError> {
        let sql = format!(
            "INSERT INTO schedules (app_id, name, script, cron, timezone, payload, enabled, \
                 max_attempts, next_run_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now(), now()) \
             ON CONFLICT (app_id, name) DO UPDATE SET script = EXCLUDED.script, \
                 cron = EXCLUDED.cron, timezone = EXCLUDED.timezone, payload = EXCLUDED.payload, \
                 enabled = EXCLUDED.enabled, max_attempts = EXCLUDED.max_attempts, \
                 next_run_at = EXCLUDED.next_run_at, updated_at = now() \
             RETURNING {SCHEDULE_COLUMNS}, (xmax = 0) AS created"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(app.as_uuid())
            .bind(spec.name.as_str())
            .bind(spec.script.as_str())
            .bind(&spec.cron)
            .bind(&spec.timezone)
            .bind(spec.payload.as_deref())
            .bind(spec.enabled)
            .bind(i32_of(spec.max_attempts).map_err(ScheduleRepoError::Backend)?)
            .bind(spec.next_run_at)
            .fetch_one(&self.pool)
            .await
            .map_err(schedules_error)?;
        let created: bool = row.try_get("created").map_err(schedules_error)?;
        Ok((schedule_from_row(&row)?, created))
    }

    async fn get(
        &self,
        app: AppId,
        name: &ScheduleName,
    ) -> Result<Option<Schedule>, ScheduleRepoError> {
        let sql =
            format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE app_id = $1 AND name = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(app.as_uuid())
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(schedules_error)?;
        row.as_ref().map(schedule_from_row).transpose()
    }

    async fn list(&self, app: AppId) -> Result<Vec<Schedule>, ScheduleRepoError> {
        let sql = format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE app_id = $1 ORDER BY name COLLATE \"C\""
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(app.as_uuid())
            .fetch_all(&self.pool)
            .await
            .map_err(schedules_error)?;
        rows.iter().map(schedule_from_row).collect()
    }

    async fn delete(&self, app: AppId, name: &ScheduleName) -> Result<bool, ScheduleRepoError> {
        let done = sqlx::query("DELETE FROM schedules WHERE app_id = $1 AND name = $2")
            .bind(app.as_uuid())
            .bind(name.as_str())
            .execute(&self.pool)
            .await
            .map_err(schedules_error)?;
        Ok(done.rows_affected() > 0)
    }

    async fn due(&self, limit: usize) -> Result<Vec<Schedule>, ScheduleRepoError> {
        let sql = format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules \
             WHERE enabled AND next_run_at <= now() ORDER BY next_run_at LIMIT $1"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(schedules_error)?;
        rows.iter().map(schedule_from_row).collect()
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, ScheduleRepoError> {
        sqlx::query_scalar("SELECT min(next_run_at) FROM schedules WHERE enabled")
            .fetch_one(&self.pool)
            .await
            .map_err(schedules_error)
    }

    async fn fire(&self, tick: Tick) -> Result<bool, ScheduleRepoError> {
        let JobSource::Cron { scheduled_at, .. } = &tick.job.source else {
            return Err(ScheduleRepoError::Backend(
                "a tick's job must be a cron job".into(),
            ));
        };
        let mut tx = self.pool.begin().await.map_err(schedules_error)?;
        // The script row first, as a script delete takes it before it
        // cascades to its schedules: one lock order, no deadlock. A script
        // deleted meanwhile took its schedule with it: nothing to fire.
        let script: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM scripts WHERE app_id = $1 AND name = $2 FOR KEY SHARE",
        )
        .bind(tick.app_id.as_uuid())
        .bind(tick.job.script.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(schedules_error)?;
        if script.is_none() {
            return Ok(false);
        }
        let moved = sqlx::query(
            "UPDATE schedules SET next_run_at = $4, last_run_at = $5, last_job = $6, \
                 updated_at = now() \
             WHERE app_id = $1 AND name = $2 AND next_run_at = $3",
        )
        .bind(tick.app_id.as_uuid())
        .bind(tick.name.as_str())
        .bind(tick.due)
        .bind(tick.next)
        .bind(scheduled_at)
        .bind(tick.job.id.as_uuid())
        .execute(&mut *tx)
        .await
        .map_err(schedules_error)?;
        if moved.rows_affected() == 0 {
            return Ok(false);
        }
        insert_job(&mut *tx, &tick.job)
            .await
            .map_err(schedules_error)?;
        tx.commit().await.map_err(schedules_error)?;
        Ok(true)
    }
}

fn subscription_from_row(
    row: &sqlx::postgres::PgRow,
) -> Result<Subscription, SubscriptionRepoError> {
    let read = || -> Result<Subscription, BoxError> {
        let name: String = row.try_get("name")?;
        let topic: String = row.try_get("topic")?;
        let script: String = row.try_get("script")?;
        Ok(Subscription {
            app_id: AppId::from(row.try_get::<Uuid, _>("app_id")?),
            name: ScheduleName::parse(&name).map_err(backend)?,
            topic: Topic::parse(&topic).map_err(backend)?,
            script: ScriptName::parse_stored(&script).map_err(backend)?,
            max_attempts: int(row.try_get("max_attempts")?)?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    };
    read().map_err(SubscriptionRepoError::Backend)
}

#[async_trait]
impl SubscriptionRepository for PostgresStore {
    async fn put_subscription(
        &self,
        app: AppId,
        name: &ScheduleName,
        topic: &Topic,
        script: &ScriptName,
        max_attempts: u32,
    ) -> Result<(Subscription, bool), SubscriptionRepoError> {
        let row = sqlx::query(
            "INSERT INTO subscriptions (app_id, name, topic, script, max_attempts, created_at, \
                 updated_at) \
             VALUES ($1, $2, $3, $4, $5, now(), now()) \
             ON CONFLICT (app_id, name) DO UPDATE SET topic = EXCLUDED.topic, \
                 script = EXCLUDED.script, max_attempts = EXCLUDED.max_attempts, updated_at = now() \
             RETURNING app_id, name, topic, script, max_attempts, created_at, updated_at, \
                 (xmax = 0) AS created",
        )
        .bind(app.as_uuid())
        .bind(name.as_str())
        .bind(topic.as_str())
        .bind(script.as_str())
        .bind(i32_of(max_attempts).map_err(SubscriptionRepoError::Backend)?)
        .fetch_one(&self.pool)
        .await
        .map_err(subscriptions_error)?;
        let created: bool = row.try_get("created").map_err(subscriptions_error)?;
        Ok((subscription_from_row(&row)?, created))
    }

    async fn list_subscriptions(
        &self,
        app: AppId,
    ) -> Result<Vec<Subscription>, SubscriptionRepoError> {
        let rows = sqlx::query(
            "SELECT app_id, name, topic, script, max_attempts, created_at, updated_at \
             FROM subscriptions WHERE app_id = $1 ORDER BY name COLLATE \"C\"",
        )
        .bind(app.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(subscriptions_error)?;
        rows.iter().map(subscription_from_row).collect()
    }

    async fn delete_subscription(
        &self,
        app: AppId,
        name: &ScheduleName,
    ) -> Result<bool, SubscriptionRepoError> {
        let done = sqlx::query("DELETE FROM subscriptions WHERE app_id = $1 AND name = $2")
            .bind(app.as_uuid())
            .bind(name.as_str())
            .execute(&self.pool)
            .await
            .map_err(subscriptions_error)?;
        Ok(done.rows_affected() > 0)
    }
}
