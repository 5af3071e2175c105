//! [`EventService`]: the rules of `/async` and of the jobs, schedules and
//! subscriptions APIs. Every admin call resolves the app and requires its
//! capability first (`AppView` to read, `AppEdit` to change), like every
//! other service.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::cron::CronPlan;
use crate::authz::{AuthzRepoError, Capability};
use crate::domain::{
    App, DEFAULT_MAX_ATTEMPTS, Job, JobSource, JobStatus, MAX_ATTEMPTS, MAX_DEDUPE_KEY_LEN,
    MAX_PAYLOAD_BYTES, MAX_SCHEDULES_PER_APP, NewJob, Principal, QueueUsage, Schedule,
    ScheduleName, ScheduleSpec, ScriptName, StoredRequest, Subscription, Topic,
};
use crate::error::{ErrorKind, ServiceError};
use crate::ids::{AppId, JobId};
use crate::ports::{
    AppRepoError, Enqueued, JobFilter, JobQueueError, ScheduleRepoError, SettingsRepoError,
    SubscriptionRepoError,
};
use crate::scripts::{LiveScript, ScriptService, to_the_end};
use crate::stores::Stores;

/// Every outcome of [`EventService`] other than success.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The caller may not do this.
    #[error("forbidden")]
    Forbidden,
    /// No app has this id or slug.
    #[error("app not found: {0}")]
    AppNotFound(String),
    /// The app has no script of this name.
    #[error("script not found: {0}")]
    ScriptNotFound(String),
    /// No such job in the app.
    #[error("job not found: {0}")]
    JobNotFound(String),
    /// No such schedule in the app.
    #[error("schedule not found: {0}")]
    ScheduleNotFound(String),
    /// No such subscription in the app.
    #[error("subscription not found: {0}")]
    SubscriptionNotFound(String),
    /// The input breaks a rule (a bad cron expression, zone, topic, name,
    /// key or count).
    #[error("{0}")]
    Invalid(String),
    /// The job's state forbids it (a retry of a running job).
    #[error("{0}")]
    Conflict(String),
    /// The app's queue is full: nothing was stored.
    #[error(
        "the app's queue is full ({} jobs waiting, running or dead; {} bytes); try again later",
        .0.held(),
        .0.bytes
    )]
    QueueFull(QueueUsage),
    /// The job queue failed.
    #[error("job queue error: {0}")]
    Jobs(JobQueueError),
    /// The schedule store failed.
    #[error("schedule store error: {0}")]
    Schedules(ScheduleRepoError),
    /// The subscription store failed.
    #[error("subscription store error: {0}")]
    Subscriptions(SubscriptionRepoError),
    /// The app store failed.
    #[error("app repository error: {0}")]
    Apps(#[from] AppRepoError),
    /// The authorization lookup failed.
    #[error("authorization repo error: {0}")]
    Authz(#[from] AuthzRepoError),
    /// The settings store failed.
    #[error("settings repository error: {0}")]
    Settings(#[from] SettingsRepoError),
}

crate::error::from_authz_denied!(EventError, not_found = AppNotFound);

impl ServiceError for EventError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Forbidden => ErrorKind::Forbidden,
            Self::AppNotFound(_)
            | Self::ScriptNotFound(_)
            | Self::JobNotFound(_)
            | Self::ScheduleNotFound(_)
            | Self::SubscriptionNotFound(_) => ErrorKind::NotFound,
            Self::Invalid(_) => ErrorKind::Invalid,
            Self::Conflict(_) => ErrorKind::Conflict,
            Self::QueueFull(_) => ErrorKind::Throttled,
            Self::Jobs(_)
            | Self::Schedules(_)
            | Self::Subscriptions(_)
            | Self::Apps(_)
            | Self::Authz(_)
            | Self::Settings(_) => ErrorKind::Internal,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        matches!(self, Self::QueueFull(_)).then_some(Duration::from_secs(5))
    }
}

impl From<JobQueueError> for EventError {
    fn from(e: JobQueueError) -> Self {
        Self::Jobs(e)
    }
}

/// An `/async` call, as the transport read it.
#[derive(Debug, Clone, Default)]
pub struct AsyncRequest {
    /// The request to store (credentials are removed here).
    pub request: StoredRequest,
    /// The `Idempotency-Key` header, if any.
    pub idempotency_key: Option<String>,
    /// The `picloud-max-attempts` header, if any.
    pub max_attempts: Option<String>,
}

