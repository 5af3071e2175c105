//! Extractors whose rejections are [`ApiError`]s, so that every bad request
//! gets a JSON error body, and the [`Caller`] extractor for the principal.

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;
use picloud_core::Principal;

use crate::error::ApiError;

/// `axum::Json`, rejecting with a JSON error.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Path`, rejecting with a JSON error.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// The authenticated caller: the `Extension<Principal>` that an auth layer
/// (PiCloud's [`crate::bearer::require_bearer`] or an embedder's own) put in the
/// request. Without one, the request is answered 401, never 500.
#[derive(Debug, Clone, Copy)]
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .copied()
            .map(Caller)
            .ok_or_else(ApiError::unauthenticated)
    }
}
