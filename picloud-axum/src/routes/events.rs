//! `/admin/apps/{id_or_slug}/jobs`, `/schedules` and `/subscriptions`: the
//! event engine's admin API (reads `AppView`, writes `AppEdit`; core
//! decides). `/async` itself is in [`super::run`].

use axum::extract::{Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use picloud_core::domain::{Attempt, Job, JobResult, JobSource, JobStatus, Subscription};
use picloud_core::events::{JobsQuery, ScheduleInput, ScheduleView, SubscriptionInput};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::ApiState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Caller, Json, Path};

type EventResult<T> = Result<T, ApiError>;

/// One attempt of a job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AttemptDto {
    /// Its number, from 1 (a retried job's go on numbering).
    pub attempt: u32,
    /// The script version that ran (0 when none could).
    pub version: u32,
    /// `succeeded` or `failed`.
    pub status: String,
    /// The HTTP status it answered with.
    pub http_status: u16,
    /// How long it ran.
    pub duration_us: u64,
    /// What it printed (empty in listings).
    pub logs: Vec<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// When it started.
    pub at: DateTime<Utc>,
}

impl From<Attempt> for AttemptDto {
    fn from(a: Attempt) -> Self {
        Self {
            attempt: a.attempt,
            version: a.version,
            status: if a.succeeded { "succeeded" } else { "failed" }.to_owned(),
            http_status: a.http_status,
            duration_us: a.duration_us,
            logs: a.logs,
            error: a.error,
            at: a.at,
        }
    }
}

/// What the last attempt answered.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobResultDto {
    /// Its HTTP status.
    pub status: u16,
    /// The first 64 KiB of its body, as text.
    pub body: String,
}

impl From<JobResult> for JobResultDto {
    fn from(r: JobResult) -> Self {
        Self {
            status: r.status,
            body: r.body,
        }
    }
}

/// The request an async job stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StoredRequestDto {
    /// The method.
    pub method: String,
    /// The path after the script's name.
    pub path: String,
    /// The query pairs, in order.
    pub query: Vec<(String, String)>,
    /// The headers (without PiCloud credentials).
    pub headers: std::collections::BTreeMap<String, String>,
    /// The body.
    pub body: String,
}

/// A job: an async request, a schedule's tick, or an event for one
/// subscription.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobDto {
    /// Its id.
    pub id: Uuid,
    /// The script it runs.
    pub script: String,
    /// `async`, `cron` or `event`.
    pub kind: String,
    /// `queued`, `running`, `succeeded`, `dead` or `cancelled`.
    #[schema(value_type = String)]
    pub status: JobStatus,
    /// The last attempt started (0 before the first).
    pub attempt: u32,
    /// Attempts per budget.
    pub max_attempts: u32,
    /// Its newest attempts, oldest first.
    pub attempts: Vec<AttemptDto>,
    /// What the last attempt answered.
    pub result: Option<JobResultDto>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When it may run next (queued), or ran last.
    pub run_at: DateTime<Utc>,
    /// When it last changed state.
    pub updated_at: DateTime<Utc>,
    /// An async job's stored request.
    pub request: Option<StoredRequestDto>,
    /// A cron job's schedule.
    pub schedule: Option<String>,
    /// A cron job's tick (its nominal time).
    pub scheduled_at: Option<DateTime<Utc>>,
    /// An event job's topic.
    pub topic: Option<String>,
    /// An event job's event id.
    pub event_id: Option<Uuid>,
    /// A cron or event job's payload.
    #[schema(value_type = Option<Object>)]
    pub payload: Option<serde_json::Value>,
}

/// How much of a request or result body a listing shows.
pub const LISTED_BODY_BYTES: usize = 4096;

impl JobDto {
    /// The job as a listing shows it: bodies cut to [`LISTED_BODY_BYTES`]
    /// (the job itself, `GET …/jobs/{id}`, has them whole).
    fn listed(mut self) -> Self {
        let cut = |s: &mut String| {
            if s.len() > LISTED_BODY_BYTES {
                let at = s.floor_char_boundary(LISTED_BODY_BYTES);
                s.truncate(at);
            }
        };
        if let Some(r) = &mut self.request {
            cut(&mut r.body);
        }
        if let Some(r) = &mut self.result {
            cut(&mut r.body);
        }
        self
    }
}

fn payload(p: Option<&String>) -> Option<serde_json::Value> {
    p.and_then(|t| serde_json::from_str(t).ok())
}

