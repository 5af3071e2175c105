//! The event engine (feature `executor`): async invocations, retries and
//! dead letters, cron schedules and topics, on one durable job queue.
//!
//! - [`EventService`]: the rules of the jobs, schedules and subscriptions
//!   APIs and of `/async` (authorization in core, as everywhere).
//! - [`JobRunner`]: claims due jobs in batches, runs each attempt on the
//!   executor with the app's limits, completes them in batches, retries
//!   with backoff or makes a job dead. It sleeps until the next known
//!   cause (a job's `run_at`, a lease's expiry, the service's signal): no
//!   polling, except an optional backstop for stores written by other
//!   processes (PostgreSQL: every 30 s).
//! - [`Scheduler`]: sleeps until the next tick of any schedule, then fires
//!   the due ticks, each exactly once across any number of nodes (the
//!   store's compare-and-set and unique key). After downtime it fires only
//!   the latest missed tick.
//! - [`cron`]: the pure part: expressions in a zone.

pub mod cron;
mod runner;
mod service;

use std::time::Duration;

pub use cron::{CronError, CronPlan};
pub use runner::{JobRunner, MAX_BACKOFF, RunnerConfig, Scheduler, backoff};
pub use service::{
    AsyncRequest, EventError, EventService, JobsQuery, ScheduleInput, ScheduleView,
    SubscriptionInput,
};

use crate::domain::QueueCap;
use crate::limits::Limits;

/// What a job's lease adds to the app's wall clock.
pub const LEASE_GRACE: Duration = Duration::from_secs(5);

/// The lease of a job of an app with `limits`: its wall clock plus
/// [`LEASE_GRACE`], in milliseconds.
pub fn lease_ms(limits: &Limits) -> u32 {
    u32::try_from((limits.clamped().wall_clock + LEASE_GRACE).as_millis()).unwrap_or(u32::MAX)
}

/// The queue cap of an app with `limits`.
pub fn cap(limits: &Limits) -> QueueCap {
    let l = limits.clamped();
    QueueCap {
        max_jobs: l.max_queued_jobs,
        max_bytes: l.max_queued_bytes,
    }
}
