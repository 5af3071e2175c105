//! The default authentication layer: `Authorization: Bearer <token>`.
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

/// Middleware: authenticates the bearer token and inserts the `Principal`,
/// or answers 401 with a JSON error.
pub async fn require_bearer(
    State(state): State<ApiState>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(token) = bearer_token(&req) else {
        return challenge(ApiError::unauthenticated());
    };
    match state.auth.authenticate(token).await {
        Ok(principal) => {
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(e) => challenge(ApiError::from(e)),
    }
}
