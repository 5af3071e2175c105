//! The metrics PiCloud records where things happen: their names, and the
//! small functions that record them (a script run, a job's end).
//!
//! Recording goes through the [`metrics`] facade, which is a no-op until a
//! recorder is installed: the `picloud` server installs its Prometheus
//! exporter only when `PICLOUD_METRICS_LISTEN` is set, and gives each name
//! here its description and histogram buckets. A name recorded by another
//! part of a node ([`NOTIFY_LAG`], by the cluster's `LISTEN` loop) is
//! defined here too, so both sides spell it the same.
//!
//! **Cardinality.** `app` (the slug) and `script` are names a tenant
//! chooses, so they are labels only where they must be, and every other
//! label is a short fixed list: `status` is the class of the answer
//! (`2xx`, `3xx`, `4xx`, `5xx`), never the code a script picked, and
//! `trigger` is one of `http`, `async`, `cron`, `event`. A run is recorded
//! only for a live script (an unknown one is a 404 before any run), so the
//! series are bounded by the scripts that exist: apps are created by
//! instance admins, scripts by an app's editors within its storage quota.
//! A deleted script's series stay until the process restarts.

#[cfg(feature = "executor")]
use std::time::Duration;

#[cfg(feature = "executor")]
use crate::domain::Trigger;

/// Counter: script runs, by `app`, `script`, `status` (class) and
/// `trigger`. A run refused before it started (a full pool: 503) counts
/// for HTTP triggers, where it is the caller's answer; a job's attempt
/// that waits for room does not.
pub const INVOCATIONS: &str = "picloud_invocations_total";

/// Histogram (seconds): how long a script ran, by `app` and `script`.
pub const INVOCATION_DURATION: &str = "picloud_invocation_duration_seconds";

/// Counter: job attempts whose completion the store took, by `outcome`:
/// `succeeded`, `retried` (queued again after a failure) or `dead` (a
/// failure with no attempt left).
pub const JOB_OUTCOMES: &str = "picloud_job_outcomes_total";

/// Counter: running jobs whose lease ran out (their node died or stalled),
/// reclaimed by this node: each is queued again, or dead if that was its
/// last attempt.
pub const JOBS_RECLAIMED: &str = "picloud_jobs_reclaimed_total";

/// Histogram (seconds): the time from a change's `NOTIFY` to this node
/// acting on it (cluster mode). Recorded by the node's `LISTEN` loop.
pub const NOTIFY_LAG: &str = "picloud_notify_lag_seconds";

/// The `status` label of an answer: its class, `2xx` … `5xx` (anything
/// else, which the executor never answers, is `5xx`).
pub fn status_class(status: u16) -> &'static str {
    match status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Records one run of `app`'s `script`: its answer's `status`, and how
/// long it ran when it ran at all (`None`: refused before it started).
#[cfg(feature = "executor")]
pub(crate) fn invocation(
    app: &str,
    script: &str,
    status: u16,
    trigger: Trigger,
    ran_for: Option<Duration>,
) {
    metrics::counter!(
        INVOCATIONS,
        "app" => app.to_owned(),
        "script" => script.to_owned(),
        "status" => status_class(status),
        "trigger" => trigger.as_str(),
    )
    .increment(1);
    if let Some(ran_for) = ran_for {
        metrics::histogram!(
            INVOCATION_DURATION,
            "app" => app.to_owned(),
            "script" => script.to_owned(),
        )
        .record(ran_for.as_secs_f64());
    }
}

/// How a job's attempt ended, as [`JOB_OUTCOMES`] counts it.
#[cfg(feature = "executor")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobOutcome {
    /// The attempt succeeded.
    Succeeded,
    /// It failed and the job is queued again.
    Retried,
    /// It failed and was the job's last attempt.
    Dead,
}

#[cfg(feature = "executor")]
impl JobOutcome {
    /// The outcome of an attempt that `succeeded` or not, which was the
    /// job's `last` allowed one or not.
    pub(crate) fn of(succeeded: bool, last: bool) -> Self {
        match (succeeded, last) {
            (true, _) => Self::Succeeded,
            (false, false) => Self::Retried,
            (false, true) => Self::Dead,
        }
    }

    /// Counts it.
    pub(crate) fn record(self) {
        let outcome = match self {
            Self::Succeeded => "succeeded",
            Self::Retried => "retried",
            Self::Dead => "dead",
        };
        metrics::counter!(JOB_OUTCOMES, "outcome" => outcome).increment(1);
    }
}

/// Counts `n` reclaimed jobs.
#[cfg(feature = "executor")]
pub(crate) fn reclaimed(n: u64) {
    if n > 0 {
        metrics::counter!(JOBS_RECLAIMED).increment(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_is_labelled_by_its_class() {
        assert_eq!(
            [200, 204, 302, 404, 499, 500, 504, 599].map(status_class),
            ["2xx", "2xx", "3xx", "4xx", "4xx", "5xx", "5xx", "5xx"]
        );
    }

    #[test]
    fn a_failure_on_the_last_attempt_is_dead() {
        assert_eq!(JobOutcome::of(true, true), JobOutcome::Succeeded);
        assert_eq!(JobOutcome::of(false, false), JobOutcome::Retried);
        assert_eq!(JobOutcome::of(false, true), JobOutcome::Dead);
    }
}