impl From<Job> for JobDto {
    fn from(j: Job) -> Self {
        let kind = j.kind().as_str().to_owned();
        let (mut request, mut schedule, mut scheduled_at) = (None, None, None);
        let (mut topic, mut event_id, mut pay) = (None, None, None);
        match &j.source {
            JobSource::Async { request: r } => {
                request = Some(StoredRequestDto {
                    method: r.method.clone(),
                    path: r.path.clone(),
                    query: r.query.clone(),
                    headers: r.headers.clone(),
                    body: r.body.clone(),
                });
            }
            JobSource::Cron {
                schedule: s,
                scheduled_at: at,
                payload: p,
            } => {
                schedule = Some(s.as_str().to_owned());
                scheduled_at = Some(*at);
                pay = payload(p.as_ref());
            }
            JobSource::Event {
                topic: t,
                event_id: e,
                payload: p,
            } => {
                topic = Some(t.as_str().to_owned());
                event_id = Some(e.as_uuid());
                pay = payload(p.as_ref());
            }
        }
        Self {
            id: j.id.as_uuid(),
            script: j.script.to_string(),
            kind,
            status: j.status,
            attempt: j.attempt,
            max_attempts: j.max_attempts,
            attempts: j.attempts.into_iter().map(Into::into).collect(),
            result: j.result.map(Into::into),
            created_at: j.created_at,
            run_at: j.run_at,
            updated_at: j.updated_at,
            request,
            schedule,
            scheduled_at,
            topic,
            event_id,
            payload: pay,
        }
    }
}

/// The filters of `GET …/jobs`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobsParams {
    /// Only jobs in this state.
    pub status: Option<String>,
    /// Only this script's jobs.
    pub script: Option<String>,
    /// At most this many (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// The app's jobs, newest first, without their attempts' logs and with
