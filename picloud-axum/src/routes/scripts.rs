//! `/admin/apps/{id_or_slug}/scripts/...`, `/admin/apps/{id_or_slug}/limits`
//! and `/admin/apps/{id_or_slug}/usage`: deploy (a new immutable version per
//! upload, within the app's storage quota), list, show, roll back, delete,
//! and the recent invocations with their logs.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use picloud_core::domain::Visibility;
use picloud_core::executor::Limits;
use picloud_core::{InvocationRecord, Script, ScriptVersionInfo};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::ApiState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Caller, Json, Path};

/// A script and its live version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScriptDto {
    /// The script's id.
    pub id: Uuid,
    /// Its name (used in `/run/{app}/{name}`).
    pub name: String,
    /// The version `/run` executes.
    pub live_version: u32,
    /// The newest version.
    pub latest_version: u32,
    /// First deployed.
    pub created_at: DateTime<Utc>,
    /// Last deploy or rollback.
    pub updated_at: DateTime<Utc>,
    /// Who may call it: `public` (anyone) or `private` (a PiCloud token
    /// with `AppView` on the app).
    pub visibility: Visibility,
}

impl From<Script> for ScriptDto {
    fn from(s: Script) -> Self {
        Self {
            id: s.id.into(),
            name: s.name.to_string(),
            live_version: s.live_version,
            latest_version: s.latest_version,
            created_at: s.created_at,
            updated_at: s.updated_at,
            visibility: s.visibility,
        }
    }
}

/// One version of a script (without its source).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionDto {
    /// 1, 2, 3, … in deploy order.
    pub version: u32,
    /// The source's size in bytes (what the app's storage quota counts).
    pub size_bytes: u64,
    /// Who deployed it.
    pub created_by: Uuid,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Whether it is the live version.
    pub live: bool,
}

/// A script with every version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScriptDetailDto {
    /// The script.
    #[serde(flatten)]
    pub script: ScriptDto,
    /// Its versions, oldest first.
    pub versions: Vec<VersionDto>,
}

/// One version with its source.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionSourceDto {
    /// The version.
    #[serde(flatten)]
    pub version: VersionDto,
    /// The Rhai source.
    pub source: String,
}

fn version_dto(v: &ScriptVersionInfo, live: u32) -> VersionDto {
    VersionDto {
        version: v.version,
        size_bytes: v.size_bytes,
        created_by: v.created_by.into(),
        created_at: v.created_at,
        live: v.version == live,
    }
}

/// `POST …/rollback`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The version to make live again.
    pub version: u32,
}

/// One invocation, with what the script printed and what started it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InvocationDto {
    /// The script that ran.
    pub script: String,
    /// When it started.
    pub at: DateTime<Utc>,
    /// The version that ran.
    pub version: u32,
    /// The status it answered with.
    pub status: u16,
    /// How long it ran, in microseconds.
    pub duration_us: u64,
    /// `print` and `debug` output.
    pub logs: Vec<String>,
    /// The error, if it failed.
    pub error: Option<String>,
    /// The error's line, when known.
    pub line: Option<u32>,
    /// The error's column, when known.
    pub column: Option<u32>,
    /// What started it: `http` (a request to its endpoint).
    pub trigger: String,
    /// The request's `x-request-id` (as the response carried it); empty
    /// when unknown.
    pub request_id: String,
    /// The request's method.
    pub method: Option<String>,
    /// The path the script saw (`request.path`).
    pub path: Option<String>,
    /// The raw query string, without `?`.
    pub query: Option<String>,
}

impl InvocationDto {
    /// The DTO of `script`'s record `r`.
    pub fn of(script: &str, r: InvocationRecord) -> Self {
        Self {
            script: script.to_owned(),
            at: r.at,
            version: r.version,
            status: r.status,
            duration_us: r.duration_us,
            logs: r.logs,
            error: r.error,
            line: r.line,
            column: r.column,
            trigger: r.context.trigger.as_str().to_owned(),
            request_id: r.context.request_id,
            method: r.context.method,
            path: r.context.path,
            query: r.context.query,
        }
    }
}

