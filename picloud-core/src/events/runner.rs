//! The job runner and the scheduler: the two loops of the event engine.
//!
//! Neither polls. Each sleeps until its next known cause: the runner until
//! the earliest `run_at` of a queued job or lease expiry of a running one,
//! or until the service's signal (an enqueue, an emit, a retry, a
//! completion that queued a retry); the scheduler until the earliest
//! `next_run_at`, or a schedule change. A `backstop` (PostgreSQL: 30 s)
//! re-checks for work another process added without telling this one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use super::EventService;
use super::cron::CronPlan;
use crate::domain::{
    Attempt, InvocationContext, Job, JobResult, JobSource, NewJob, Schedule, ScheduleSpec, Tick,
    Trigger,
};
use crate::executor::{ExecErrorKind, ScriptRequest};
use crate::ids::{AppId, JobId};
use crate::metrics_names::JobOutcome;
use crate::ports::Completion;
use crate::scripts::{InvokeError, exec_status};
use crate::stores::Stores;

/// The longest retry backoff: 10 minutes.
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// The wait before the attempt after attempt `attempt` failed:
/// `base × 2^(attempt−1)`, at most [`MAX_BACKOFF`].
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
    base.saturating_mul(factor).min(MAX_BACKOFF)
}

/// How the [`JobRunner`] works.
#[derive(Debug, Clone, Copy)]
pub struct RunnerConfig {
    /// The most jobs one claim takes.
    pub batch: usize,
    /// The most jobs of one app one claim takes (fairness between apps).
    pub per_app: usize,
    /// The most attempts running at once on this node.
    pub concurrency: usize,
    /// The retry backoff's base (`PICLOUD_RETRY_BASE_MS`).
    pub retry_base: Duration,
    /// A re-check for work when nothing else wakes the runner (`None`: never;
    /// for a store only this process writes, such as memory).
    pub backstop: Option<Duration>,
    /// The most completions written in one batch.
    pub complete_batch: usize,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            batch: 128,
            per_app: 64,
            concurrency: 128,
            retry_base: Duration::from_secs(1),
            backstop: None,
            complete_batch: 256,
        }
    }
}

/// Runs due jobs until [`drain`](Self::drain)ed.
#[derive(Debug)]
pub struct JobRunner {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl JobRunner {
    /// Starts the runner on the current tokio runtime.
    pub fn start(events: EventService, config: RunnerConfig) -> Self {
        let (stop, stopped) = watch::channel(false);
        let handle = tokio::spawn(run_loop(events, config, stopped));
        Self { stop, handle }
    }

    /// Stops claiming, lets every running attempt finish and writes their
    /// completions, then returns. Queued jobs stay queued.
    pub async fn drain(self) {
        let _ = self.stop.send(true);
        let _ = self.handle.await;
    }

