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
use picloud_core::ports::TokenRepoError;
use picloud_core::users::UserError;
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

impl From<MembershipError> for ApiError {
    fn from(e: MembershipError) -> Self {
        use MembershipError as E;
        let status = match &e {
            E::AppNotFound(_) | E::UserNotFound(_) | E::MembershipNotFound => StatusCode::NOT_FOUND,
            E::AlreadyMember { .. } => StatusCode::CONFLICT,
            E::TargetInactive { .. } | E::TargetNotMember { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            E::Forbidden => StatusCode::FORBIDDEN,
            _ => return Self::internal(e),
        };
        Self::new(status, e.to_string())
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        let status = match &e {
            AppError::Forbidden => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::SlugTaken(_) => StatusCode::CONFLICT,
            AppError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            _ => return Self::internal(e),
        };
        Self::new(status, e.to_string())
    }
}

impl From<UserError> for ApiError {
    fn from(e: UserError) -> Self {
        let status = match &e {
            UserError::Forbidden => StatusCode::FORBIDDEN,
            UserError::NotFound(_) => StatusCode::NOT_FOUND,
            UserError::UsernameTaken(_) => StatusCode::CONFLICT,
            UserError::Invalid(_) | UserError::LastOwner => StatusCode::UNPROCESSABLE_ENTITY,
            UserError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            _ => return Self::internal(e),
        };
        Self::new(status, e.to_string())
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let status = match &e {
            AuthError::Unauthenticated => StatusCode::UNAUTHORIZED,
            AuthError::Forbidden => StatusCode::FORBIDDEN,
            AuthError::AppNotFound(_) => StatusCode::NOT_FOUND,
            AuthError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AuthError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            AuthError::Throttled { retry_after } => {
                let seconds = picloud_core::auth::retry_after_secs(*retry_after);
                return Self::new(StatusCode::TOO_MANY_REQUESTS, e.to_string())
                    .with_retry_after(seconds);
            }
            _ => return Self::internal(e),
        };
        Self::new(status, e.to_string())
    }
}

impl From<TokenRepoError> for ApiError {
    fn from(e: TokenRepoError) -> Self {
        Self::internal(e)
    }
}

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