/// `?limit=` of the invocations list.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InvocationsQuery {
    /// How many, newest first (1–100, default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<usize>,
}

/// A compile error: 422 with where it is.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CompileErrorBody {
    /// What is wrong.
    pub error: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
}

/// Script errors, mapped: a compile error keeps its line and column.
type ScriptResult<T> = Result<T, ApiError>;

/// Deploys a script: the body is the Rhai source (`text/plain`). Compiled at
/// upload; each upload is a new immutable version, live at once.
#[utoipa::path(
    put, path = "/api/v1/admin/apps/{id_or_slug}/scripts/{name}", tag = "scripts",
    params(
        ("id_or_slug" = String, Path, description = "App id or slug", example = "demo"),
        ("name" = String, Path, description = "Script name: 1–63 of lowercase a-z0-9_-, starting with a letter", example = "hello"),
    ),
    request_body(content = String, content_type = "text/plain", description = "Rhai source, as the file's bytes (also accepted: application/x-rhai, text/x-rhai, application/octet-stream, or no content type)"),
    responses(
        (status = 201, description = "Created (version 1)", body = DeployDto),
        (status = 200, description = "A new version, now live; or the live version's own source (`unchanged`, nothing stored)", body = DeployDto),
        (status = 403, description = "Not an editor of the app", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
        (status = 413, description = "A source over 2 MiB", body = ErrorBody),
        (status = 415, description = "Not a script's content type (JSON, or the form encoding `curl -d` sends)", body = ErrorBody),
        (status = 422, description = "Does not compile (line, column; an undefined variable too), empty, a bad name, or the app's storage quota would be exceeded (the message names it; nothing is stored)", body = CompileErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn deploy_script(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path((app, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ScriptResult<(StatusCode, Json<DeployDto>)> {
    check_source_type(&headers)?;
    let body = body.map_err(|r| {
        let status = r.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!(
                "script source too large (at most {} bytes)",
                picloud_core::scripts::MAX_SOURCE_BYTES
            )
        } else {
            r.body_text()
        };
        ApiError::new(status, message)
    })?;
    let source = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "the script source must be UTF-8"))?;
    let deployed = s.scripts.deploy(&p, &app, &name, source).await?;
    let status = if deployed.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(DeployDto {
            unchanged: deployed.unchanged,
            script: deployed.script.into(),
        }),
    ))
}

/// The content types a script source may come as. JSON and
/// `application/x-www-form-urlencoded` (what `curl -d` and a bare
/// `--data-binary` send; `-d` also strips the newlines) are refused, so a
/// mangled upload never deploys.
const SOURCE_TYPES: [&str; 4] = [
    "text/plain",
    "application/x-rhai",
    "text/x-rhai",
    "application/octet-stream",
];

/// 415 unless the request's content type is one of [`SOURCE_TYPES`] (any
/// parameters, such as `charset`, aside) or absent.
fn check_source_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(axum::http::header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if essence
        .as_deref()
        .is_some_and(|e| SOURCE_TYPES.contains(&e))
    {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "a script is uploaded as its file's bytes with content type text/plain (not {}): \
             `curl --data-binary @hello.rhai -H 'content-type: text/plain' …`, or `picloud deploy hello.rhai --app APP`",
            essence.as_deref().unwrap_or("an unreadable content type")
        ),
    ))
}

/// What a deploy answers: the script, and whether anything changed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeployDto {
    /// The script, with its live version.
    #[serde(flatten)]
    pub script: ScriptDto,
    /// True when the source was the live version's already: no new version.
    pub unchanged: bool,
}