    /// Stops at once, abandoning running attempts (a crash, for tests: their
    /// leases expire and another runner reclaims them).
    pub fn abort(self) {
        self.handle.abort();
    }
}

/// How often a busy runner prunes finished jobs (an idle one prunes when
/// it goes idle).
const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// How often a busy runner reclaims expired leases (an idle one reclaims
/// on every wake-up).
const RECLAIM_EVERY: Duration = Duration::from_secs(1);

/// App slugs by id, as the runner learns them (a slug never changes).
type Slugs = Arc<Mutex<HashMap<AppId, String>>>;

async fn run_loop(events: EventService, config: RunnerConfig, mut stop: watch::Receiver<bool>) {
    let stores = events.scripts().stores().clone();
    let signal = Arc::clone(events.scripts().job_signal());
    let concurrency = config.concurrency.max(1);
    let slots = Arc::new(Semaphore::new(concurrency));
    let (done_tx, done_rx) = mpsc::unbounded_channel::<(Completion, bool)>();
    let completer = tokio::spawn(complete_loop(
        stores.clone(),
        done_rx,
        Arc::clone(&signal),
        config.complete_batch.max(1),
    ));
    let slugs: Slugs = Arc::default();
    let mut worked = false;
    let mut pruned_at = Instant::now();
    // Whether the last claim found work.
    let mut busy = false;
    let mut reclaimed_at = Instant::now();
    loop {
        if *stop.borrow() {
            break;
        }
        let first = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.changed() => break,
        };
        // Leases last seconds: while busy, reclaiming once per
        // RECLAIM_EVERY is enough. After an empty claim (a wake-up, perhaps
        // for a lease that just expired) always.
        if !busy || reclaimed_at.elapsed() >= RECLAIM_EVERY {
            reclaimed_at = Instant::now();
            match stores.jobs.reclaim_expired().await {
                Ok(n) => crate::metrics_names::reclaimed(n),
                Err(e) => {
                    tracing::warn!(error = %e, "job runner: reclaiming expired leases failed")
                }
            }
        }
        let room = (1 + slots.available_permits()).min(config.batch.max(1));
        let claimed = match stores.jobs.claim(room, config.per_app.max(1)).await {
            Ok(c) => c,
            Err(e) => {
                drop(first);
                tracing::warn!(error = %e, "job runner: claiming jobs failed; retrying in 1 s");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => break,
                }
                continue;
            }
        };
        busy = !claimed.is_empty();
        if claimed.is_empty() {
            drop(first);
            // Pruning scans the finished jobs: at most every PRUNE_EVERY,
            // busy or not (a runner that keeps up goes idle after nearly
            // every claim). Work left to prune is one more wake-up, later.
            let mut prune_in = None;
            if worked {
                let since = pruned_at.elapsed();
                if since >= PRUNE_EVERY {
                    worked = false;
                    pruned_at = Instant::now();
                    if let Err(e) = stores.jobs.prune().await {
                        tracing::warn!(error = %e, "job runner: pruning finished jobs failed");
                    }
                } else {
                    prune_in = Some(PRUNE_EVERY - since);
                }
            }
            // The store's clock, not this node's: a node whose clock runs
            // ahead would otherwise wake early and find nothing, again and
            // again, until the clocks agree.
            let next = match stores.jobs.next_due().await {
                Ok(Some(next)) => match stores.schedules.now().await {
                    Ok(now) => Ok(Some(until(next, now))),
                    Err(_) => Ok(Some(until(next, crate::clock::now()))),
                },
                other => other.map(|_| None),
            };
            let wait = match next {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(error = %e, "job runner: reading the next due job failed");
                    Some(Duration::from_secs(1))
                }
            };
            let wait = [wait, config.backstop, prune_in]
                .into_iter()
                .flatten()
                .min();
            tokio::select! {
                () = signal.notified() => {}
                () = sleep_for(wait) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        worked = true;
        // Under continuous load the runner is never idle: prune on the way.
        if pruned_at.elapsed() > PRUNE_EVERY {
            pruned_at = Instant::now();
            worked = false;
            if let Err(e) = stores.jobs.prune().await {
                tracing::warn!(error = %e, "job runner: pruning finished jobs failed");
            }
        }
        // `room` never passes the free slots, so each job has one.
        let mut permits = vec![Some(first)];
        for _ in 1..claimed.len() {
            permits.push(Arc::clone(&slots).try_acquire_owned().ok());
        }
        for (job, permit) in claimed.into_iter().zip(permits) {
            let (events, slugs, done) = (events.clone(), Arc::clone(&slugs), done_tx.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let last = job.attempt >= job.last_attempt;
                let completion = attempt(&events, &slugs, job, config.retry_base).await;
                let _ = done.send((completion, last));
            });
        }
    }
    // Drain: every running attempt gives its slot back when it is done.
    let _all = slots
        .acquire_many(u32::try_from(concurrency).unwrap_or(u32::MAX))
        .await;
    drop(done_tx);
    let _ = completer.await;
}

/// Sleeps `wait`, or forever for `None`.
async fn sleep_for(wait: Option<Duration>) {
    match wait {
        Some(w) => tokio::time::sleep(w).await,
        None => std::future::pending().await,
    }
}

/// The time from `now` until `t` (zero if it passed), plus a millisecond.
fn until(t: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (t - now)
        .to_std()
        .unwrap_or(Duration::ZERO)
        .saturating_add(Duration::from_millis(1))
}

