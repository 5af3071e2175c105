//! The schedules port: cron schedules, and firing their ticks exactly once.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::BoxError;
use crate::domain::{Schedule, ScheduleName, ScheduleSpec, Tick};
use crate::ids::AppId;

/// Errors of [`ScheduleRepository`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleRepoError {
    /// No such app, or no such script.
    #[error("app or script not found")]
    NotFound,
    /// The backend failed.
    #[error("schedule store backend error: {0}")]
    Backend(#[source] BoxError),
}

/// Stores schedules and fires their ticks.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ScheduleRepository: Send + Sync {
    /// The store's clock (PostgreSQL's `now()`), truncated to microseconds.
    async fn now(&self) -> Result<DateTime<Utc>, ScheduleRepoError>;

    /// Creates or replaces the schedule `spec.name` of `app`; `true` if it
    /// was created. Replacing keeps `created_at`, `last_run_at` and
    /// `last_job`. [`ScheduleRepoError::NotFound`] if the app or the script
    /// does not exist.
    async fn put(
        &self,
        app: AppId,
        spec: ScheduleSpec,
    ) -> Result<(Schedule, bool), ScheduleRepoError>;

    /// The schedule `name` of `app`.
    async fn get(
        &self,
        app: AppId,
        name: &ScheduleName,
    ) -> Result<Option<Schedule>, ScheduleRepoError>;

    /// The app's schedules, by name.
    async fn list(&self, app: AppId) -> Result<Vec<Schedule>, ScheduleRepoError>;

    /// Deletes it; `false` if there was none.
    async fn delete(&self, app: AppId, name: &ScheduleName) -> Result<bool, ScheduleRepoError>;

    /// Enabled schedules whose `next_run_at` ≤ now, earliest first, at most
    /// `limit`.
    async fn due(&self, limit: usize) -> Result<Vec<Schedule>, ScheduleRepoError>;

    /// The earliest `next_run_at` of an enabled schedule.
    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, ScheduleRepoError>;

    /// Fires `tick` in one atomic step: if the schedule's `next_run_at` is
    /// still `tick.due` (compare-and-set), sets it to `tick.next`, sets
    /// `last_run_at` to the tick's nominal time and `last_job` to its job,
    /// and stores the job, queued, unless a job of the same schedule and
    /// nominal time exists (the unique key: then nothing is stored). `true`
    /// if this call moved the schedule. Racing callers: exactly one wins.
    async fn fire(&self, tick: Tick) -> Result<bool, ScheduleRepoError>;
}
