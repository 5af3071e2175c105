//! `/admin/apps`: create, list and show apps, each with the caller's `my_role`.

use axum::extract::State;
use axum::http::StatusCode;

use crate::ApiState;
use crate::dto::{AppDto, CreateAppRequest};
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
