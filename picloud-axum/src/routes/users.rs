//! `/admin/admins`: the user directory (`InstanceManageUsers`).

use axum::extract::State;
use axum::http::StatusCode;
use picloud_core::users::{CreateUser, UpdateUser};
use uuid::Uuid;

use crate::ApiState;
use crate::dto::{CreateUserRequest, PatchUserRequest, UserDto};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Caller, Json, Path};

/// Every user, inactive ones included, by username.
#[utoipa::path(
    get, path = "/api/v1/admin/admins", tag = "users",
    responses(
        (status = 200, description = "The users", body = [UserDto]),
        (status = 403, description = "May not manage users", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_users(
    State(s): State<ApiState>,
    Caller(p): Caller,
) -> Result<Json<Vec<UserDto>>, ApiError> {
    let users = s.users.list(&p).await?;
    Ok(Json(users.into_iter().map(Into::into).collect()))
}

/// Creates a user. Only owners may create admins and owners.
#[utoipa::path(
    post, path = "/api/v1/admin/admins", tag = "users",
    request_body = CreateUserRequest,
    responses(
        (status = 201, description = "Created", body = UserDto),
        (status = 403, description = "May not manage users (or roles)", body = ErrorBody),
        (status = 409, description = "Username taken", body = ErrorBody),
        (status = 422, description = "Invalid username, password or e-mail", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create_user(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Json(req): Json<CreateUserRequest>,
) -> Result<(StatusCode, Json<UserDto>), ApiError> {
    let user = s
        .users
        .create(
            &p,
            CreateUser {
                username: req.username,
                email: req.email,
                password: req.password,
                instance_role: req.instance_role,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// Activates, deactivates or changes the instance role of a user. A
/// deactivated user's tokens stop working on their next request.
#[utoipa::path(
    patch, path = "/api/v1/admin/admins/{id}", tag = "users",
    params(("id" = Uuid, Path, description = "The user's id")),
    request_body = PatchUserRequest,
    responses(
        (status = 200, description = "Updated", body = UserDto),
        (status = 403, description = "May not manage users (or roles)", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 422, description = "Would remove the last active owner", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn patch_user(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path(id): Path<Uuid>,
    Json(req): Json<PatchUserRequest>,
) -> Result<Json<UserDto>, ApiError> {
    let user = s
        .users
        .update(
            &p,
            id.into(),
            UpdateUser {
                is_active: req.is_active,
                instance_role: req.instance_role,
            },
        )
        .await?;
    Ok(Json(user.into()))
}
