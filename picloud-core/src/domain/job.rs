//! The event engine's data: jobs (async requests, cron ticks, events),
//! their attempts, schedules, subscriptions and topics.
//!
//! Everything that is not a plain `/run` is a [`Job`] of one durable queue.
//! A job runs the live version of its script at the moment each attempt
//! starts; each attempt is recorded ([`Attempt`]); a failed attempt is
//! retried with backoff until the job's budget of attempts is spent, and
//! the job is then [`JobStatus::Dead`]: kept, listed and replayable.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::script::ScriptName;
use super::text::text_newtype;
use crate::ids::{AppId, EventId, JobId};

/// The most attempts a job may be given at once (`max_attempts`).
pub const MAX_ATTEMPTS: u32 = 20;
/// The attempts a job gets when nobody says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// The most attempt records a store keeps per job: the newest.
pub const ATTEMPTS_KEPT: usize = 20;
/// The most bytes of logs and error text one attempt record keeps.
pub const ATTEMPT_LOG_MAX_BYTES: usize = 64 * 1024;
/// The most bytes of a response body a job's result keeps.
pub const RESULT_BODY_MAX_BYTES: usize = 64 * 1024;
/// The most events one run may emit.
pub const MAX_EMITS_PER_RUN: usize = 100;
/// The most bytes of JSON one emitted payload (or a schedule's payload) may
/// hold.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// The longest `Idempotency-Key`.
pub const MAX_DEDUPE_KEY_LEN: usize = 200;
/// How long an `Idempotency-Key` holds: 24 hours.
pub const DEDUPE_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(24);
/// Finished jobs (succeeded, cancelled) are kept this long at most.
pub const FINISHED_KEPT_FOR: chrono::TimeDelta = chrono::TimeDelta::days(7);
/// Finished jobs (succeeded, cancelled) kept per app at most: the newest.
pub const FINISHED_KEPT_PER_APP: usize = 10_000;
/// Bytes of stored input (requests, payloads) of finished jobs
/// (succeeded, cancelled) kept per app at most: the newest that fit.
pub const FINISHED_BYTES_PER_APP: u64 = 64 * 1024 * 1024;
/// The most schedules, and the most subscriptions, one app may have.
pub const MAX_SCHEDULES_PER_APP: usize = 100;

/// Why a job exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// An `/async/...` request.
    Async,
    /// A schedule's tick.
    Cron,
    /// An event a script emitted, for one subscription.
    Event,
}

impl JobKind {
    /// `async`, `cron` or `event`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Async => "async",
            Self::Cron => "cron",
            Self::Event => "event",
        }
    }

    /// The kind named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Async, Self::Cron, Self::Event]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Waiting for its `run_at`, or for a worker.
    Queued,
    /// An attempt holds a lease on it.
    Running,
    /// An attempt succeeded.
    Succeeded,
    /// Every attempt of its budget failed.
    Dead,
    /// Cancelled while queued.
    Cancelled,
}

impl JobStatus {
    /// Every state, in their lifecycle's order.
    pub const ALL: [Self; 5] = [
        Self::Queued,
        Self::Running,
        Self::Succeeded,
        Self::Dead,
        Self::Cancelled,
    ];

    /// The state's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Dead => "dead",
            Self::Cancelled => "cancelled",
        }
    }

    /// The state named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether no attempt will start without a retry: succeeded, dead or
    /// cancelled.
    pub const fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Dead | Self::Cancelled)
    }

    /// Whether the job counts against its app's queue cap: queued, running
    /// or dead (a dead letter waits for someone to replay or delete it).
    pub const fn is_held(self) -> bool {
        matches!(self, Self::Queued | Self::Running | Self::Dead)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An HTTP request as an async job keeps it: method, path (after the
/// script's name), query pairs in order, headers (lowercase names, without
/// any credential PiCloud accepts) and body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRequest {
    /// The method.
    pub method: String,
    /// The path after the script's name, from `/`.
    pub path: String,
    /// Every query pair, in order.
    pub query: Vec<(String, String)>,
    /// The headers, repeated ones joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The body, as text.
    pub body: String,
}

impl StoredRequest {
    /// The bytes of text it holds.
    pub fn text_bytes(&self) -> usize {
        self.method.len()
            + self.path.len()
            + self
                .query
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
            + self.body.len()
    }
}

/// What a job carries: why it exists and its input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum JobSource {
    /// An async request.
    Async {
        /// The stored request.
        request: StoredRequest,
    },
    /// A schedule's tick.
    Cron {
        /// The schedule's name.
        schedule: ScheduleName,
        /// The tick's nominal time.
        scheduled_at: DateTime<Utc>,
        /// The schedule's payload (JSON text), if any.
        payload: Option<String>,
    },
    /// An event, for one subscription.
    Event {
        /// The topic.
        topic: Topic,
        /// The event's id (one per `emit`, shared by its subscribers' jobs).
        event_id: EventId,
        /// The payload (JSON text), if any.
        payload: Option<String>,
    },
}