/// Writes completions in batches: what arrived while the last batch was
/// written goes in the next, so under load one statement completes many.
/// Each completion comes with whether its attempt was the job's last.
async fn complete_loop(
    stores: Stores,
    mut done: mpsc::UnboundedReceiver<(Completion, bool)>,
    signal: Arc<tokio::sync::Notify>,
    max: usize,
) {
    while let Some(first) = done.recv().await {
        let mut batch = vec![first];
        while batch.len() < max {
            match done.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let (batch, last): (Vec<Completion>, Vec<bool>) = batch.into_iter().unzip();
        let wake = batch
            .iter()
            .any(|c| !c.record.succeeded || !c.events.is_empty());
        let mut tries = 0;
        loop {
            match stores.jobs.complete(batch.clone()).await {
                Ok(held) => {
                    // A fenced-out attempt changed nothing: not counted.
                    for ((c, last), held) in batch.iter().zip(&last).zip(held) {
                        if held {
                            JobOutcome::of(c.record.succeeded, *last).record();
                        }
                    }
                    break;
                }
                Err(e) if tries < 30 => {
                    tries += 1;
                    tracing::warn!(error = %e, "job runner: completing {} attempts failed; retrying", batch.len());
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    // Their leases run out and the jobs are reclaimed: at
                    // least once still holds.
                    tracing::error!(error = %e, "job runner: gave up completing {} attempts", batch.len());
                    break;
                }
            }
        }
        if wake {
            signal.notify_one();
        }
    }
}

async fn slug_of(stores: &Stores, slugs: &Slugs, app: AppId) -> Option<String> {
    if let Some(s) = slugs
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&app)
    {
        return Some(s.clone());
    }
    let found = stores.apps.get(app).await.ok().flatten()?;
    let slug = found.slug.as_str().to_owned();
    slugs
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(app, slug.clone());
    Some(slug)
}

