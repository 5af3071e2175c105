//! `/admin/apps/{id_or_slug}/env` and `/kv`: an app's environment
//! (variables and secrets) and its KV state. Reads need `AppView`, writes
//! `AppEdit`; core decides. A secret's value is never in any answer.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use picloud_core::domain::{KvEntry, KvUsage};
use picloud_core::env::EnvView;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::ApiState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Caller, Json, Path};

type StateResult<T> = Result<T, ApiError>;

/// An environment variable as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EnvVarDto {
    /// Its name (`env.NAME` in a script).
    pub name: String,
    /// Its value; `null` for a secret, whose value is never shown.
    pub value: Option<String>,
    /// Whether it is a secret (stored encrypted, redacted from logs).
    pub secret: bool,
    /// When it was last written.
    pub updated_at: DateTime<Utc>,
}

impl From<EnvView> for EnvVarDto {
    fn from(v: EnvView) -> Self {
        Self {
            name: v.name.to_string(),
            value: v.value,
            secret: v.secret,
            updated_at: v.updated_at,
        }
    }
}

/// `PUT …/env/{name}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutEnvVar {
    /// The value (at most 32 KiB).
    #[schema(max_length = 32768)]
    pub value: String,
    /// Store it as a secret: encrypted at rest, never shown again, redacted
    /// from the invocation log. Default `false`.
    #[serde(default)]
    pub secret: bool,
}

/// Creates or replaces an environment variable (`AppEdit`). Live for the
/// app's next run.
#[utoipa::path(
    put, path = "/api/v1/admin/apps/{id_or_slug}/env/{name}", tag = "state",
    params(
        ("id_or_slug" = String, Path, description = "App id or slug", example = "demo"),
        ("name" = String, Path, description = "Variable name", example = "API_TOKEN"),
    ),
    request_body = PutEnvVar,
    responses(
        (status = 200, description = "Replaced", body = EnvVarDto),
        (status = 201, description = "Created", body = EnvVarDto),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 403, description = "Not an editor of the app", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
        (status = 409, description = "A secret, and the server has no master key", body = ErrorBody),
        (status = 422, description = "A bad name, a value too long, too many variables", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn put_env(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path((app, name)): Path<(String, String)>,
    Json(body): Json<PutEnvVar>,
) -> StateResult<(StatusCode, Json<EnvVarDto>)> {
    let (view, created) = s
        .scripts
        .env()
        .put(&p, &app, &name, body.value, body.secret)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view.into())))
}

