//! The job queue port: the event engine's durable queue.
//!
//! **Semantics every store keeps** (the conformance cases check each):
//! - **Claim** hands each due job to one caller only, whatever the number
//!   of callers racing (PostgreSQL: one `UPDATE … WHERE id IN (SELECT …
//!   FOR UPDATE SKIP LOCKED LIMIT n) RETURNING`). It starts an attempt:
//!   `attempt` goes up by one and the job holds a lease until the store's
//!   now plus its `lease_ms`.
//! - **Fairness:** a claim takes at most `per_app` jobs of one app, the
//!   earliest due of each, so one app's backlog cannot hold back another
//!   app's jobs.
//! - **Completion is fenced** by the attempt number: only the attempt that
//!   holds the job (status running, same `attempt`) completes it. A slow
//!   old holder whose lease expired and whose job was claimed again gets
//!   `false` and changes nothing.
//! - **Events are an outbox:** a succeeded completion's events become jobs
//!   of their subscriptions in the same atomic step as the completion; a
//!   failed one's are dropped.
//! - **Time is the store's:** "now" is the store's clock (PostgreSQL's
//!   `now()`), never the caller's, so nodes with skewed clocks agree.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::BoxError;
use crate::domain::{
    Attempt, Event, Job, JobResult, JobStatus, NewJob, QueueCap, QueueUsage, ScriptName,
};
use crate::ids::{AppId, JobId};

/// Errors of [`JobQueue`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobQueueError {
    /// No such job (in that app), or no such app or script to enqueue for.
    #[error("job not found")]
    NotFound,
    /// The job is in a state that forbids the change (a retry of a running
    /// job, a cancel of a finished one).
    #[error("the job is {0}")]
    Conflict(JobStatus),
    /// The app's queue is full: enqueuing would pass its cap. Nothing was
    /// stored.
    #[error("the app's queue is full")]
    QueueFull(QueueUsage),
    /// The backend failed.
    #[error("job queue backend error: {0}")]
    Backend(#[source] BoxError),
}

/// What [`JobQueue::enqueue`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
// Returned once per enqueue, and moved, not stored: boxing the job would
// cost an allocation for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Enqueued {
    /// The job was stored.
    Created(Job),
    /// A job with the same script and `Idempotency-Key` was enqueued in the
    /// last 24 hours: nothing new was stored; this is its id.
    Existing(JobId),
}

impl Enqueued {
    /// The job's id, new or existing.
    pub fn id(&self) -> JobId {
        match self {
            Self::Created(job) => job.id,
            Self::Existing(id) => *id,
        }
    }
}

/// The end of one attempt, for [`JobQueue::complete`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The job.
    pub job: JobId,
    /// The attempt that ran (the fence).
    pub attempt: u32,
    /// Its record (kept with the job, cut by [`Attempt::fit`]).
    pub record: Attempt,
    /// What it answered, if it answered.
    pub result: Option<JobResult>,
    /// The events it emitted: jobs of their subscriptions if it succeeded.
    pub events: Vec<Event>,
    /// The lease of the events' jobs, in milliseconds.
    pub events_lease_ms: u32,
    /// The app's queue cap: events past it are dropped (so a script that
    /// subscribes to its own topic cannot grow the queue without bound).
    pub events_cap: QueueCap,
    /// After a failure with attempts left: how long until the next one.
    pub retry_in: Duration,
}

/// Which jobs [`JobQueue::list`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only this state.
    pub status: Option<JobStatus>,
    /// Only this script's.
    pub script: Option<ScriptName>,
    /// At most this many (the store may cap it at 1000).
    pub limit: usize,
}

