//! `/auth/login`: username and password for a 12-hour bearer token.

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::{ConnectInfo, State};

use crate::ApiState;
use crate::dto::{LoginRequest, LoginResponse};
use crate::error::{ApiError, ErrorBody};
use crate::extract::Json;

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
