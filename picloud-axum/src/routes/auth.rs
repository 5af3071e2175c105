//! `/auth/login`: username and password for a 12-hour bearer token; and
//! `/admin/me/password`: change one's own password.

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;

use crate::ApiState;
use crate::dto::{ChangePasswordRequest, LoginRequest, LoginResponse};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Caller, Json};

/// Logs in. Unknown users, wrong passwords and deactivated users all get the
/// same 401. After a few failures for one client address and username, the
/// next attempts get 429 with `Retry-After` at once, until the backoff has
/// passed. The address comes from `ConnectInfo<SocketAddr>` when the server
/// provides it (the `picloud` server does); without it the username alone
/// is throttled.
#[utoipa::path(
    post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = LoginResponse),
        (status = 401, description = "Invalid credentials", body = ErrorBody),
        (status = 429, description = "Too many failed logins; see `Retry-After`", body = ErrorBody),
        (status = 503, description = "Too many logins in progress", body = ErrorBody),
    )
)]
pub async fn login(
    State(s): State<ApiState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    Json(req): Json<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let client = peer.map(|Extension(ConnectInfo(addr))| addr.ip());
    let (issued, user) = s
        .auth
        .login_from(client, &req.username, &req.password)
        .await?;
    Ok(Json(LoginResponse {
        token: issued.token,
        user: user.into(),
    }))
}

/// Changes the caller's own password. The present one is required, except
/// for a user who has none yet: the bootstrap owner `admin` sets its first
/// password this way, and can then log in. Tokens already issued keep
/// working.
#[utoipa::path(
    put, path = "/api/v1/admin/me/password", tag = "auth",
    request_body = ChangePasswordRequest,
    responses(
        (status = 204, description = "Changed"),
        (status = 401, description = "Wrong current password", body = ErrorBody),
        (status = 403, description = "A scoped token may not change the password", body = ErrorBody),
        (status = 422, description = "The new password is too short or long, or current_password is missing", body = ErrorBody),
        (status = 429, description = "Too many wrong passwords; see `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn change_password(
    State(s): State<ApiState>,
    Caller(p): Caller,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    Json(req): Json<ChangePasswordRequest>,
) -> Result<StatusCode, ApiError> {
    let client = peer.map(|Extension(ConnectInfo(addr))| addr.ip());
    s.auth
        .change_password(
            &p,
            client,
            req.current_password.as_deref(),
            &req.new_password,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
