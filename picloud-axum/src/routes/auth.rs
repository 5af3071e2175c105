//! `/auth/login`: username and password for a 12-hour bearer token.

use axum::extract::State;

use crate::ApiState;
use crate::dto::{LoginRequest, LoginResponse};
use crate::error::{ApiError, ErrorBody};
use crate::extract::Json;

/// Logs in. Unknown users, wrong passwords and deactivated users all get the
/// same 401.
#[utoipa::path(
    post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = LoginResponse),
        (status = 401, description = "Invalid credentials", body = ErrorBody),
    )
)]
pub async fn login(
    State(s): State<ApiState>,
    Json(req): Json<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let (issued, user) = s.auth.login(&req.username, &req.password).await?;
    Ok(Json(LoginResponse {
        token: issued.token,
        user: user.into(),
    }))
}