/// The filters of a jobs listing, as given (checked here).
#[derive(Debug, Clone, Default)]
pub struct JobsQuery {
    /// `status=`.
    pub status: Option<String>,
    /// `script=`.
    pub script: Option<String>,
    /// `limit=` (1–1000, default 100).
    pub limit: Option<usize>,
}

/// A schedule to put, as given (checked here).
#[derive(Debug, Clone, Default)]
pub struct ScheduleInput {
    /// The script each tick runs.
    pub script: String,
    /// 5 fields, or 6 with seconds first.
    pub cron: String,
    /// An IANA zone; default `UTC`.
    pub timezone: Option<String>,
    /// Any JSON, handed to each tick as `request.event.payload`.
    pub payload: Option<serde_json::Value>,
    /// Default `true`.
    pub enabled: Option<bool>,
    /// 1–20, default 3.
    pub max_attempts: Option<u32>,
}

/// A schedule with the state of its last tick's job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleView {
    /// The schedule.
    pub schedule: Schedule,
    /// The state of the job of its last tick (`None` before the first, or
    /// once that job is gone).
    pub last_status: Option<JobStatus>,
}

/// A subscription to put, as given (checked here).
#[derive(Debug, Clone, Default)]
pub struct SubscriptionInput {
    /// The topic.
    pub topic: String,
    /// The script.
    pub script: String,
    /// 1–20, default 3.
    pub max_attempts: Option<u32>,
}

/// `/async` and the jobs, schedules and subscriptions APIs.
#[derive(Clone)]
pub struct EventService {
    scripts: ScriptService,
    /// Rung when a schedule changes, so the scheduler recomputes its sleep.
    schedule_signal: Arc<Notify>,
}

impl std::fmt::Debug for EventService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventService").finish_non_exhaustive()
    }
}

fn attempts(given: Option<u32>) -> Result<u32, EventError> {
    match given {
        None => Ok(DEFAULT_MAX_ATTEMPTS),
        Some(n) if (1..=MAX_ATTEMPTS).contains(&n) => Ok(n),
        Some(_) => Err(EventError::Invalid(format!(
            "max_attempts must be 1 to {MAX_ATTEMPTS}"
        ))),
    }
}

fn name(s: &str) -> Result<ScheduleName, EventError> {
    ScheduleName::parse(s).map_err(|e| EventError::Invalid(e.to_string()))
}

fn script_name(s: &str) -> Result<ScriptName, EventError> {
    ScriptName::parse(s).map_err(|_| EventError::ScriptNotFound(s.to_owned()))
}

/// Parses a job id; anything else names no job.
fn job_id(s: &str) -> Result<JobId, EventError> {
    s.parse().map_err(|_| EventError::JobNotFound(s.to_owned()))
}

impl EventService {
    /// The event service over `scripts` (its stores, cache and signal).
    pub fn new(scripts: ScriptService) -> Self {
        Self {
            scripts,
            schedule_signal: Arc::default(),
        }
    }

    /// The script service it runs on.
    pub fn scripts(&self) -> &ScriptService {
        &self.scripts
    }

    fn stores(&self) -> &Stores {
        self.scripts.stores()
    }

    /// The signal rung when a schedule changes (the [`Scheduler`](super::Scheduler)
    /// waits on it).
    pub fn schedule_signal(&self) -> &Arc<Notify> {
        &self.schedule_signal
    }

    async fn app(
        &self,
        principal: &Principal,
        ident: &str,
        capability: fn(AppId) -> Capability,
    ) -> Result<App, EventError> {
        Ok(crate::authz::resolve_and_require(self.stores(), principal, ident, capability).await?)
    }