impl JobSource {
    /// Its kind.
    pub const fn kind(&self) -> JobKind {
        match self {
            Self::Async { .. } => JobKind::Async,
            Self::Cron { .. } => JobKind::Cron,
            Self::Event { .. } => JobKind::Event,
        }
    }

    /// The bytes it holds (what counts against the app's queue bytes).
    pub fn size_bytes(&self) -> u64 {
        let n = match self {
            Self::Async { request } => request.text_bytes(),
            Self::Cron {
                schedule, payload, ..
            } => schedule.len() + payload.as_ref().map_or(0, String::len),
            Self::Event { topic, payload, .. } => {
                topic.len() + payload.as_ref().map_or(0, String::len)
            }
        };
        n as u64
    }
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// Its id (chosen by the caller, so that it can be named before the
    /// store answers).
    pub id: JobId,
    /// The app.
    pub app_id: AppId,
    /// The script to run.
    pub script: ScriptName,
    /// Why, and its input.
    pub source: JobSource,
    /// Attempts it may take (1–[`MAX_ATTEMPTS`]).
    pub max_attempts: u32,
    /// Each attempt's lease, in milliseconds: the app's wall clock plus
    /// the grace.
    pub lease_ms: u32,
    /// The `Idempotency-Key`, for an async job.
    pub dedupe_key: Option<String>,
}

/// One attempt of a job, as its record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// Its number, from 1; a retried job's attempts go on numbering.
    pub attempt: u32,
    /// The script version that ran (0 when none could run).
    pub version: u32,
    /// Whether it succeeded.
    pub succeeded: bool,
    /// The HTTP status it answered with (500 for an error, 504 for a time
    /// limit).
    pub http_status: u16,
    /// How long it ran.
    pub duration_us: u64,
    /// What it printed, at most [`ATTEMPT_LOG_MAX_BYTES`] with the error.
    pub logs: Vec<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// When it started.
    pub at: DateTime<Utc>,
}

impl Attempt {
    /// Cuts the logs and the error to [`ATTEMPT_LOG_MAX_BYTES`] together
    /// (the error to a quarter first), with a marker line when cut.
    pub fn fit(&mut self) {
        let cut = |s: &mut String, max: usize| {
            if s.len() > max {
                let at = s.floor_char_boundary(max);
                s.truncate(at);
                s.push_str(" [truncated]");
            }
        };
        if let Some(e) = &mut self.error {
            cut(e, ATTEMPT_LOG_MAX_BYTES / 4);
        }
        let mut room = ATTEMPT_LOG_MAX_BYTES - self.error.as_ref().map_or(0, String::len);
        let total: usize = self.logs.iter().map(String::len).sum();
        if total <= room {
            return;
        }
        room = room.saturating_sub(64);
        let mut kept = Vec::new();
        for mut line in std::mem::take(&mut self.logs) {
            if room == 0 {
                break;
            }
            if line.len() > room {
                cut(&mut line, room);
                room = 0;
            } else {
                room -= line.len();
            }
            kept.push(line);
        }
        kept.push(format!("[logs truncated: {total} bytes]"));
        self.logs = kept;
    }
}

/// What a job's last attempt answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    /// The HTTP status.
    pub status: u16,
    /// The first [`RESULT_BODY_MAX_BYTES`] of the body, as text.
    pub body: String,
}

impl JobResult {
    /// A result from a response's status and body (cut, lossily decoded).
    pub fn new(status: u16, body: &[u8]) -> Self {
        let head = &body[..body.len().min(RESULT_BODY_MAX_BYTES)];
        let mut body = String::from_utf8_lossy(head).into_owned();
        if body.len() > RESULT_BODY_MAX_BYTES {
            let at = body.floor_char_boundary(RESULT_BODY_MAX_BYTES);
            body.truncate(at);
        }
        Self { status, body }
    }
}

/// A job, as the queue keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// The app.
    pub app_id: AppId,
    /// The script it runs.
    pub script: ScriptName,
    /// Why it exists, and its input.
    pub source: JobSource,
    /// Its state.
    pub status: JobStatus,
    /// The number of the last attempt started (0 before the first).
    pub attempt: u32,
    /// The number of the last attempt its budget allows: `max_attempts`
    /// at first, `attempt + max_attempts` after a retry.
    pub last_attempt: u32,
    /// Attempts per budget.
    pub max_attempts: u32,
    /// Each attempt's lease, in milliseconds.
    pub lease_ms: u32,
    /// When it may run next (queued), or ran last.
    pub run_at: DateTime<Utc>,
    /// While running: when the lease runs out.
    pub lease_until: Option<DateTime<Utc>>,
    /// The `Idempotency-Key` it was enqueued with.
    pub dedupe_key: Option<String>,
    /// Its newest attempts ([`ATTEMPTS_KEPT`]), oldest first. A listing
    /// returns them without their logs.
    pub attempts: Vec<Attempt>,
    /// What the last attempt answered.
    pub result: Option<JobResult>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When it last changed state.
    pub updated_at: DateTime<Utc>,
}

impl Job {
    /// Its kind.
    pub const fn kind(&self) -> JobKind {
        self.source.kind()
    }
}

