//! What this process knows of each app's room under its queue cap, so that
//! an enqueue far below the cap is one `INSERT` rather than a count of the
//! app's held jobs plus an insert in a transaction.
//!
//! An exact count reads every held job of the app (index entries, and the
//! heap for rows the visibility map does not cover yet): O(held) per
//! enqueue, which under a backlog was most of an enqueue's cost. Instead:
//!
//! - the last exact count of an app, taken at most [`FRESH`] ago, plus what
//!   this process enqueued since, is an upper bound of what the app holds,
//!   give or take other nodes' enqueues within [`FRESH`] (completions only
//!   lower the truth, so they are not subtracted);
//! - while that bound is below the cap by more than a [`margin`], an enqueue
//!   is admitted without counting;
//! - within the margin (and always for a small cap, whose margin is the
//!   whole cap), every enqueue counts, exactly as before;
//! - a count that found the app full is answered again from memory for
//!   [`FULL_FOR`], unless this process freed some of the app's room since,
//!   so a flood against a full queue does not cost a count per request.
//!
//! The margin is what other nodes can add unseen: an eighth of the cap, and
//! at least 1,024 jobs and 8 MiB.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use picloud_core::domain::{QueueCap, QueueUsage};
use picloud_core::ids::AppId;

/// How long an exact count stands for, plus what this process added since.
pub(crate) const FRESH: Duration = Duration::from_secs(1);

/// How long a count that found an app full answers its enqueues.
pub(crate) const FULL_FOR: Duration = Duration::from_millis(50);

/// The most apps remembered; past it, the map starts again (each app then
/// counts once more).
const MAX_APPS: usize = 10_000;

/// Room kept free of the fast path: `(jobs, bytes)`.
pub(crate) fn margin(cap: QueueCap) -> (u64, u64) {
    (
        (cap.max_jobs / 8).max(1024),
        (cap.max_bytes / 8).max(8 << 20),
    )
}

/// What an enqueue of `bytes` should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Insert without counting.
    Fast,
    /// Count, then insert if the count admits it.
    Count,
    /// Refuse: a count within [`FULL_FOR`] found the app full.
    Full(QueueUsage),
}

#[derive(Debug, Clone, Copy)]
struct Known {
    /// The last exact count, with what this process added since.
    usage: QueueUsage,
    /// When the count was taken.
    at: Instant,
    /// Whether that count found the app full.
    full: bool,
}

/// Per app, the last count and what was added since.
#[derive(Debug, Default)]
pub(crate) struct Headroom {
    apps: Mutex<HashMap<AppId, Known>>,
}

impl Headroom {
    /// Whether an enqueue of `bytes` for `app` under `cap` may skip the
    /// count, must count, or is refused from the last count.
    pub(crate) fn admit(&self, app: AppId, cap: QueueCap, bytes: u64) -> Admit {
        let apps = self.apps.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(known) = apps.get(&app) else {
            return Admit::Count;
        };
        let age = known.at.elapsed();
        if known.full {
            // Full for that enqueue's cap and size; this one may differ.
            return if age < FULL_FOR && !known.usage.admits(cap, bytes) {
                Admit::Full(known.usage)
            } else {
                Admit::Count
            };
        }
        if age >= FRESH {
            return Admit::Count;
        }
        let (jobs, room) = margin(cap);
        let u = known.usage;
        let below = u.held().saturating_add(jobs) < cap.max_jobs
            && u.bytes.saturating_add(bytes).saturating_add(room) <= cap.max_bytes;
        if below { Admit::Fast } else { Admit::Count }
    }

    /// Records an exact count of `app` (taken before an enqueue decided on
    /// it) and whether it admitted the job of `bytes` that followed.
    pub(crate) fn counted(&self, app: AppId, mut usage: QueueUsage, admitted: Option<u64>) {
        let full = admitted.is_none();
        if let Some(bytes) = admitted {
            usage.queued += 1;
            usage.bytes = usage.bytes.saturating_add(bytes);
        }
        let mut apps = self.apps.lock().unwrap_or_else(PoisonError::into_inner);
        if apps.len() >= MAX_APPS && !apps.contains_key(&app) {
            apps.clear();
        }
        apps.insert(
            app,
            Known {
                usage,
                at: Instant::now(),
                full,
            },
        );
    }

    /// Adds a job of `bytes` this process enqueued without counting.
    pub(crate) fn added(&self, app: AppId, bytes: u64) {
        let mut apps = self.apps.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = apps.get_mut(&app) {
            known.usage.queued += 1;
            known.usage.bytes = known.usage.bytes.saturating_add(bytes);
        }
    }

    /// Some of `app`'s room was freed here (a job finished, was cancelled or
    /// deleted): a remembered "full" no longer stands.
    pub(crate) fn freed(&self, app: AppId) {
        let mut apps = self.apps.lock().unwrap_or_else(PoisonError::into_inner);
        if apps.get(&app).is_some_and(|k| k.full) {
            apps.remove(&app);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIG: QueueCap = QueueCap {
        max_jobs: 1_000_000,
        max_bytes: 1 << 30,
    };

    fn queued(n: u64, bytes: u64) -> QueueUsage {
        QueueUsage {
            queued: n,
            bytes,
            ..QueueUsage::default()
        }
    }

    #[test]
    fn an_unknown_app_counts_then_a_far_cap_is_fast() {
        let h = Headroom::default();
        let app = AppId::new();
        assert_eq!(h.admit(app, BIG, 10), Admit::Count);
        h.counted(app, queued(0, 0), Some(10));
        assert_eq!(h.admit(app, BIG, 10), Admit::Fast);
        h.added(app, 10);
        assert_eq!(h.apps.lock().unwrap()[&app].usage, queued(2, 20));
    }

    #[test]
    fn a_small_cap_always_counts() {
        let h = Headroom::default();
        let app = AppId::new();
        let cap = QueueCap {
            max_jobs: 100,
            max_bytes: 1 << 30,
        };
        h.counted(app, queued(0, 0), Some(1));
        assert_eq!(h.admit(app, cap, 1), Admit::Count);
    }

    #[test]
    fn within_the_margin_in_jobs_or_bytes_it_counts() {
        let h = Headroom::default();
        let app = AppId::new();
        let (jobs, bytes) = margin(BIG);
        h.counted(app, queued(BIG.max_jobs - jobs - 1, 0), Some(0));
        assert_eq!(h.admit(app, BIG, 0), Admit::Count);
        h.counted(app, queued(0, BIG.max_bytes - bytes - 100), Some(0));
        assert_eq!(h.admit(app, BIG, 99), Admit::Fast);
        assert_eq!(h.admit(app, BIG, 101), Admit::Count);
    }

    #[test]
    fn full_is_remembered_briefly_and_forgotten_when_room_is_freed() {
        let h = Headroom::default();
        let app = AppId::new();
        h.counted(app, queued(5, 0), None);
        let five = QueueCap {
            max_jobs: 5,
            max_bytes: 1 << 30,
        };
        assert_eq!(h.admit(app, five, 1), Admit::Full(queued(5, 0)));
        // Another cap (or size) that the count admits counts again.
        assert_eq!(h.admit(app, BIG, 1), Admit::Count);
        h.freed(app);
        assert_eq!(h.admit(app, five, 1), Admit::Count);
    }

    #[test]
    fn an_old_count_counts_again() {
        let h = Headroom::default();
        let app = AppId::new();
        h.counted(app, queued(0, 0), Some(0));
        h.apps.lock().unwrap().get_mut(&app).unwrap().at -= FRESH;
        assert_eq!(h.admit(app, BIG, 0), Admit::Count);
    }
}
