//! `/admin/apps`: create, list, show, rename and delete apps, each with the
//! caller's `my_role`.

use axum::extract::State;
use axum::http::StatusCode;

use picloud_core::domain::PublicErrors;

use crate::ApiState;
use crate::dto::{AppDto, CreateAppRequest, PatchAppRequest};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Caller, Json, Path};

/// The apps the caller can see, by slug.
#[utoipa::path(
    get, path = "/api/v1/admin/apps", tag = "apps",
    responses((status = 200, description = "Visible apps", body = [AppDto])),
    security(("bearer" = []))
)]
pub async fn list_apps(
    State(s): State<ApiState>,
    Caller(p): Caller,
) -> Result<Json<Vec<AppDto>>, ApiError> {
    let apps = s.apps.list(&p).await?;
    Ok(Json(apps.into_iter().map(Into::into).collect()))
}

/// Creates an app (owners and admins).
#[utoipa::path(
    post, path = "/api/v1/admin/apps", tag = "apps",
    request_body = CreateAppRequest,
    responses(
        (status = 201, description = "Created", body = AppDto),
        (status = 403, description = "May not create apps", body = ErrorBody),
        (status = 409, description = "Slug taken", body = ErrorBody),
        (status = 422, description = "Invalid slug or name", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create_app(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Json(req): Json<CreateAppRequest>,
) -> Result<(StatusCode, Json<AppDto>), ApiError> {
    let view = s.apps.create(&p, &req.slug, &req.name).await?;
    Ok((StatusCode::CREATED, Json(view.into())))
}

/// One app, by id or slug (`AppView`).
#[utoipa::path(
    get, path = "/api/v1/admin/apps/{id_or_slug}", tag = "apps",
    params(("id_or_slug" = String, Path, description = "App id or slug", example = "demo")),
    responses(
        (status = 200, description = "The app", body = AppDto),
        (status = 403, description = "No role on the app", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_app(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path(app): Path<String>,
) -> Result<Json<AppDto>, ApiError> {
    Ok(Json(s.apps.get(&p, &app).await?.into()))
}

/// Renames an app (`AppAdmin`): a new display name. The slug, and with it
/// every URL, stays.
#[utoipa::path(
    patch, path = "/api/v1/admin/apps/{id_or_slug}", tag = "apps",
    params(("id_or_slug" = String, Path, description = "App id or slug", example = "demo")),
    request_body = PatchAppRequest,
    responses(
        (status = 200, description = "Renamed", body = AppDto),
        (status = 403, description = "Not an app admin", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
        (status = 422, description = "Invalid name", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn patch_app(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path(app): Path<String>,
    Json(req): Json<PatchAppRequest>,
) -> Result<Json<AppDto>, ApiError> {
    Ok(Json(s.apps.rename(&p, &app, &req.name).await?.into()))
}

/// Deletes an app with everything it owns (`AppAdmin`): its scripts with
/// every version and log, its members, its settings and the tokens scoped
/// to it. Its endpoints answer 404 at once.
#[utoipa::path(
    delete, path = "/api/v1/admin/apps/{id_or_slug}", tag = "apps",
    params(("id_or_slug" = String, Path, description = "App id or slug", example = "demo")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not an app admin", body = ErrorBody),
        (status = 404, description = "No such app (or already deleted)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete_app(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path(app): Path<String>,
) -> Result<StatusCode, ApiError> {
    // On a task of its own: a client that hangs up mid-delete must not
    // leave the store's delete done and the scripts still cached.
    picloud_core::scripts::to_the_end(async move { s.apps.delete(&p, &app).await }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An app's settings (beyond its limits).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AppSettingsDto {
    /// How much of a script error public callers see: `detailed` (the error
    /// text, its line, the limit hit; the default) or `generic` (`{"error":
    /// "script error", "request_id": …}`; the detail stays in the
    /// invocation record and the log).
    pub public_errors: PublicErrors,
    /// The hosts its scripts' `http::…` calls may reach: names
    /// (`api.example.com`), `*.domain` wildcards (subdomains) or IP
    /// literals; `null` (the default): any host the instance's egress rule
    /// allows. The rule (no private addresses) applies either way.
    pub egress_hosts: Option<Vec<String>>,
}

impl From<picloud_core::scripts::AppSettings> for AppSettingsDto {
    fn from(s: picloud_core::scripts::AppSettings) -> Self {
        Self {
            public_errors: s.public_errors,
            egress_hosts: s.egress_hosts,
        }
    }
}

/// `PATCH …/settings`: the fields to change.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchSettingsRequest {
    /// See [`AppSettingsDto::public_errors`].
    #[serde(default)]
    pub public_errors: Option<PublicErrors>,
    /// See [`AppSettingsDto::egress_hosts`]; `null` clears the list, an
    /// absent field leaves it.
    #[serde(default, deserialize_with = "present")]
    #[schema(max_items = 100)]
    pub egress_hosts: Option<Option<Vec<String>>>,
}

/// A field that is present (`null` too) is `Some`; an absent one, through
/// `#[serde(default)]`, `None`.
fn present<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(de).map(Some)
}

/// The app's settings (`AppView`).
#[utoipa::path(
    get, path = "/api/v1/admin/apps/{id_or_slug}/settings", tag = "apps",
    params(("id_or_slug" = String, Path, description = "App id or slug", example = "demo")),
    responses(
        (status = 200, description = "The settings", body = AppSettingsDto),
        (status = 403, description = "No role on the app", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_settings(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path(app): Path<String>,
) -> Result<Json<AppSettingsDto>, ApiError> {
    Ok(Json(s.scripts.settings(&p, &app).await?.into()))
}

/// Changes the app's settings (`AppAdmin`): only the fields sent.
#[utoipa::path(
    patch, path = "/api/v1/admin/apps/{id_or_slug}/settings", tag = "apps",
    params(("id_or_slug" = String, Path, description = "App id or slug", example = "demo")),
    request_body = PatchSettingsRequest,
    responses(
        (status = 200, description = "The settings now", body = AppSettingsDto),
        (status = 403, description = "Not an app admin", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
        (status = 422, description = "An unknown field or value, a bad host", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn patch_settings(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path(app): Path<String>,
    Json(req): Json<PatchSettingsRequest>,
) -> Result<Json<AppSettingsDto>, ApiError> {
    let patch = picloud_core::scripts::SettingsPatch {
        public_errors: req.public_errors,
        egress_hosts: req.egress_hosts,
    };
    Ok(Json(
        s.scripts.patch_settings(&p, &app, patch).await?.into(),
    ))
}