/// The app's scripts, by name (`AppView`).
#[utoipa::path(
    get, path = "/api/v1/admin/apps/{id_or_slug}/scripts", tag = "scripts",
    params(("id_or_slug" = String, Path, description = "App id or slug", example = "demo")),
    responses(
        (status = 200, description = "The scripts", body = [ScriptDto]),
        (status = 403, description = "No role on the app", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_scripts(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path(app): Path<String>,
) -> ScriptResult<Json<Vec<ScriptDto>>> {
    let scripts = s.scripts.list(&p, &app).await?;
    Ok(Json(scripts.into_iter().map(Into::into).collect()))
}

/// A script and its versions (`AppView`).
#[utoipa::path(
    get, path = "/api/v1/admin/apps/{id_or_slug}/scripts/{name}", tag = "scripts",
    params(
        ("id_or_slug" = String, Path, description = "App id or slug", example = "demo"),
        ("name" = String, Path, description = "Script name", example = "hello"),
    ),
    responses(
        (status = 200, description = "The script", body = ScriptDetailDto),
        (status = 403, description = "No role on the app", body = ErrorBody),
        (status = 404, description = "No such app or script", body = ErrorBody),
        (status = 422, description = "Not a valid script name", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_script(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path((app, name)): Path<(String, String)>,
) -> ScriptResult<Json<ScriptDetailDto>> {
    let d = s.scripts.detail(&p, &app, &name).await?;
    let live = d.script.live_version;
    Ok(Json(ScriptDetailDto {
        versions: d.versions.iter().map(|v| version_dto(v, live)).collect(),
        script: d.script.into(),
    }))
}

/// Deletes a script with every version and its invocation logs (`AppEdit`),
/// freeing their bytes of the app's storage quota; `/run` stops serving it at
/// once. Idempotent: 204 also when no such script exists.
#[utoipa::path(
    delete, path = "/api/v1/admin/apps/{id_or_slug}/scripts/{name}", tag = "scripts",
    params(
        ("id_or_slug" = String, Path, description = "App id or slug", example = "demo"),
        ("name" = String, Path, description = "Script name", example = "hello"),
    ),
    responses(
        (status = 204, description = "Deleted, or there was no such script"),
        (status = 403, description = "Not an editor of the app", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
        (status = 422, description = "Not a valid script name", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete_script(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path((app, name)): Path<(String, String)>,
) -> ScriptResult<StatusCode> {
    s.scripts.delete(&p, &app, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An app's storage: what it uses and its bounds.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UsageDto {
    /// Bytes of script source stored, every version of every script.
    pub script_source_bytes: u64,
    /// The most bytes of script source the app may store.
    pub script_source_bytes_quota: u64,
    /// The most versions one script may have.
    pub versions_per_script_quota: u32,
    /// The most invocation records kept per script.
    pub invocations_kept_per_script: usize,
    /// The most bytes of invocation logs kept per script.
    pub invocation_bytes_per_script: usize,
    /// The most bytes of invocation logs kept per app.
    pub invocation_bytes_per_app: usize,
    /// The most bytes one invocation record keeps (larger logs are cut).
    pub invocation_record_max_bytes: usize,
}

/// The app's storage usage and bounds (`AppView`).
#[utoipa::path(
    get, path = "/api/v1/admin/apps/{id_or_slug}/usage", tag = "scripts",
    params(("id_or_slug" = String, Path, description = "App id or slug", example = "demo")),
    responses(
        (status = 200, description = "Usage and bounds", body = UsageDto),
        (status = 403, description = "No role on the app", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_usage(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path(app): Path<String>,
) -> ScriptResult<Json<UsageDto>> {
    use picloud_core::ports::{
        INVOCATION_BYTES_PER_APP, INVOCATION_BYTES_PER_SCRIPT, INVOCATION_RECORD_MAX_BYTES,
        INVOCATIONS_KEPT,
    };
    let usage = s.scripts.usage(&p, &app).await?;
    Ok(Json(UsageDto {
        script_source_bytes: usage.source_bytes,
        script_source_bytes_quota: usage.quota.source_bytes_per_app,
        versions_per_script_quota: usage.quota.versions_per_script,
        invocations_kept_per_script: INVOCATIONS_KEPT,
        invocation_bytes_per_script: INVOCATION_BYTES_PER_SCRIPT,
        invocation_bytes_per_app: INVOCATION_BYTES_PER_APP,
        invocation_record_max_bytes: INVOCATION_RECORD_MAX_BYTES,
    }))
}

/// One version's source (`AppView`).
#[utoipa::path(
    get, path = "/api/v1/admin/apps/{id_or_slug}/scripts/{name}/versions/{version}", tag = "scripts",
    params(
        ("id_or_slug" = String, Path, description = "App id or slug", example = "demo"),
        ("name" = String, Path, description = "Script name", example = "hello"),
        ("version" = u32, Path, description = "Version number", example = 1),
    ),
    responses(
        (status = 200, description = "The version", body = VersionSourceDto),
        (status = 403, description = "No role on the app", body = ErrorBody),
        (status = 404, description = "No such app, script or version", body = ErrorBody),
        (status = 422, description = "Not a valid script name", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_version(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path((app, name, version)): Path<(String, String, u32)>,
) -> ScriptResult<Json<VersionSourceDto>> {
    let (script, v) = s.scripts.version(&p, &app, &name, version).await?;
    Ok(Json(VersionSourceDto {
        version: version_dto(&v.info(), script.live_version),
        source: v.source,
    }))
}

/// Makes an older version live again (`AppEdit`). Every version and its logs
/// stay readable.
#[utoipa::path(
    post, path = "/api/v1/admin/apps/{id_or_slug}/scripts/{name}/rollback", tag = "scripts",
    params(
        ("id_or_slug" = String, Path, description = "App id or slug", example = "demo"),
        ("name" = String, Path, description = "Script name", example = "hello"),
    ),
    request_body = RollbackRequest,
    responses(
        (status = 200, description = "Rolled back", body = ScriptDto),
        (status = 403, description = "Not an editor of the app", body = ErrorBody),
        (status = 404, description = "No such app, script or version", body = ErrorBody),
        (status = 422, description = "A bad name, or the version no longer compiles under the app's limits", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn rollback_script(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path((app, name)): Path<(String, String)>,
    Json(req): Json<RollbackRequest>,
) -> ScriptResult<Json<ScriptDto>> {
    let script = s.scripts.rollback(&p, &app, &name, req.version).await?;
    Ok(Json(script.into()))
}

/// The newest invocations of a script, with their logs (`AppView`).
#[utoipa::path(
    get, path = "/api/v1/admin/apps/{id_or_slug}/scripts/{name}/invocations", tag = "scripts",
    params(
        ("id_or_slug" = String, Path, description = "App id or slug", example = "demo"),
        ("name" = String, Path, description = "Script name", example = "hello"),
        InvocationsQuery,
    ),
    responses(
        (status = 200, description = "Newest first", body = [InvocationDto]),
        (status = 403, description = "No role on the app", body = ErrorBody),
        (status = 404, description = "No such app or script", body = ErrorBody),
        (status = 422, description = "Not a valid script name", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_invocations(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path((app, name)): Path<(String, String)>,
    query: Result<Query<InvocationsQuery>, axum::extract::rejection::QueryRejection>,
) -> ScriptResult<Json<Vec<InvocationDto>>> {
    let Query(query) = query?;
    let records = s
        .scripts
        .invocations(&p, &app, &name, query.limit.unwrap_or(20))
        .await?;
    Ok(Json(
        records
            .into_iter()
            .map(|r| InvocationDto::of(&name, r))
            .collect(),
    ))
}

/// `?script=&status=&since=&request_id=&limit=` of an app's invocations.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AppInvocationsParams {
    /// Only this script's.
    pub script: Option<String>,
    /// Only those that answered this HTTP status.
    #[param(minimum = 100, maximum = 599)]
    pub status: Option<u16>,
    /// Only those that started at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Only those of this request id (the response's `x-request-id`).
    pub request_id: Option<String>,
    /// How many, newest first (1–100, default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<usize>,
}

/// The app's newest invocations across its scripts, filtered (`AppView`).
#[utoipa::path(
    get, path = "/api/v1/admin/apps/{id_or_slug}/invocations", tag = "scripts",
    params(
        ("id_or_slug" = String, Path, description = "App id or slug", example = "demo"),
        AppInvocationsParams,
    ),
    responses(
        (status = 200, description = "Newest first", body = [InvocationDto]),
        (status = 403, description = "No role on the app", body = ErrorBody),
        (status = 404, description = "No such app, or no such script", body = ErrorBody),
        (status = 400, description = "A malformed filter (status, time, limit)", body = ErrorBody),
        (status = 422, description = "Not a valid script name", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_app_invocations(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path(app): Path<String>,
    query: Result<Query<AppInvocationsParams>, axum::extract::rejection::QueryRejection>,
) -> ScriptResult<Json<Vec<InvocationDto>>> {
    let Query(q) = query?;
    let records = s
        .scripts
        .app_invocations(
            &p,
            &app,
            picloud_core::scripts::AppInvocationsQuery {
                script: q.script,
                status: q.status,
                since: q.since,
                request_id: q.request_id,
                limit: q.limit.unwrap_or(20),
            },
        )
        .await?;
    Ok(Json(
        records
            .into_iter()
            .map(|(name, r)| InvocationDto::of(name.as_str(), r))
            .collect(),
    ))
}

/// The app's limits per invocation (`AppView`).
#[utoipa::path(
    get, path = "/api/v1/admin/apps/{id_or_slug}/limits", tag = "scripts",
    params(("id_or_slug" = String, Path, description = "App id or slug", example = "demo")),
    responses(
        (status = 200, description = "The effective limits", body = Limits),
        (status = 403, description = "No role on the app", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_limits(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path(app): Path<String>,
) -> ScriptResult<Json<Limits>> {
    Ok(Json(s.scripts.limits(&p, &app).await?))
}

/// Sets every one of the app's limits (`AppAdmin`): omitted fields take the
/// defaults. To change some and keep the rest, `PATCH`.
#[utoipa::path(
    put, path = "/api/v1/admin/apps/{id_or_slug}/limits", tag = "scripts",
    params(("id_or_slug" = String, Path, description = "App id or slug", example = "demo")),
    request_body = Limits,
    responses(
        (status = 200, description = "The new limits", body = Limits),
        (status = 403, description = "Not an app admin", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
        (status = 422, description = "A limit out of range", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn put_limits(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path(app): Path<String>,
    Json(limits): Json<Limits>,
) -> ScriptResult<Json<Limits>> {
    Ok(Json(s.scripts.set_limits(&p, &app, limits).await?))
}

/// Changes only the limits sent (`AppAdmin`); the others keep their values.
#[utoipa::path(
    patch, path = "/api/v1/admin/apps/{id_or_slug}/limits", tag = "scripts",
    params(("id_or_slug" = String, Path, description = "App id or slug", example = "demo")),
    request_body(content = Limits, description = "Any subset of the limits' fields"),
    responses(
        (status = 200, description = "The new limits", body = Limits),
        (status = 403, description = "Not an app admin", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
        (status = 422, description = "An unknown field, or a limit out of range", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn patch_limits(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path(app): Path<String>,
    Json(patch): Json<serde_json::Map<String, serde_json::Value>>,
) -> ScriptResult<Json<Limits>> {
    Ok(Json(s.scripts.patch_limits(&p, &app, patch).await?))
}

/// `PATCH …/scripts/{name}`: the script's settings to change.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchScriptRequest {
    /// Who may call it.
    pub visibility: Visibility,
}

/// Changes who may call a script (`AppEdit`): `private` answers only callers
/// with a PiCloud token holding `AppView` on the app (401 without one, 403
/// with another), and the token is removed before the script runs.
#[utoipa::path(
    patch, path = "/api/v1/admin/apps/{id_or_slug}/scripts/{name}", tag = "scripts",
    params(
        ("id_or_slug" = String, Path, description = "App id or slug", example = "demo"),
        ("name" = String, Path, description = "Script name", example = "hello"),
    ),
    request_body = PatchScriptRequest,
    responses(
        (status = 200, description = "The script", body = ScriptDto),
        (status = 403, description = "Not an editor of the app", body = ErrorBody),
        (status = 404, description = "No such app or script", body = ErrorBody),
        (status = 422, description = "A bad name or value", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn patch_script(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path((app, name)): Path<(String, String)>,
    Json(req): Json<PatchScriptRequest>,
) -> ScriptResult<Json<ScriptDto>> {
    let script = s
        .scripts
        .set_visibility(&p, &app, &name, req.visibility)
        .await?;
    Ok(Json(script.into()))
}
