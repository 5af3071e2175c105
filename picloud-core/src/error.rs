//! One classification of every service error.
//!
//! Each service's error enum says what *kind* of failure it is through
//! [`ServiceError::kind`]; a transport maps the kind to its own answer in one
//! place (picloud-axum: one `ErrorKind → StatusCode` function). Whether a
//! failure is the caller's (shown to them) or the machinery's (logged,
//! answered with a bare "internal error") is decided here, once per variant,
//! and nowhere else.

use std::time::Duration;

/// What kind of failure an error is, whatever the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The thing named does not exist (or the caller may not know it does).
    NotFound,
    /// The request clashes with what exists: a taken name, an existing row.
    Conflict,
    /// Authenticated, but not allowed.
    Forbidden,
    /// No valid credentials.
    Unauthenticated,
    /// The request breaks a rule; the message says which.
    Invalid,
    /// A bounded resource is full right now; the same request may succeed
    /// shortly.
    Busy,
    /// This caller has tried too often; see [`ServiceError::retry_after`].
    Throttled,
    /// The machinery failed (a store, hashing, the executor): the cause is
    /// for the log, never for the caller.
    Internal,
}

impl ErrorKind {
    /// True for failures of the machinery rather than of the request.
    pub const fn is_internal(self) -> bool {
        matches!(self, Self::Internal)
    }
}

/// An error a service returns: its [`ErrorKind`], and how long to wait
/// before retrying when that is known.
pub trait ServiceError: std::error::Error + Send + Sync + 'static {
    /// The kind of failure.
    fn kind(&self) -> ErrorKind;

    /// How long the caller should wait before trying again, if the service
    /// knows ([`ErrorKind::Throttled`]).
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

/// `impl From<AuthzDenied>` for a service error with a `Forbidden` and an
/// `Authz(AuthzRepoError)` variant: the one rule, "denied is forbidden, a
/// failed lookup is the store's failure", written once. With
/// `not_found = Variant` (a `Variant(String)` of the app's id or slug, and
/// `From<AppRepoError>`), also `impl From<AppAccessError>`, for
/// [`resolve_and_require`](crate::authz::resolve_and_require).
macro_rules! from_authz_denied {
    ($error:ty) => {
        impl From<$crate::authz::AuthzDenied> for $error {
            fn from(denied: $crate::authz::AuthzDenied) -> Self {
                match denied {
                    $crate::authz::AuthzDenied::Denied => Self::Forbidden,
                    $crate::authz::AuthzDenied::Repo(e) => Self::Authz(e),
                }
            }
        }
    };
    ($error:ty, not_found = $not_found:ident) => {
        $crate::error::from_authz_denied!($error);

        impl From<$crate::authz::AppAccessError> for $error {
            fn from(e: $crate::authz::AppAccessError) -> Self {
                match e {
                    $crate::authz::AppAccessError::NotFound(ident) => Self::$not_found(ident),
                    $crate::authz::AppAccessError::Denied => Self::Forbidden,
                    $crate::authz::AppAccessError::Apps(e) => Self::from(e),
                    $crate::authz::AppAccessError::Authz(e) => Self::Authz(e),
                }
            }
        }
    };
}
pub(crate) use from_authz_denied;