/// The durable job queue.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Stores `job` as queued, due now, unless
    /// - its `dedupe_key` was used for the same app and script by a job
    ///   created in the last [`DEDUPE_WINDOW`](crate::domain::DEDUPE_WINDOW):
    ///   then nothing is stored and that job's id is returned
    ///   ([`Enqueued::Existing`]), even while racing;
    /// - the app's held jobs (queued, running, dead) would pass `cap` in
    ///   number or in bytes ([`JobSource::size_bytes`](crate::domain::JobSource::size_bytes)):
    ///   [`JobQueueError::QueueFull`], nothing stored. Concurrent enqueues
    ///   may pass the cap by at most their number.
    ///
    /// [`JobQueueError::NotFound`] if the app or the script does not exist.
    async fn enqueue(&self, job: NewJob, cap: QueueCap) -> Result<Enqueued, JobQueueError>;

    /// Stores a job of each subscription of each event's topic in `app`, as
    /// queued and due now, in one atomic step, within `cap` (events past it
    /// are dropped; the count of jobs stored is returned). For the events
    /// of a `/run`, written before its response is sent.
    async fn publish(
        &self,
        app: AppId,
        events: Vec<Event>,
        lease_ms: u32,
        cap: QueueCap,
    ) -> Result<u64, JobQueueError>;

    /// Claims up to `limit` due jobs (queued with `run_at` ≤ now), at most
    /// `per_app` of one app, earliest due first: each becomes running with
    /// `attempt + 1` and a lease of `lease_ms`. No two callers ever get the
    /// same job.
    async fn claim(&self, limit: usize, per_app: usize) -> Result<Vec<Job>, JobQueueError>;

    /// Completes attempts, in one batch. For each completion whose attempt
    /// still holds its job: a succeeded attempt makes it succeeded (and
    /// stores its events' jobs like [`publish`](Self::publish), within
    /// `events_cap`); a failed
    /// one queues it again after `retry_in` if its budget has attempts
    /// left, else makes it dead. The record is appended (the newest
    /// [`ATTEMPTS_KEPT`](crate::domain::ATTEMPTS_KEPT) kept). Returns, per
    /// completion in order, whether it held its job (a fenced-out one
    /// changes nothing).
    async fn complete(&self, batch: Vec<Completion>) -> Result<Vec<bool>, JobQueueError>;

    /// Running jobs whose lease ran out: each is queued again, due now,
    /// with a record of the lost attempt, or dead if that was its budget's
    /// last. Returns how many were reclaimed.
    async fn reclaim_expired(&self) -> Result<u64, JobQueueError>;

    /// The earliest time at which a claim or a reclaim would find work: the
    /// earliest `run_at` of a queued job or `lease_until` of a running one.
    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, JobQueueError>;

    /// The job `id` of `app`, with its attempts and their logs.
    async fn get(&self, app: AppId, id: JobId) -> Result<Option<Job>, JobQueueError>;

    /// The app's jobs, newest first (by creation), without the attempts'
    /// logs.
    async fn list(&self, app: AppId, filter: JobFilter) -> Result<Vec<Job>, JobQueueError>;

    /// Queues a dead, succeeded or cancelled job again, due now, with a
    /// fresh budget of `max_attempts` (its attempts go on numbering).
    /// [`JobQueueError::Conflict`] for a queued or running one.
    async fn retry(&self, app: AppId, id: JobId) -> Result<Job, JobQueueError>;

    /// Cancels a queued job. [`JobQueueError::Conflict`] otherwise.
    async fn cancel(&self, app: AppId, id: JobId) -> Result<Job, JobQueueError>;

    /// Deletes a finished job (succeeded, dead, cancelled); `false` if
    /// there was none. [`JobQueueError::Conflict`] for a queued or running
    /// one.
    async fn delete(&self, app: AppId, id: JobId) -> Result<bool, JobQueueError>;

    /// Where the app's queue stands.
    async fn usage(&self, app: AppId) -> Result<QueueUsage, JobQueueError>;

    /// Where every app's queue stands, summed: the queue depth a node
    /// reports (`/metrics`). Read often: one indexed count, no row locked.
    async fn totals(&self) -> Result<QueueUsage, JobQueueError>;

    /// Deletes finished jobs past retention: succeeded and cancelled ones
    /// older than [`FINISHED_KEPT_FOR`](crate::domain::FINISHED_KEPT_FOR),
    /// and beyond the newest
    /// [`FINISHED_KEPT_PER_APP`](crate::domain::FINISHED_KEPT_PER_APP) of
    /// each app, or past the newest that fit
    /// [`FINISHED_BYTES_PER_APP`](crate::domain::FINISHED_BYTES_PER_APP)
    /// of stored input (newest by `updated_at`, then id). Dead jobs stay.
    /// Returns how many were deleted.
    async fn prune(&self) -> Result<u64, JobQueueError>;
}