/// An event a run emitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Its id.
    pub id: EventId,
    /// The topic.
    pub topic: Topic,
    /// The payload as JSON text, or `None` for `()`.
    pub payload: Option<String>,
}

/// A topic: 1–100 characters of `a-z0-9._-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Topic(String);

/// Why a topic was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a topic is 1 to 100 characters of a-z, 0-9, '.', '_' and '-'")]
pub struct TopicError;

impl Topic {
    /// The longest topic.
    pub const MAX_LEN: usize = 100;

    /// Validates `s` as a topic.
    pub fn parse(s: &str) -> Result<Self, TopicError> {
        let ok = (1..=Self::MAX_LEN).contains(&s.len())
            && s.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            });
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(TopicError)
        }
    }

    /// The topic as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

text_newtype!(Topic, TopicError);

/// The name of a schedule or a subscription within its app: the rule of
/// script names (1–63 of `a-z0-9_-`, starting with a letter).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ScheduleName(String);

/// Why a schedule or subscription name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a name must be 1 to 63 characters of lowercase a-z, 0-9, '_' and '-', starting with a letter"
)]
pub struct ScheduleNameError;

impl ScheduleName {
    /// Validates `s`.
    pub fn parse(s: &str) -> Result<Self, ScheduleNameError> {
        ScriptName::parse(s)
            .map(|n| Self(n.as_str().to_owned()))
            .map_err(|_| ScheduleNameError)
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

text_newtype!(ScheduleName, ScheduleNameError);

/// A schedule: a script run on a cron expression, in a time zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// The app.
    pub app_id: AppId,
    /// Its name.
    pub name: ScheduleName,
    /// The script each tick runs.
    pub script: ScriptName,
    /// 5 fields, or 6 with seconds first.
    pub cron: String,
    /// An IANA zone name.
    pub timezone: String,
    /// The payload each tick's job carries (JSON text).
    pub payload: Option<String>,
    /// Whether it ticks.
    pub enabled: bool,
    /// Attempts per tick's job.
    pub max_attempts: u32,
    /// The next tick, when enabled and it has one.
    pub next_run_at: Option<DateTime<Utc>>,
    /// The last tick fired.
    pub last_run_at: Option<DateTime<Utc>>,
    /// The job of the last tick fired.
    pub last_job: Option<JobId>,
    /// When it was first put.
    pub created_at: DateTime<Utc>,
    /// When it was last put or fired.
    pub updated_at: DateTime<Utc>,
}

/// A schedule to put (create or replace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSpec {
    /// Its name.
    pub name: ScheduleName,
    /// The script.
    pub script: ScriptName,
    /// The cron expression (checked by the service).
    pub cron: String,
    /// The zone (checked by the service).
    pub timezone: String,
    /// The payload (JSON text).
    pub payload: Option<String>,
    /// Whether it ticks.
    pub enabled: bool,
    /// Attempts per tick.
    pub max_attempts: u32,
    /// The first tick, computed by the service (`None` when disabled).
    pub next_run_at: Option<DateTime<Utc>>,
}

/// One tick to fire: move the schedule's `next_run_at` from `due` to
/// `next`, and enqueue `job` (whose source is the tick), in one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    /// The app.
    pub app_id: AppId,
    /// The schedule.
    pub name: ScheduleName,
    /// The `next_run_at` the scheduler read (the compare of compare-and-set).
    pub due: DateTime<Utc>,
    /// The following tick.
    pub next: Option<DateTime<Utc>>,
    /// The tick's job: its source is [`JobSource::Cron`] with the tick's
    /// nominal time, the key that makes it unique.
    pub job: NewJob,
}

/// A subscription: every event on `topic` in the app becomes a job of
/// `script`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// The app.
    pub app_id: AppId,
    /// Its name.
    pub name: ScheduleName,
    /// The topic.
    pub topic: Topic,
    /// The script.
    pub script: ScriptName,
    /// Attempts per event's job.
    pub max_attempts: u32,
    /// When it was first put.
    pub created_at: DateTime<Utc>,
    /// When it was last put.
    pub updated_at: DateTime<Utc>,
}

/// An app's bounds on what waits in the queue: queued, running and dead
/// jobs together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCap {
    /// Jobs.
    pub max_jobs: u64,
    /// Bytes of stored input.
    pub max_bytes: u64,
}

/// Where an app's queue stands against its [`QueueCap`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueUsage {
    /// Queued jobs.
    pub queued: u64,
    /// Running jobs.
    pub running: u64,
    /// Dead jobs.
    pub dead: u64,
    /// Bytes of stored input of those jobs.
    pub bytes: u64,
}

impl QueueUsage {
    /// The jobs held: queued, running and dead.
    pub const fn held(&self) -> u64 {
        self.queued + self.running + self.dead
    }

    /// Whether one more job of `bytes` fits `cap`.
    pub const fn admits(&self, cap: QueueCap, bytes: u64) -> bool {
        self.held() < cap.max_jobs && self.bytes + bytes <= cap.max_bytes
    }
}