    /// Stores an async invocation of `live` (found with
    /// [`ScriptService::live`] and let through [`ScriptService::admit`] by
    /// the transport) as a job, durable before this returns. The same
    /// `Idempotency-Key` on the same script within 24 hours gives the first
    /// job's id and stores nothing. Past the app's queue cap:
    /// [`EventError::QueueFull`], nothing stored.
    pub async fn enqueue_async(
        &self,
        live: &LiveScript,
        mut call: AsyncRequest,
    ) -> Result<Enqueued, EventError> {
        if let Some(key) = &call.idempotency_key {
            let printable = key.bytes().all(|b| (0x20..0x7f).contains(&b));
            if key.is_empty() || key.len() > MAX_DEDUPE_KEY_LEN || !printable {
                return Err(EventError::Invalid(format!(
                    "Idempotency-Key must be 1 to {MAX_DEDUPE_KEY_LEN} printable ASCII characters"
                )));
            }
        }
        let max_attempts = match call.max_attempts.as_deref() {
            None => DEFAULT_MAX_ATTEMPTS,
            Some(text) => attempts(Some(text.trim().parse().map_err(|_| {
                EventError::Invalid(format!(
                    "picloud-max-attempts must be a number from 1 to {MAX_ATTEMPTS}"
                ))
            })?))?,
        };
        crate::scripts::strip_stored_credentials(self.stores(), &mut call.request.headers).await;
        let name = ScriptName::parse_stored(&live.name)
            .map_err(|_| EventError::ScriptNotFound(live.name.clone()))?;
        let job = NewJob {
            id: JobId::new(),
            app_id: live.app_id,
            script: name,
            source: JobSource::Async {
                request: call.request,
            },
            max_attempts,
            lease_ms: super::lease_ms(&live.limits),
            dedupe_key: call.idempotency_key,
        };
        let stores = self.stores().clone();
        let cap = super::cap(&live.limits);
        let enqueued = to_the_end(async move { stores.jobs.enqueue(job, cap).await })
            .await
            .map_err(|e| match e {
                JobQueueError::QueueFull(usage) => EventError::QueueFull(usage),
                JobQueueError::NotFound => EventError::ScriptNotFound(live.name.clone()),
                other => other.into(),
            })?;
        if matches!(enqueued, Enqueued::Created(_)) {
            self.scripts.job_signal().notify_one();
        }
        Ok(enqueued)
    }