/// request and result bodies cut to their first 4 KiB (`AppView`).
#[utoipa::path(
    get, path = "/api/v1/admin/apps/{id_or_slug}/jobs", tag = "events",
    params(("id_or_slug" = String, Path, description = "App id or slug", example = "demo"), JobsParams),
    responses(
        (status = 200, description = "The jobs", body = [JobDto]),
        (status = 400, description = "A malformed query", body = ErrorBody),
        (status = 403, description = "No role on the app", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
        (status = 422, description = "A bad status or limit", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_jobs(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path(app): Path<String>,
    query: Result<Query<JobsParams>, axum::extract::rejection::QueryRejection>,
) -> EventResult<Json<Vec<JobDto>>> {
    let Query(q) = query?;
    let query = JobsQuery {
        status: q.status,
        script: q.script,
        limit: q.limit,
    };
    let jobs = s.events.jobs(&p, &app, query).await?;
    Ok(Json(
        jobs.into_iter().map(|j| JobDto::from(j).listed()).collect(),
    ))
}

/// One job, with its attempts and their logs (`AppView`).
#[utoipa::path(
    get, path = "/api/v1/admin/apps/{id_or_slug}/jobs/{id}", tag = "events",
    params(
        ("id_or_slug" = String, Path, description = "App id or slug", example = "demo"),
        ("id" = String, Path, description = "Job id"),
    ),
    responses(
        (status = 200, description = "The job", body = JobDto),
        (status = 403, description = "No role on the app", body = ErrorBody),
        (status = 404, description = "No such app or job", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_job(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path((app, id)): Path<(String, String)>,
) -> EventResult<Json<JobDto>> {
    Ok(Json(s.events.job(&p, &app, &id).await?.into()))
}

/// Queues a dead, succeeded or cancelled job again, with a fresh budget of
/// attempts (`AppEdit`). It runs the script's live version.
#[utoipa::path(
    post, path = "/api/v1/admin/apps/{id_or_slug}/jobs/{id}/retry", tag = "events",
    params(
        ("id_or_slug" = String, Path, description = "App id or slug", example = "demo"),
        ("id" = String, Path, description = "Job id"),
    ),
    responses(
        (status = 202, description = "Queued again", body = JobDto),
        (status = 403, description = "Not an editor of the app", body = ErrorBody),
        (status = 404, description = "No such app or job", body = ErrorBody),
        (status = 409, description = "The job is queued or running", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn retry_job(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path((app, id)): Path<(String, String)>,
) -> EventResult<(StatusCode, Json<JobDto>)> {
    let job = s.events.retry(&p, &app, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(job.into())))
}

/// Cancels a queued job (`AppEdit`).
#[utoipa::path(
    post, path = "/api/v1/admin/apps/{id_or_slug}/jobs/{id}/cancel", tag = "events",
    params(
        ("id_or_slug" = String, Path, description = "App id or slug", example = "demo"),
        ("id" = String, Path, description = "Job id"),
    ),
    responses(
        (status = 200, description = "Cancelled", body = JobDto),
        (status = 403, description = "Not an editor of the app", body = ErrorBody),
        (status = 404, description = "No such app or job", body = ErrorBody),
        (status = 409, description = "The job is not queued", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn cancel_job(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path((app, id)): Path<(String, String)>,
) -> EventResult<Json<JobDto>> {
    Ok(Json(s.events.cancel(&p, &app, &id).await?.into()))
}

/// Deletes a finished job (`AppEdit`); idempotent.
#[utoipa::path(
    delete, path = "/api/v1/admin/apps/{id_or_slug}/jobs/{id}", tag = "events",
    params(
        ("id_or_slug" = String, Path, description = "App id or slug", example = "demo"),
        ("id" = String, Path, description = "Job id"),
    ),
    responses(
        (status = 204, description = "Deleted, or there was none"),
        (status = 403, description = "Not an editor of the app", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
        (status = 409, description = "The job is queued or running", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete_job(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path((app, id)): Path<(String, String)>,
) -> EventResult<StatusCode> {
    s.events.delete_job(&p, &app, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A schedule to put.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSchedule {
    /// The script each tick runs.
    pub script: String,
    /// 5 fields, or 6 with seconds first (`*/5 * * * * *`).
    #[schema(example = "0 9 * * 1-5")]
    pub cron: String,
    /// An IANA time zone (default `UTC`).
    #[schema(example = "Europe/Paris")]
    pub timezone: Option<String>,
    /// Any JSON: `request.event.payload` of each tick.
    #[schema(value_type = Option<Object>)]
    pub payload: Option<serde_json::Value>,
    /// Whether it ticks (default `true`).
    pub enabled: Option<bool>,
    /// Attempts per tick (1–20, default 3).
    pub max_attempts: Option<u32>,
}

/// A schedule.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScheduleDto {
    /// Its name.
    pub name: String,
    /// The script each tick runs.
    pub script: String,
    /// The cron expression.
    pub cron: String,
    /// The time zone.
    pub timezone: String,
    /// The payload.
    #[schema(value_type = Option<Object>)]
    pub payload: Option<serde_json::Value>,
    /// Whether it ticks.
    pub enabled: bool,
    /// Attempts per tick.
    pub max_attempts: u32,
    /// The next tick.
    pub next_run_at: Option<DateTime<Utc>>,
    /// The last tick fired.
    pub last_run_at: Option<DateTime<Utc>>,
    /// The state of the last tick's job.
    #[schema(value_type = Option<String>)]
    pub last_status: Option<JobStatus>,
    /// First put.
    pub created_at: DateTime<Utc>,
    /// Last put or fired.
    pub updated_at: DateTime<Utc>,
}

impl From<ScheduleView> for ScheduleDto {
    fn from(v: ScheduleView) -> Self {
        let s = v.schedule;
        Self {
            name: s.name.as_str().to_owned(),
            script: s.script.to_string(),
            cron: s.cron,
            timezone: s.timezone,
            payload: payload(s.payload.as_ref()),
            enabled: s.enabled,
            max_attempts: s.max_attempts,
            next_run_at: s.next_run_at,
            last_run_at: s.last_run_at,
            last_status: v.last_status,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// Creates or replaces a schedule (`AppEdit`).
#[utoipa::path(
    put, path = "/api/v1/admin/apps/{id_or_slug}/schedules/{name}", tag = "events",
    params(
        ("id_or_slug" = String, Path, description = "App id or slug", example = "demo"),
        ("name" = String, Path, description = "Schedule name", example = "nightly"),
    ),
    request_body = PutSchedule,
    responses(
        (status = 200, description = "Replaced", body = ScheduleDto),
        (status = 201, description = "Created", body = ScheduleDto),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 403, description = "Not an editor of the app", body = ErrorBody),
        (status = 404, description = "No such app or script", body = ErrorBody),
        (status = 422, description = "A bad expression, zone, name or count", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn put_schedule(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path((app, name)): Path<(String, String)>,
    Json(body): Json<PutSchedule>,
) -> EventResult<(StatusCode, Json<ScheduleDto>)> {
    let input = ScheduleInput {
        script: body.script,
        cron: body.cron,
        timezone: body.timezone,
        payload: body.payload,
        enabled: body.enabled,
        max_attempts: body.max_attempts,
    };
    let (view, created) = s.events.put_schedule(&p, &app, &name, input).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view.into())))
}

/// The app's schedules, by name (`AppView`).
#[utoipa::path(
    get, path = "/api/v1/admin/apps/{id_or_slug}/schedules", tag = "events",
    params(("id_or_slug" = String, Path, description = "App id or slug", example = "demo")),
    responses(
        (status = 200, description = "The schedules", body = [ScheduleDto]),
        (status = 403, description = "No role on the app", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_schedules(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path(app): Path<String>,
) -> EventResult<Json<Vec<ScheduleDto>>> {
    let list = s.events.schedules(&p, &app).await?;
    Ok(Json(list.into_iter().map(Into::into).collect()))
}

/// One schedule (`AppView`).
#[utoipa::path(
    get, path = "/api/v1/admin/apps/{id_or_slug}/schedules/{name}", tag = "events",
    params(
        ("id_or_slug" = String, Path, description = "App id or slug", example = "demo"),
        ("name" = String, Path, description = "Schedule name", example = "nightly"),
    ),
    responses(
        (status = 200, description = "The schedule", body = ScheduleDto),
        (status = 403, description = "No role on the app", body = ErrorBody),
        (status = 404, description = "No such app or schedule", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_schedule(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path((app, name)): Path<(String, String)>,
) -> EventResult<Json<ScheduleDto>> {
    Ok(Json(s.events.schedule(&p, &app, &name).await?.into()))
}

/// Deletes a schedule (`AppEdit`); idempotent.
#[utoipa::path(
    delete, path = "/api/v1/admin/apps/{id_or_slug}/schedules/{name}", tag = "events",
    params(
        ("id_or_slug" = String, Path, description = "App id or slug", example = "demo"),
        ("name" = String, Path, description = "Schedule name", example = "nightly"),
    ),
    responses(
        (status = 204, description = "Deleted, or there was none"),
        (status = 403, description = "Not an editor of the app", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete_schedule(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path((app, name)): Path<(String, String)>,
) -> EventResult<StatusCode> {
    s.events.delete_schedule(&p, &app, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A subscription to put.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSubscription {
    /// The topic (`a-z0-9._-`, 1–100 characters).
    #[schema(example = "order.paid")]
    pub topic: String,
    /// The script each event runs.
    pub script: String,
    /// Attempts per event (1–20, default 3).
    pub max_attempts: Option<u32>,
}

/// A subscription.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionDto {
    /// Its name.
    pub name: String,
    /// The topic.
    pub topic: String,
    /// The script.
    pub script: String,
    /// Attempts per event.
    pub max_attempts: u32,
    /// First put.
    pub created_at: DateTime<Utc>,
    /// Last put.
    pub updated_at: DateTime<Utc>,
}

impl From<Subscription> for SubscriptionDto {
    fn from(s: Subscription) -> Self {
        Self {
            name: s.name.as_str().to_owned(),
            topic: s.topic.as_str().to_owned(),
            script: s.script.to_string(),
            max_attempts: s.max_attempts,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// Creates or replaces a subscription (`AppEdit`): every event on the
/// topic in this app becomes a job of the script.
#[utoipa::path(
    put, path = "/api/v1/admin/apps/{id_or_slug}/subscriptions/{name}", tag = "events",
    params(
        ("id_or_slug" = String, Path, description = "App id or slug", example = "demo"),
        ("name" = String, Path, description = "Subscription name", example = "on-paid"),
    ),
    request_body = PutSubscription,
    responses(
        (status = 200, description = "Replaced", body = SubscriptionDto),
        (status = 201, description = "Created", body = SubscriptionDto),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 403, description = "Not an editor of the app", body = ErrorBody),
        (status = 404, description = "No such app or script", body = ErrorBody),
        (status = 422, description = "A bad topic, name or count", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn put_subscription(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path((app, name)): Path<(String, String)>,
    Json(body): Json<PutSubscription>,
) -> EventResult<(StatusCode, Json<SubscriptionDto>)> {
    let input = SubscriptionInput {
        topic: body.topic,
        script: body.script,
        max_attempts: body.max_attempts,
    };
    let (sub, created) = s.events.put_subscription(&p, &app, &name, input).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(sub.into())))
}

/// The app's subscriptions, by name (`AppView`).
#[utoipa::path(
    get, path = "/api/v1/admin/apps/{id_or_slug}/subscriptions", tag = "events",
    params(("id_or_slug" = String, Path, description = "App id or slug", example = "demo")),
    responses(
        (status = 200, description = "The subscriptions", body = [SubscriptionDto]),
        (status = 403, description = "No role on the app", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_subscriptions(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path(app): Path<String>,
) -> EventResult<Json<Vec<SubscriptionDto>>> {
    let list = s.events.subscriptions(&p, &app).await?;
    Ok(Json(list.into_iter().map(Into::into).collect()))
}

/// Deletes a subscription (`AppEdit`); idempotent.
#[utoipa::path(
    delete, path = "/api/v1/admin/apps/{id_or_slug}/subscriptions/{name}", tag = "events",
    params(
        ("id_or_slug" = String, Path, description = "App id or slug", example = "demo"),
        ("name" = String, Path, description = "Subscription name", example = "on-paid"),
    ),
    responses(
        (status = 204, description = "Deleted, or there was none"),
        (status = 403, description = "Not an editor of the app", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete_subscription(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path((app, name)): Path<(String, String)>,
) -> EventResult<StatusCode> {
    s.events.delete_subscription(&p, &app, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
