//! Errors as HTTP responses, in one place.
//!
//! Every error body is `{"error": "<message for a person>"}`, including
//! axum's own rejections (malformed JSON, a bad UUID in the path, a wrong
//! content type, a body too large). A 500 always says `internal error`: its
//! cause goes to the log, never to the client.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use picloud_core::apps::AppError;
use picloud_core::auth::AuthError;
use picloud_core::members::MembershipError;
use picloud_core::users::UserError;
use picloud_core::{ErrorKind, ServiceError};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub error: String,
}

/// An error on its way to becoming a response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// Seconds for a `Retry-After` header, if any.
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error with this status and message (shown to the client, unless
    /// the status is a 5xx).
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same error with a `Retry-After: <seconds>` header.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// A 500 whose `cause` is logged and never sent.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, cause.to_string())
    }

    /// 401.
    pub fn unauthenticated() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "authentication required")
    }

    /// 404.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not found")
    }

    /// The status this error will be sent with.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = if self.status.is_server_error() {
            tracing::error!(status = %self.status, cause = %self.message, "request failed");
            if self.status == StatusCode::INTERNAL_SERVER_ERROR {
                "internal error".to_owned()
            } else {
                self.status
                    .canonical_reason()
                    .unwrap_or("server error")
                    .to_lowercase()
            }
        } else {
            self.message
        };
        let mut response = (self.status, Json(ErrorBody { error: message })).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The status for each kind of service error: the one place that decides
/// which failures are the caller's (4xx, message shown) and which are the
/// server's (5xx; a 500 shows nothing of its cause).
pub const fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Busy => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Throttled => StatusCode::TOO_MANY_REQUESTS,
        // `ErrorKind` is non-exhaustive: a kind this version does not know
        // is the server's problem, never the caller's.
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ApiError {
    /// A service error as a response: its status from [`status_for`], its
    /// message unless it is internal, and `Retry-After` when the service
    /// says how long to wait.
    pub fn service<E: ServiceError>(e: E) -> Self {
        let status = status_for(e.kind());
        let mut error = if e.kind().is_internal() {
            Self::internal(e.to_string())
        } else {
            Self::new(status, e.to_string())
        };
        if let Some(wait) = e.retry_after() {
            error = error.with_retry_after(picloud_core::auth::retry_after_secs(wait));
        }
        error
    }
}

/// `From<E> for ApiError` through [`ApiError::service`], for each service
/// error type.
macro_rules! from_service_errors {
    ($($error:ty),* $(,)?) => {
        $(impl From<$error> for ApiError {
            fn from(e: $error) -> Self {
                Self::service(e)
            }
        })*
    };
}

from_service_errors!(AppError, AuthError, MembershipError, UserError);

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        let message = match &r {
            JsonRejection::MissingJsonContentType(_) => {
                "expected a JSON body with `Content-Type: application/json`".to_owned()
            }
            JsonRejection::BytesRejection(_) if status == StatusCode::PAYLOAD_TOO_LARGE => {
                "request body too large".to_owned()
            }
            _ => r.body_text(),
        };
        Self::new(status, message)
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        let status = if r.status().is_server_error() {
            StatusCode::BAD_REQUEST
        } else {
            r.status()
        };
        Self::new(status, r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, r.body_text())
    }
}
