//! `/admin/apps/{id_or_slug}/members[/{user_id}]`: explicit app memberships.
//!
//! Every endpoint requires `AppAdmin` on the app. POST is deliberately not
//! idempotent (a duplicate is 409; role changes go through PATCH); DELETE is.

use axum::extract::State;
use axum::http::StatusCode;
use uuid::Uuid;

use crate::ApiState;
use crate::dto::{AppMemberDto, GrantMemberRequest, PatchMemberRequest};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Caller, Json, Path};

/// Lists the app's explicit members (inactive users included).
#[utoipa::path(
    get, path = "/api/v1/admin/apps/{id_or_slug}/members", tag = "members",
    params(("id_or_slug" = String, Path, description = "App id or slug", example = "demo")),
    responses(
        (status = 200, description = "The members", body = [AppMemberDto]),
        (status = 403, description = "Not an app admin", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_members(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path(app): Path<String>,
) -> Result<Json<Vec<AppMemberDto>>, ApiError> {
    let rows = s.members.list(&p, &app).await?;
    Ok(Json(rows.into_iter().map(Into::into).collect()))
}

/// Grants a role on the app to an active instance `member`.
#[utoipa::path(
    post, path = "/api/v1/admin/apps/{id_or_slug}/members", tag = "members",
    params(("id_or_slug" = String, Path, description = "App id or slug", example = "demo")),
    request_body = GrantMemberRequest,
    responses(
        (status = 201, description = "Granted", body = AppMemberDto),
        (status = 403, description = "Not an app admin", body = ErrorBody),
        (status = 404, description = "No such app or user", body = ErrorBody),
        (status = 409, description = "Already a member: use PATCH", body = ErrorBody),
        (status = 422, description = "Inactive user, or an owner or admin", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn grant_member(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path(app): Path<String>,
    Json(req): Json<GrantMemberRequest>,
) -> Result<(StatusCode, Json<AppMemberDto>), ApiError> {
    let row = s
        .members
        .grant(&p, &app, req.user_id.into(), req.role)
        .await?;
    Ok((StatusCode::CREATED, Json(row.into())))
}

/// Changes an existing member's role. Never creates a membership.
#[utoipa::path(
    patch, path = "/api/v1/admin/apps/{id_or_slug}/members/{user_id}", tag = "members",
    params(
        ("id_or_slug" = String, Path, description = "App id or slug", example = "demo"),
        ("user_id" = Uuid, Path, description = "The member's user id"),
    ),
    request_body = PatchMemberRequest,
    responses(
        (status = 200, description = "Changed", body = AppMemberDto),
        (status = 403, description = "Not an app admin", body = ErrorBody),
        (status = 404, description = "No such app, user or membership", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn patch_member(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path((app, user)): Path<(String, Uuid)>,
    Json(req): Json<PatchMemberRequest>,
) -> Result<Json<AppMemberDto>, ApiError> {
    let row = s
        .members
        .change_role(&p, &app, user.into(), req.role)
        .await?;
    Ok(Json(row.into()))
}

/// Removes a membership. Idempotent: 204 also when there was none.
#[utoipa::path(
    delete, path = "/api/v1/admin/apps/{id_or_slug}/members/{user_id}", tag = "members",
    params(
        ("id_or_slug" = String, Path, description = "App id or slug", example = "demo"),
        ("user_id" = Uuid, Path, description = "The member's user id"),
    ),
    responses(
        (status = 204, description = "Removed (or was not a member)"),
        (status = 403, description = "Not an app admin", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn remove_member(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path((app, user)): Path<(String, Uuid)>,
) -> Result<StatusCode, ApiError> {
    s.members.remove(&p, &app, user.into()).await?;
    Ok(StatusCode::NO_CONTENT)
}
