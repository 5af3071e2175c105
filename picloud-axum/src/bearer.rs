//! The default authentication layer: `Authorization: Bearer <token>`, or
//! the dashboard's session cookie (`picloud_session`).
//!
//! A request authenticated by the cookie that changes anything (any method
//! but GET, HEAD and OPTIONS) must also carry `x-picloud-csrf: 1`, or it is
//! 403: a page on another site can make a browser send the cookie (not
//! with `SameSite=Strict`, but defence in depth), never a custom header
//! without a CORS preflight PiCloud does not grant.
//!
//! It resolves the token through [`AuthService::authenticate`](picloud_core::auth::AuthService::authenticate)
//! on every request (no caching), so a deactivated user or a revoked token is
//! refused on the very next request, and inserts the resulting
//! [`Principal`](picloud_core::Principal) as a request extension. Embedders
//! with their own authentication skip this layer and insert a `Principal`
//! themselves.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::ApiState;
use crate::error::ApiError;

/// The bearer token in `Authorization`, if any (the scheme is case-insensitive).
pub fn bearer_token(req: &Request) -> Option<&str> {
    bearer_token_in(req.headers())
}

/// The bearer token in these headers' `Authorization`, if any.
pub fn bearer_token_in(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The error's response; a 401 also names the scheme that would do
/// (`WWW-Authenticate: Bearer`).
pub(crate) fn challenge(e: ApiError) -> Response {
    let unauthorized = e.status() == axum::http::StatusCode::UNAUTHORIZED;
    let mut resp = e.into_response();
    if unauthorized {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}

/// The name of the dashboard's session cookie.
pub const SESSION_COOKIE: &str = picloud_core::scripts::SESSION_COOKIE;

/// The header a cookie-authenticated change must carry, with the value `1`.
pub const CSRF_HEADER: &str = "x-picloud-csrf";

/// The session cookie's token in these headers, if any.
pub fn session_token_in(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == SESSION_COOKIE && !value.is_empty())
        .map(|(_, value)| value)
}

/// Whether a cookie-authenticated request may go ahead: reads always, a
/// change only with `x-picloud-csrf: 1`.
pub(crate) fn csrf_ok(method: &axum::http::Method, headers: &axum::http::HeaderMap) -> bool {
    use axum::http::Method;
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        || headers
            .get(CSRF_HEADER)
            .is_some_and(|v| v.as_bytes() == b"1")
}

/// The 403 of a cookie-authenticated change without `x-picloud-csrf: 1`.
pub(crate) fn csrf_refused() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::FORBIDDEN,
        "a change signed in by the session cookie needs the header x-picloud-csrf: 1",
    )
}

/// Middleware: authenticates the bearer token (or, without one, the session
/// cookie, checking its CSRF header on a change) and inserts the
/// `Principal`, or answers 401 (403 for a missing CSRF header) with a JSON
/// error.
pub async fn require_bearer(
    State(state): State<ApiState>,
    mut req: Request,
    next: Next,
) -> Response {
    let token = match bearer_token(&req) {
        Some(token) => token,
        None => match session_token_in(req.headers()) {
            Some(token) => {
                if !csrf_ok(req.method(), req.headers()) {
                    return csrf_refused().into_response();
                }
                token
            }
            None => return challenge(ApiError::unauthenticated()),
        },
    };
    match state.auth.authenticate(token).await {
        Ok(principal) => {
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(e) => challenge(ApiError::from(e)),
    }
}