/// The app's environment variables, by name; secrets without their values
/// (`AppView`).
#[utoipa::path(
    get, path = "/api/v1/admin/apps/{id_or_slug}/env", tag = "state",
    params(("id_or_slug" = String, Path, description = "App id or slug", example = "demo")),
    responses(
        (status = 200, description = "The variables", body = [EnvVarDto]),
        (status = 403, description = "No role on the app", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_env(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path(app): Path<String>,
) -> StateResult<Json<Vec<EnvVarDto>>> {
    let vars = s.scripts.env().list(&p, &app).await?;
    Ok(Json(vars.into_iter().map(Into::into).collect()))
}

/// One environment variable; a secret without its value (`AppView`).
#[utoipa::path(
    get, path = "/api/v1/admin/apps/{id_or_slug}/env/{name}", tag = "state",
    params(
        ("id_or_slug" = String, Path, description = "App id or slug", example = "demo"),
        ("name" = String, Path, description = "Variable name", example = "API_TOKEN"),
    ),
    responses(
        (status = 200, description = "The variable", body = EnvVarDto),
        (status = 403, description = "No role on the app", body = ErrorBody),
        (status = 404, description = "No such app or variable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_env(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path((app, name)): Path<(String, String)>,
) -> StateResult<Json<EnvVarDto>> {
    Ok(Json(s.scripts.env().get(&p, &app, &name).await?.into()))
}

/// Deletes an environment variable (`AppEdit`); idempotent.
#[utoipa::path(
    delete, path = "/api/v1/admin/apps/{id_or_slug}/env/{name}", tag = "state",
    params(
        ("id_or_slug" = String, Path, description = "App id or slug", example = "demo"),
        ("name" = String, Path, description = "Variable name", example = "API_TOKEN"),
    ),
    responses(
        (status = 204, description = "Deleted, or was not there"),
        (status = 403, description = "Not an editor of the app", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete_env(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path((app, name)): Path<(String, String)>,
) -> StateResult<StatusCode> {
    s.scripts.env().delete(&p, &app, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A KV entry.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KvEntryDto {
    /// The key.
    pub key: String,
    /// The value (any JSON).
    pub value: serde_json::Value,
    /// Its version (for `kv::cas`); a new one at every write.
    pub version: i64,
    /// When it expires, if it has a TTL.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was last written.
    pub updated_at: DateTime<Utc>,
}

impl From<KvEntry> for KvEntryDto {
    fn from(e: KvEntry) -> Self {
        Self {
            value: serde_json::from_str(&e.value).unwrap_or(serde_json::Value::Null),
            key: e.key,
            version: e.version,
            expires_at: e.expires_at,
            updated_at: e.updated_at,
        }
    }
}

/// `PUT …/kv/{key}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutKv {
    /// The value: any JSON, at most 1 MiB of it.
    pub value: serde_json::Value,
    /// Seconds until the key expires (1 to a year); absent, it stays.
    #[schema(minimum = 1, maximum = 31536000)]
    pub ttl: Option<u64>,
}

/// A page of keys.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KvPageDto {
    /// The keys, in byte order.
    pub keys: Vec<String>,
    /// Pass as `cursor` for the next page; `null` at the end.
    pub cursor: Option<String>,
    /// What the app holds (all its keys, not only this page's).
    pub usage: KvUsageDto,
}

/// What an app's KV state holds.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KvUsageDto {
    /// Keys.
    pub keys: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
}

impl From<KvUsage> for KvUsageDto {
    fn from(u: KvUsage) -> Self {
        Self {
            keys: u.keys,
            bytes: u.bytes,
        }
    }
}

/// The query of `GET …/kv`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KvListParams {
    /// Only keys starting with this.
    pub prefix: Option<String>,
    /// The cursor of the previous page.
    pub cursor: Option<String>,
    /// At most this many (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// The app's keys, a page at a time (`AppView`).
#[utoipa::path(
    get, path = "/api/v1/admin/apps/{id_or_slug}/kv", tag = "state",
    params(("id_or_slug" = String, Path, description = "App id or slug", example = "demo"), KvListParams),
    responses(
        (status = 200, description = "A page of keys", body = KvPageDto),
        (status = 400, description = "A malformed query", body = ErrorBody),
        (status = 403, description = "No role on the app", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
        (status = 422, description = "A bad limit", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_kv(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path(app): Path<String>,
    query: Result<Query<KvListParams>, axum::extract::rejection::QueryRejection>,
) -> StateResult<Json<KvPageDto>> {
    let Query(q) = query?;
    let prefix = q.prefix.unwrap_or_default();
    let page = s.kv.list(&p, &app, &prefix, q.cursor, q.limit).await?;
    let usage = s.kv.usage(&p, &app).await?;
    Ok(Json(KvPageDto {
        keys: page.keys,
        cursor: page.cursor,
        usage: usage.into(),
    }))
}

/// One key (`AppView`).
#[utoipa::path(
    get, path = "/api/v1/admin/apps/{id_or_slug}/kv/{key}", tag = "state",
    params(
        ("id_or_slug" = String, Path, description = "App id or slug", example = "demo"),
        ("key" = String, Path, description = "The key (URL-encoded; may hold /)", example = "visits"),
    ),
    responses(
        (status = 200, description = "The entry", body = KvEntryDto),
        (status = 403, description = "No role on the app", body = ErrorBody),
        (status = 404, description = "No such app or key", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_kv(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path((app, key)): Path<(String, String)>,
) -> StateResult<Json<KvEntryDto>> {
    Ok(Json(s.kv.get(&p, &app, &key).await?.into()))
}

/// Writes a key (`AppEdit`), within the app's KV quota.
#[utoipa::path(
    put, path = "/api/v1/admin/apps/{id_or_slug}/kv/{key}", tag = "state",
    params(
        ("id_or_slug" = String, Path, description = "App id or slug", example = "demo"),
        ("key" = String, Path, description = "The key (URL-encoded; may hold /)", example = "visits"),
    ),
    request_body = PutKv,
    responses(
        (status = 200, description = "Written", body = KvEntryDto),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 403, description = "Not an editor of the app", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "A bad key, value or ttl, or the quota is full", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn put_kv(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path((app, key)): Path<(String, String)>,
    Json(body): Json<PutKv>,
) -> StateResult<Json<KvEntryDto>> {
    let entry = s.kv.put(&p, &app, &key, &body.value, body.ttl).await?;
    Ok(Json(entry.into()))
}

/// Deletes a key (`AppEdit`); idempotent.
#[utoipa::path(
    delete, path = "/api/v1/admin/apps/{id_or_slug}/kv/{key}", tag = "state",
    params(
        ("id_or_slug" = String, Path, description = "App id or slug", example = "demo"),
        ("key" = String, Path, description = "The key (URL-encoded; may hold /)", example = "visits"),
    ),
    responses(
        (status = 204, description = "Deleted, or was not there"),
        (status = 403, description = "Not an editor of the app", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete_kv(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path((app, key)): Path<(String, String)>,
) -> StateResult<StatusCode> {
    s.kv.delete(&p, &app, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}