/// The payload's JSON text as a value (`null` for none).
fn payload_value(payload: Option<&String>) -> serde_json::Value {
    payload
        .and_then(|p| serde_json::from_str(p).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// The request a job's attempt sees, with `request.event`.
fn job_request(job: &Job) -> ScriptRequest {
    let (id, attempt) = (job.id.to_string(), job.attempt);
    match &job.source {
        JobSource::Async { request } => {
            let mut r = ScriptRequest {
                method: request.method.clone(),
                path: request.path.clone(),
                headers: request.headers.clone(),
                body: request.body.clone(),
                event: Some(serde_json::json!({
                    "kind": "async", "job_id": id, "attempt": attempt,
                })),
                ..ScriptRequest::default()
            };
            r.set_query_pairs(request.query.iter().cloned());
            r
        }
        JobSource::Cron {
            schedule,
            scheduled_at,
            payload,
        } => payload_request(
            payload.as_ref(),
            serde_json::json!({
                "kind": "cron",
                "schedule": schedule.as_str(),
                "scheduled_at": scheduled_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                "payload": payload_value(payload.as_ref()),
                "job_id": id,
                "attempt": attempt,
            }),
        ),
        JobSource::Event {
            topic,
            event_id,
            payload,
        } => payload_request(
            payload.as_ref(),
            serde_json::json!({
                "kind": "event",
                "topic": topic.as_str(),
                "event_id": event_id.to_string(),
                "payload": payload_value(payload.as_ref()),
                "job_id": id,
                "attempt": attempt,
            }),
        ),
    }
}

/// A cron or event job's request: `POST /` with the payload as its JSON
/// body.
fn payload_request(payload: Option<&String>, event: serde_json::Value) -> ScriptRequest {
    let mut headers = std::collections::BTreeMap::new();
    if payload.is_some() {
        headers.insert("content-type".to_owned(), "application/json".to_owned());
    }
    ScriptRequest {
        method: "POST".into(),
        path: "/".into(),
        headers,
        body: payload.cloned().unwrap_or_default(),
        event: Some(event),
        ..ScriptRequest::default()
    }
}

fn context(job: &Job) -> InvocationContext {
    let (trigger, method, path, query) = match &job.source {
        JobSource::Async { request } => {
            let query = request
                .query
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&");
            (
                Trigger::Async,
                Some(request.method.clone()),
                Some(request.path.clone()),
                (!query.is_empty()).then_some(query),
            )
        }
        JobSource::Cron { .. } => (Trigger::Cron, None, None, None),
        JobSource::Event { .. } => (Trigger::Event, None, None, None),
    };
    InvocationContext {
        request_id: job.id.to_string(),
        trigger,
        method,
        path,
        query,
    }
}

/// Runs one attempt of `job` and says how it ended.
async fn attempt(
    events: &EventService,
    slugs: &Slugs,
    job: Job,
    retry_base: Duration,
) -> Completion {
    let at = crate::clock::now();
    let started = Instant::now();
    let scripts = events.scripts();
    let mut completion = Completion {
        job: job.id,
        attempt: job.attempt,
        record: Attempt {
            attempt: job.attempt,
            version: 0,
            succeeded: false,
            http_status: 500,
            duration_us: 0,
            logs: Vec::new(),
            error: None,
            at,
        },
        result: None,
        events: Vec::new(),
        events_lease_ms: job.lease_ms,
        events_cap: super::cap(&crate::limits::Limits::default()),
        retry_in: backoff(retry_base, job.attempt),
    };
    let live = match slug_of(scripts.stores(), slugs, job.app_id).await {
        Some(slug) => scripts
            .live(&slug, job.script.as_str())
            .await
            .map(|live| (slug, live)),
        None => Err(InvokeError::AppNotFound(job.app_id.to_string())),
    };
    let (slug, live) = match live {
        Ok(found) => found,
        Err(e) => {
            completion.record.http_status = 404;
            completion.record.error = Some(format!("the script could not be run: {e}"));
            return completion;
        }
    };
    completion.record.version = live.version;
    completion.events_cap = super::cap(&live.limits);
    // The run must end within the lease, so no other node reclaims it.
    let mut limits = live.limits;
    let lease = Duration::from_millis(u64::from(job.lease_ms));
    limits.wall_clock = limits
        .wall_clock
        .min(lease.saturating_sub(super::LEASE_GRACE))
        .max(Duration::from_millis(1));
    // A full pool is not the script's failure: wait for room, within the
    // grace of the lease.
    let give_up = started + super::LEASE_GRACE.saturating_sub(Duration::from_secs(1));
    let run = loop {
        let r = scripts
            .run_job(&slug, &live, job_request(&job), context(&job), &limits)
            .await;
        match r {
            Err(InvokeError::Exec(e))
                if e.kind() == ExecErrorKind::Overloaded && Instant::now() < give_up =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => break other,
        }
    };
    match run {
        Ok(invocation) => {
            completion.record.duration_us =
                u64::try_from(invocation.duration.as_micros()).unwrap_or(u64::MAX);
            completion.record.logs = invocation.logs;
            match invocation.outcome {
                Ok(response) => {
                    let ok = response.status < 500;
                    completion.record.succeeded = ok;
                    completion.record.http_status = response.status;
                    if !ok {
                        completion.record.error =
                            Some(format!("the script answered {}", response.status));
                    }
                    completion.result = Some(JobResult::new(response.status, &response.body));
                    if ok {
                        completion.events = invocation.emitted;
                    }
                }
                Err(e) => {
                    completion.record.http_status = exec_status(&e);
                    completion.record.error = Some(e.to_string());
                }
            }
        }
        Err(e) => {
            completion.record.http_status = 503;
            completion.record.error = Some(format!("the script could not be run: {e}"));
            completion.record.duration_us =
                u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        }
    }
    completion.record.fit();
    completion
}

/// Fires schedule ticks until stopped.
#[derive(Debug)]
pub struct Scheduler {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl Scheduler {
    /// Starts the scheduler on the current tokio runtime; `backstop` as in
    /// [`RunnerConfig::backstop`].
    pub fn start(events: EventService, backstop: Option<Duration>) -> Self {
        let (stop, stopped) = watch::channel(false);
        let handle = tokio::spawn(schedule_loop(events, backstop, stopped));
        Self { stop, handle }
    }

    /// Stops it (a tick being fired completes: it is one store call).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.handle.await;
    }
}

/// The most due schedules read at once.
const DUE_BATCH: usize = 100;

async fn schedule_loop(
    events: EventService,
    backstop: Option<Duration>,
    mut stop: watch::Receiver<bool>,
) {
    let stores = events.scripts().stores().clone();
    let signal = Arc::clone(events.schedule_signal());
    let mut plans: HashMap<(String, String), Option<CronPlan>> = HashMap::new();
    loop {
        if *stop.borrow() {
            return;
        }
        let due = match stores.schedules.due(DUE_BATCH).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "scheduler: reading due schedules failed; retrying in 1 s");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => return,
                }
                continue;
            }
        };
        let full = due.len() == DUE_BATCH;
        let mut failed = false;
        for schedule in due {
            if plans.len() > 10_000 {
                plans.clear();
            }
            let plan = plans
                .entry((schedule.cron.clone(), schedule.timezone.clone()))
                .or_insert_with(|| CronPlan::parse(&schedule.cron, &schedule.timezone).ok())
                .clone();
            if let Err(e) = fire(&events, &stores, schedule, plan).await {
                tracing::warn!(error = %e, "scheduler: firing a tick failed");
                failed = true;
            }
        }
        if failed {
            // The store is failing: the tick is still due; try again soon,
            // not at once.
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => return,
            }
            continue;
        }
        if full {
            continue;
        }
        let wait = match (
            stores.schedules.next_due().await,
            stores.schedules.now().await,
        ) {
            (Ok(Some(next)), Ok(now)) => Some(
                (next - now)
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .saturating_add(Duration::from_millis(1)),
            ),
            (Ok(None), _) => None,
            _ => Some(Duration::from_secs(1)),
        };
        let wait = match (wait, backstop) {
            (Some(w), Some(b)) => Some(w.min(b)),
            (w, b) => w.or(b),
        };
        tokio::select! {
            () = signal.notified() => {}
            () = sleep_for(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Fires the due tick of `schedule`: its latest tick at or before now
/// (only the latest missed one, after downtime), and moves it to the next.
async fn fire(
    events: &EventService,
    stores: &Stores,
    schedule: Schedule,
    plan: Option<CronPlan>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let Some(due) = schedule.next_run_at else {
        return Ok(());
    };
    let Some(plan) = plan else {
        // Stored by hand or by another version: it cannot tick. Park it.
        tracing::warn!(app = %schedule.app_id, schedule = %schedule.name, "a schedule's cron expression or zone cannot be read; it will not tick");
        let spec = ScheduleSpec {
            name: schedule.name,
            script: schedule.script,
            cron: schedule.cron,
            timezone: schedule.timezone,
            payload: schedule.payload,
            enabled: schedule.enabled,
            max_attempts: schedule.max_attempts,
            next_run_at: None,
        };
        stores.schedules.put(schedule.app_id, spec).await?;
        return Ok(());
    };
    let now = stores.schedules.now().await?;
    let scheduled_at = plan
        .latest_at_or_before(now)
        .filter(|t| *t >= due)
        .unwrap_or(due);
    let next = plan.next_after(now.max(scheduled_at));
    let limits = stores
        .settings
        .app_limits(schedule.app_id)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let tick = Tick {
        app_id: schedule.app_id,
        name: schedule.name.clone(),
        due,
        next,
        job: NewJob {
            id: JobId::new(),
            app_id: schedule.app_id,
            script: schedule.script,
            source: JobSource::Cron {
                schedule: schedule.name,
                scheduled_at,
                payload: schedule.payload,
            },
            max_attempts: schedule.max_attempts,
            lease_ms: super::lease_ms(&limits),
            dedupe_key: None,
        },
    };
    if stores.schedules.fire(tick).await? {
        events.scripts().job_signal().notify_one();
    }
    Ok(())
}