    /// The app's jobs, newest first, without their logs (`AppView`).
    pub async fn jobs(
        &self,
        principal: &Principal,
        app: &str,
        query: JobsQuery,
    ) -> Result<Vec<Job>, EventError> {
        let app = self.app(principal, app, Capability::AppView).await?;
        let status = match query.status.as_deref() {
            None | Some("") => None,
            Some(s) => Some(JobStatus::parse(s).ok_or_else(|| {
                EventError::Invalid(format!(
                    "status must be one of queued, running, succeeded, dead, cancelled (got {s:?})"
                ))
            })?),
        };
        let script = match query.script.as_deref() {
            None | Some("") => None,
            // A name no script can have matches no job.
            Some(s) => match ScriptName::parse_stored(s) {
                Ok(n) => Some(n),
                Err(_) => return Ok(Vec::new()),
            },
        };
        let limit = query.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(EventError::Invalid("limit must be 1 to 1000".into()));
        }
        let filter = JobFilter {
            status,
            script,
            limit,
        };
        Ok(self.stores().jobs.list(app.id, filter).await?)
    }

    /// One job with its attempts and their logs (`AppView`).
    pub async fn job(&self, principal: &Principal, app: &str, id: &str) -> Result<Job, EventError> {
        let app = self.app(principal, app, Capability::AppView).await?;
        let id_parsed = job_id(id)?;
        self.stores()
            .jobs
            .get(app.id, id_parsed)
            .await?
            .ok_or_else(|| EventError::JobNotFound(id.to_owned()))
    }

    fn job_error(id: &str, e: JobQueueError) -> EventError {
        match e {
            JobQueueError::NotFound => EventError::JobNotFound(id.to_owned()),
            JobQueueError::Conflict(status) => EventError::Conflict(format!("the job is {status}")),
            other => other.into(),
        }
    }

    /// Queues a dead, succeeded or cancelled job again with a fresh budget
    /// (`AppEdit`); a queued or running one is a conflict.
    pub async fn retry(
        &self,
        principal: &Principal,
        app: &str,
        id: &str,
    ) -> Result<Job, EventError> {
        let app = self.app(principal, app, Capability::AppEdit).await?;
        let parsed = job_id(id)?;
        let stores = self.stores().clone();
        let job = to_the_end(async move { stores.jobs.retry(app.id, parsed).await })
            .await
            .map_err(|e| Self::job_error(id, e))?;
        self.scripts.job_signal().notify_one();
        Ok(job)
    }

    /// Cancels a queued job (`AppEdit`); any other state is a conflict.
    pub async fn cancel(
        &self,
        principal: &Principal,
        app: &str,
        id: &str,
    ) -> Result<Job, EventError> {
        let app = self.app(principal, app, Capability::AppEdit).await?;
        let parsed = job_id(id)?;
        let stores = self.stores().clone();
        to_the_end(async move { stores.jobs.cancel(app.id, parsed).await })
            .await
            .map_err(|e| Self::job_error(id, e))
    }

    /// Deletes a finished job (`AppEdit`); idempotent; a queued or running
    /// one is a conflict.
    pub async fn delete_job(
        &self,
        principal: &Principal,
        app: &str,
        id: &str,
    ) -> Result<bool, EventError> {
        let app = self.app(principal, app, Capability::AppEdit).await?;
        let Ok(parsed) = id.parse::<JobId>() else {
            return Ok(false);
        };
        let stores = self.stores().clone();
        to_the_end(async move { stores.jobs.delete(app.id, parsed).await })
            .await
            .map_err(|e| Self::job_error(id, e))
    }

    async fn view(&self, schedule: Schedule) -> Result<ScheduleView, EventError> {
        let last_status = match schedule.last_job {
            Some(id) => self
                .stores()
                .jobs
                .get(schedule.app_id, id)
                .await?
                .map(|j| j.status),
            None => None,
        };
        Ok(ScheduleView {
            schedule,
            last_status,
        })
    }

    /// Creates or replaces a schedule (`AppEdit`); `true` if created. A bad
    /// expression, zone or payload is [`EventError::Invalid`]; an unknown
    /// script is [`EventError::ScriptNotFound`], naming it.
    pub async fn put_schedule(
        &self,
        principal: &Principal,
        app: &str,
        schedule: &str,
        input: ScheduleInput,
    ) -> Result<(ScheduleView, bool), EventError> {
        let app = self.app(principal, app, Capability::AppEdit).await?;
        let name = name(schedule)?;
        let script = script_name(&input.script)?;
        let max_attempts = attempts(input.max_attempts)?;
        let timezone = input.timezone.unwrap_or_else(|| "UTC".to_owned());
        let payload = match input.payload {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => {
                let text = v.to_string();
                if text.len() > MAX_PAYLOAD_BYTES {
                    return Err(EventError::Invalid(format!(
                        "payload may hold at most {MAX_PAYLOAD_BYTES} bytes of JSON"
                    )));
                }
                Some(text)
            }
        };
        let (cron, zone) = (input.cron.clone(), timezone.clone());
        let plan = tokio::task::spawn_blocking(move || CronPlan::parse(&cron, &zone))
            .await
            .map_err(|_| EventError::Invalid("cron expression could not be checked".into()))?
            .map_err(|e| EventError::Invalid(e.0))?;
        let existing = self
            .stores()
            .schedules
            .list(app.id)
            .await
            .map_err(EventError::Schedules)?;
        if existing.len() >= MAX_SCHEDULES_PER_APP && !existing.iter().any(|s| s.name == name) {
            return Err(EventError::Invalid(format!(
                "an app may have at most {MAX_SCHEDULES_PER_APP} schedules"
            )));
        }
        let enabled = input.enabled.unwrap_or(true);
        let now = self
            .stores()
            .schedules
            .now()
            .await
            .map_err(EventError::Schedules)?;
        let spec = ScheduleSpec {
            name,
            script: script.clone(),
            cron: input.cron,
            timezone,
            payload,
            enabled,
            max_attempts,
            next_run_at: if enabled { plan.next_after(now) } else { None },
        };
        let stores = self.stores().clone();
        let (schedule, created) =
            to_the_end(async move { stores.schedules.put(app.id, spec).await })
                .await
                .map_err(|e| match e {
                    ScheduleRepoError::NotFound => EventError::ScriptNotFound(script.to_string()),
                    other => EventError::Schedules(other),
                })?;
        self.schedule_signal.notify_one();
        Ok((self.view(schedule).await?, created))
    }

    /// The app's schedules, by name (`AppView`).
    pub async fn schedules(
        &self,
        principal: &Principal,
        app: &str,
    ) -> Result<Vec<ScheduleView>, EventError> {
        let app = self.app(principal, app, Capability::AppView).await?;
        let list = self
            .stores()
            .schedules
            .list(app.id)
            .await
            .map_err(EventError::Schedules)?;
        let mut out = Vec::with_capacity(list.len());
        for s in list {
            out.push(self.view(s).await?);
        }
        Ok(out)
    }

    /// One schedule (`AppView`).
    pub async fn schedule(
        &self,
        principal: &Principal,
        app: &str,
        schedule: &str,
    ) -> Result<ScheduleView, EventError> {
        let app = self.app(principal, app, Capability::AppView).await?;
        let missing = || EventError::ScheduleNotFound(schedule.to_owned());
        let Ok(name) = ScheduleName::parse(schedule) else {
            return Err(missing());
        };
        let found = self
            .stores()
            .schedules
            .get(app.id, &name)
            .await
            .map_err(EventError::Schedules)?
            .ok_or_else(missing)?;
        self.view(found).await
    }

    /// Deletes a schedule (`AppEdit`); idempotent; `true` if it existed.
    pub async fn delete_schedule(
        &self,
        principal: &Principal,
        app: &str,
        schedule: &str,
    ) -> Result<bool, EventError> {
        let app = self.app(principal, app, Capability::AppEdit).await?;
        let Ok(name) = ScheduleName::parse(schedule) else {
            return Ok(false);
        };
        let stores = self.stores().clone();
        let gone = to_the_end(async move { stores.schedules.delete(app.id, &name).await })
            .await
            .map_err(EventError::Schedules)?;
        self.schedule_signal.notify_one();
        Ok(gone)
    }

    /// Creates or replaces a subscription (`AppEdit`); `true` if created.
    pub async fn put_subscription(
        &self,
        principal: &Principal,
        app: &str,
        subscription: &str,
        input: SubscriptionInput,
    ) -> Result<(Subscription, bool), EventError> {
        let app = self.app(principal, app, Capability::AppEdit).await?;
        let name = name(subscription)?;
        let topic = Topic::parse(&input.topic).map_err(|e| EventError::Invalid(e.to_string()))?;
        let script = script_name(&input.script)?;
        let max_attempts = attempts(input.max_attempts)?;
        let existing = self
            .stores()
            .subscriptions
            .list_subscriptions(app.id)
            .await
            .map_err(EventError::Subscriptions)?;
        if existing.len() >= MAX_SCHEDULES_PER_APP && !existing.iter().any(|s| s.name == name) {
            return Err(EventError::Invalid(format!(
                "an app may have at most {MAX_SCHEDULES_PER_APP} subscriptions"
            )));
        }
        let stores = self.stores().clone();
        let s2 = script.clone();
        to_the_end(async move {
            stores
                .subscriptions
                .put_subscription(app.id, &name, &topic, &s2, max_attempts)
                .await
        })
        .await
        .map_err(|e| match e {
            SubscriptionRepoError::NotFound => EventError::ScriptNotFound(script.to_string()),
            other => EventError::Subscriptions(other),
        })
    }

    /// The app's subscriptions, by name (`AppView`).
    pub async fn subscriptions(
        &self,
        principal: &Principal,
        app: &str,
    ) -> Result<Vec<Subscription>, EventError> {
        let app = self.app(principal, app, Capability::AppView).await?;
        self.stores()
            .subscriptions
            .list_subscriptions(app.id)
            .await
            .map_err(EventError::Subscriptions)
    }

    /// Deletes a subscription (`AppEdit`); idempotent.
    pub async fn delete_subscription(
        &self,
        principal: &Principal,
        app: &str,
        subscription: &str,
    ) -> Result<bool, EventError> {
        let app = self.app(principal, app, Capability::AppEdit).await?;
        let Ok(name) = ScheduleName::parse(subscription) else {
            return Ok(false);
        };
        let stores = self.stores().clone();
        to_the_end(async move {
            stores
                .subscriptions
                .delete_subscription(app.id, &name)
                .await
        })
        .await
        .map_err(EventError::Subscriptions)
    }
}
