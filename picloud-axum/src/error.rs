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
use picloud_core::executor::ExecError;
use picloud_core::members::MembershipError;
use picloud_core::scripts::{InvokeError, ScriptError, exec_status};
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
    /// Whether a 5xx shows its message (a script's own error, a limit it
    /// hit); the machinery's failures never do.
    expose: bool,
    /// Seconds for a `Retry-After` header, if any.
    retry_after: Option<u64>,
    /// Fields sent next to `error` (a compile error's `line` and `column`,
    /// a run's `line` and `limit`).
    fields: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    /// An error with this status and message (shown to the client, unless
    /// the status is a 5xx).
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            expose: false,
            retry_after: None,
            fields: serde_json::Map::new(),
        }
    }

    /// The same error with `name: value` in its body, next to `error`.
    pub fn with_field(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.fields.insert(name.to_owned(), value.into());
        self
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

    /// A script's failure as an app with `public_errors: generic` answers
    /// it: the status, `{"error": "script error", "request_id": …}`, and
    /// nothing of the detail (which the invocation record and the log keep).
    pub fn generic_script_error(status: StatusCode, request_id: &str) -> Self {
        let mut error = Self::new(status, "script error").with_field("request_id", request_id);
        error.expose = true;
        error
    }

    /// A 503 of `/readyz` whose reason is no secret and no failure
    /// ("warming up", "draining"): shown, and not logged as an error.
    pub fn not_ready(reason: impl Into<String>) -> Self {
        let mut error = Self::new(StatusCode::SERVICE_UNAVAILABLE, reason);
        error.expose = true;
        error
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
        // The machinery's failures: logged here, never shown.
        let hidden = self.status.is_server_error() && !self.expose;
        let message = if hidden {
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
        let mut response = if self.fields.is_empty() || hidden {
            (self.status, Json(ErrorBody { error: message })).into_response()
        } else {
            let mut body = self.fields;
            body.insert("error".to_owned(), message.into());
            (self.status, Json(serde_json::Value::Object(body))).into_response()
        };
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

from_service_errors!(
    AppError,
    AuthError,
    MembershipError,
    UserError,
    picloud_core::events::EventError,
    picloud_core::env::EnvError,
    picloud_core::kv::KvServiceError,
    picloud_core::domains::DomainError,
    picloud_core::cluster::ClusterError,
);

impl From<ScriptError> for ApiError {
    fn from(e: ScriptError) -> Self {
        match &e {
            // Where the source went wrong, for the uploader's editor.
            ScriptError::Compile(c) => Self::new(
                status_for(e.kind()),
                format!("compile error: {}", c.message),
            )
            .with_field("line", c.line)
            .with_field("column", c.column),
            _ => Self::service(e),
        }
    }
}

impl From<&ExecError> for ApiError {
    /// A run that gave no response. The script's own failures (its errors,
    /// the limits it hit) are its author's to read, whatever the status;
    /// the executor's failure is a bare 500.
    fn from(e: &ExecError) -> Self {
        if let ExecError::Internal(detail) = e {
            return Self::internal(detail.clone());
        }
        let status =
            StatusCode::from_u16(exec_status(e)).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut error = Self::new(status, e.to_string());
        error.expose = true;
        if let Some(line) = e.line() {
            error = error.with_field("line", line);
        }
        if let Some(limit) = e.limit() {
            error = error.with_field("limit", limit.name());
        }
        if matches!(e, ExecError::Overloaded) {
            error = error.with_retry_after(1);
        }
        error
    }
}

impl From<InvokeError> for ApiError {
    fn from(e: InvokeError) -> Self {
        match &e {
            InvokeError::Exec(exec) => Self::from(exec),
            InvokeError::Unauthenticated => Self::new(StatusCode::UNAUTHORIZED, e.to_string()),
            InvokeError::Forbidden => Self::new(StatusCode::FORBIDDEN, e.to_string()),
            _ => Self::new(StatusCode::NOT_FOUND, e.to_string()),
        }
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
            JsonRejection::JsonDataError(_) => {
                format!("invalid request body: {}", for_people(&r.body_text()))
            }
            JsonRejection::JsonSyntaxError(_) => {
                format!("malformed JSON: {}", for_people(&r.body_text()))
            }
            _ => r.body_text(),
        };
        Self::new(status, message)
    }
}

/// An extractor's rejection text for a person: without axum's preamble
/// ("Failed to deserialize the JSON body into the target type: "), and
/// without serde's " at line 1 column 42", which point into a body the
/// caller never sees laid out in lines. What is left names the field (as
/// `field: ` before the reason) and says what is wrong with it.
pub(crate) fn for_people(text: &str) -> String {
    let text = text
        .split_once(": ")
        .filter(|(preamble, _)| preamble.starts_with("Failed to "))
        .map_or(text, |(_, rest)| rest);
    let text = match text.rfind(" at line ") {
        Some(i)
            if text[i + " at line ".len()..]
                .split(" column ")
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) =>
        {
            &text[..i]
        }
        _ => text,
    };
    text.to_owned()
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
        Self::new(
            StatusCode::BAD_REQUEST,
            format!("invalid query string: {}", for_people(&r.body_text())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(e: ApiError) -> (StatusCode, serde_json::Value) {
        let response = e.into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[test]
    fn rejections_read_for_people() {
        assert_eq!(
            for_people(
                "Failed to deserialize the JSON body into the target type: missing field \
                 `instance_role` at line 1 column 42"
            ),
            "missing field `instance_role`"
        );
        assert_eq!(
            for_people(
                "Failed to deserialize the JSON body into the target type: role: unknown \
                 variant `boss`, expected one of `viewer`, `editor`, `app_admin` at line 1 column 15"
            ),
            "role: unknown variant `boss`, expected one of `viewer`, `editor`, `app_admin`"
        );
        assert_eq!(
            for_people("Failed to deserialize query string: status: invalid digit found in string"),
            "status: invalid digit found in string"
        );
        // Text that merely looks similar is left alone.
        assert_eq!(for_people("look at line one"), "look at line one");
    }

    #[test]
    fn each_kind_has_one_status() {
        use ErrorKind as K;
        for (kind, status) in [
            (K::NotFound, 404),
            (K::Conflict, 409),
            (K::Forbidden, 403),
            (K::Unauthenticated, 401),
            (K::Invalid, 422),
            (K::Busy, 503),
            (K::Throttled, 429),
            (K::Internal, 500),
        ] {
            assert_eq!(status_for(kind).as_u16(), status, "{kind:?}");
        }
    }

    #[tokio::test]
    async fn an_internal_error_shows_nothing_of_its_cause_or_fields() {
        let e = AppError::Apps(picloud_core::ports::AppRepoError::Backend(
            "password=hunter2 at 10.0.0.7".into(),
        ));
        let (status, json) = body(ApiError::from(e)).await;
        assert_eq!(status, 500);
        assert_eq!(json, serde_json::json!({ "error": "internal error" }));
        let (_, json) = body(ApiError::internal("secret").with_field("line", 3)).await;
        assert_eq!(json, serde_json::json!({ "error": "internal error" }));
    }

    #[tokio::test]
    async fn a_script_error_is_its_authors_to_read() {
        let e = ExecError::Runtime {
            message: "boom".into(),
            line: Some(2),
            column: Some(5),
        };
        let (status, json) = body(ApiError::from(&e)).await;
        assert_eq!(status, 500);
        assert_eq!(
            json,
            serde_json::json!({ "error": "script error: boom", "line": 2 })
        );
        let (status, json) = body(ApiError::from(&ExecError::Internal("worker gone".into()))).await;
        assert_eq!(status, 500);
        assert_eq!(json, serde_json::json!({ "error": "internal error" }));
    }
}
