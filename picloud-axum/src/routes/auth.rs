//! `/auth/login`: username and password for a 12-hour bearer token;
//! `/auth/session`: the dashboard's sign-in, the same token in an `HttpOnly`
//! cookie; and `/admin/me/password`: change one's own password.

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::ApiState;
use crate::bearer::{SESSION_COOKIE, bearer_token_in, csrf_ok, csrf_refused, session_token_in};
use crate::dto::{ChangePasswordRequest, LoginRequest, LoginResponse, SessionResponse};
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

/// How long a session lasts: the login token's 12 hours.
const SESSION_SECONDS: u64 = 12 * 3600;

/// The `Set-Cookie` of a session holding `token` (an empty one, expired,
/// clears it).
fn session_cookie(token: &str, secure: bool) -> HeaderValue {
    let max_age = if token.is_empty() { 0 } else { SESSION_SECONDS };
    let secure = if secure { "; Secure" } else { "" };
    let value = format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    );
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Signs in for the dashboard: as `/auth/login`, but the token goes into the
/// `HttpOnly`, `SameSite=Strict` cookie `picloud_session` (`Secure` when
/// the instance's public URL is https), never into the page. The admin API
/// accepts the cookie; a change made with it needs `x-picloud-csrf: 1`.
#[utoipa::path(
    post, path = "/api/v1/auth/session", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in; the cookie is set", body = SessionResponse),
        (status = 401, description = "Invalid credentials", body = ErrorBody),
        (status = 429, description = "Too many failed logins; see `Retry-After`", body = ErrorBody),
        (status = 503, description = "Too many logins in progress", body = ErrorBody),
    )
)]
pub async fn sign_in(
    State(s): State<ApiState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    Json(req): Json<LoginRequest>,
) -> Result<Response, ApiError> {
    let client = peer.map(|Extension(ConnectInfo(addr))| addr.ip());
    let (issued, user) = s
        .auth
        .login_from(client, &req.username, &req.password)
        .await?;
    let mut resp = Json(SessionResponse { user: user.into() }).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(&issued.token, s.secure_cookies()),
    );
    Ok(resp)
}

/// Who is signed in (by the session cookie, or a bearer token).
#[utoipa::path(
    get, path = "/api/v1/auth/session", tag = "auth",
    responses(
        (status = 200, description = "Signed in", body = SessionResponse),
        (status = 401, description = "Not signed in", body = ErrorBody),
    )
)]
pub async fn session(
    State(s): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<SessionResponse>, ApiError> {
    let token = bearer_token_in(&headers)
        .or_else(|| session_token_in(&headers))
        .ok_or_else(ApiError::unauthenticated)?;
    let principal = s.auth.authenticate(token).await?;
    let user = s.auth.whoami(&principal).await?;
    Ok(Json(SessionResponse { user: user.into() }))
}

/// Signs out: revokes the session's token and clears the cookie; with
/// `x-picloud-csrf: 1` like any change made by cookie. Without a session,
/// it only clears the cookie.
#[utoipa::path(
    delete, path = "/api/v1/auth/session", tag = "auth",
    responses(
        (status = 204, description = "Signed out; the cookie is cleared"),
        (status = 403, description = "No x-picloud-csrf header", body = ErrorBody),
    )
)]
pub async fn sign_out(
    State(s): State<ApiState>,
    method: axum::http::Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(token) = session_token_in(&headers) {
        if !csrf_ok(&method, &headers) {
            return Err(csrf_refused());
        }
        s.auth.sign_out(token).await?;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, session_cookie("", s.secure_cookies()));
    Ok(resp)
}
