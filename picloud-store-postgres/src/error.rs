//! Every database error becomes a port error here, and only here.
//!
//! A failed statement is first classified into a [`Failure`]: a unique
//! violation (SQLSTATE 23505) is a conflict, a foreign-key violation (23503)
//! means the referenced app or user does not exist, and anything else (a lost
//! connection, a pool timeout, a row that does not decode) is a backend
//! failure, boxed with its cause. One small function per port then turns the
//! `Failure` into that port's error enum. A failure that means the
//! connection is gone is also noted for the pool's health check (the
//! private `health` module).

use picloud_core::domain::{NewAdminUser, NewApp};
use picloud_core::ports::{
    AdminUserRepoError, AppMembersRepoError, AppRepoError, AuthzRepoError, BoxError,
    DomainRepoError, EnvRepoError, KvError, ScriptRepoError, SettingsRepoError, TokenRepoError,
};

use crate::rows::DecodeError;

/// SQLSTATE `unique_violation`.
const UNIQUE_VIOLATION: &str = "23505";
/// SQLSTATE `foreign_key_violation`.
const FOREIGN_KEY_VIOLATION: &str = "23503";

/// The primary key of `apps` (see `migrations/0001_init.sql`).
const APPS_PKEY: &str = "apps_pkey";
/// The primary key of `admin_users`.
const ADMIN_USERS_PKEY: &str = "admin_users_pkey";
/// The primary key of `domains`, on the hostname (`migrations/0013_domains.sql`).
const DOMAINS_PKEY: &str = "domains_pkey";

/// What a failed statement means, independently of the port.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A unique constraint (named, when the server says which) was violated.
    Unique { constraint: Option<String> },
    /// A foreign key was violated: the referenced row does not exist.
    ForeignKey,
    /// Anything else.
    Backend(BoxError),
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        if crate::health::is_broken(&e) {
            // The pool tests its other idle connections before their next use.
            crate::health::note_broken();
        }
        let code = e
            .as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.into_owned());
        match code.as_deref() {
            Some(UNIQUE_VIOLATION) => Failure::Unique {
                constraint: e
                    .as_database_error()
                    .and_then(|d| d.constraint())
                    .map(str::to_owned),
            },
            Some(FOREIGN_KEY_VIOLATION) => Failure::ForeignKey,
            _ => Failure::Backend(Box::new(e)),
        }
    }
}

impl From<crate::coalesce::BatchError> for Failure {
    fn from(e: crate::coalesce::BatchError) -> Self {
        Failure::Backend(Box::new(e))
    }
}

impl From<DecodeError> for Failure {
    fn from(e: DecodeError) -> Self {
        Failure::Backend(Box::new(e))
    }
}

impl From<std::num::TryFromIntError> for Failure {
    fn from(e: std::num::TryFromIntError) -> Self {
        Failure::Backend(Box::new(e))
    }
}

/// An [`AppRepoError`]. `new` names the app being created, if any, so that a
/// conflict says which slug (or id) is taken.
pub(crate) fn app_error(e: impl Into<Failure>, new: Option<&NewApp>) -> AppRepoError {
    match e.into() {
        Failure::Unique { constraint } => AppRepoError::Conflict(match new {
            Some(app) if constraint.as_deref() == Some(APPS_PKEY) => app.id.to_string(),
            Some(app) => app.slug.to_string(),
            None => constraint.unwrap_or_else(|| "unique constraint".to_owned()),
        }),
        Failure::ForeignKey => AppRepoError::NotFound,
        Failure::Backend(e) => AppRepoError::Backend(e),
    }
}

/// An [`AdminUserRepoError`]. `new` names the user being created, if any, so
/// that a conflict says which username (or id) is taken.
pub(crate) fn user_error(e: impl Into<Failure>, new: Option<&NewAdminUser>) -> AdminUserRepoError {
    match e.into() {
        Failure::Unique { constraint } => AdminUserRepoError::Conflict(match new {
            Some(user) if constraint.as_deref() == Some(ADMIN_USERS_PKEY) => user.id.to_string(),
            Some(user) => user.username.to_string(),
            None => constraint.unwrap_or_else(|| "unique constraint".to_owned()),
        }),
        Failure::ForeignKey => AdminUserRepoError::NotFound,
        Failure::Backend(e) => AdminUserRepoError::Backend(e),
    }
}

/// An [`AppMembersRepoError`].
pub(crate) fn member_error(e: impl Into<Failure>) -> AppMembersRepoError {
    match e.into() {
        Failure::Unique { constraint } => AppMembersRepoError::Conflict(
            constraint.unwrap_or_else(|| "unique constraint".to_owned()),
        ),
        Failure::ForeignKey => AppMembersRepoError::NotFound,
        Failure::Backend(e) => AppMembersRepoError::Backend(e),
    }
}

/// A [`TokenRepoError`]: a taken id or hash is a conflict, a missing user or
/// scope app is `NotFound`.
pub(crate) fn token_error(e: impl Into<Failure>) -> TokenRepoError {
    match e.into() {
        Failure::Unique { constraint } => {
            TokenRepoError::Conflict(constraint.unwrap_or_else(|| "unique constraint".to_owned()))
        }
        Failure::ForeignKey => TokenRepoError::NotFound,
        Failure::Backend(e) => TokenRepoError::Backend(e),
    }
}

/// A [`ScriptRepoError`]: a missing app (or deploying user) is `NotFound`.
pub(crate) fn script_error(e: impl Into<Failure>) -> ScriptRepoError {
    match e.into() {
        Failure::Unique { constraint } => {
            ScriptRepoError::Conflict(constraint.unwrap_or_else(|| "unique constraint".to_owned()))
        }
        Failure::ForeignKey => ScriptRepoError::NotFound,
        Failure::Backend(e) => ScriptRepoError::Backend(e),
    }
}

/// A [`SettingsRepoError`]: the port writes only existing app rows, so
/// every failure is a backend failure.
pub(crate) fn settings_error(e: impl Into<Failure>) -> SettingsRepoError {
    match e.into() {
        Failure::Backend(e) => SettingsRepoError::Backend(e),
        other => SettingsRepoError::Backend(format!("unexpected {other:?}").into()),
    }
}

/// A [`KvError`]: a write for a missing app is `AppNotFound`.
pub(crate) fn kv_error(e: impl Into<Failure>) -> KvError {
    match e.into() {
        Failure::ForeignKey => KvError::AppNotFound,
        Failure::Unique { constraint } => KvError::Backend(
            format!(
                "unexpected unique violation: {}",
                constraint.unwrap_or_default()
            )
            .into(),
        ),
        Failure::Backend(e) => KvError::Backend(e),
    }
}

/// An [`EnvRepoError`]: a write for a missing app is `AppNotFound`.
pub(crate) fn env_error(e: impl Into<Failure>) -> EnvRepoError {
    match e.into() {
        Failure::ForeignKey => EnvRepoError::AppNotFound,
        Failure::Unique { constraint } => EnvRepoError::Backend(
            format!(
                "unexpected unique violation: {}",
                constraint.unwrap_or_default()
            )
            .into(),
        ),
        Failure::Backend(e) => EnvRepoError::Backend(e),
    }
}

/// A [`DomainRepoError`]: a claim for a missing app is `AppNotFound`. A
/// claim's `ON CONFLICT` already turns a held name into no row (`Taken`);
/// a violation of the name's key that still surfaces means the same.
pub(crate) fn domain_error(e: impl Into<Failure>) -> DomainRepoError {
    match e.into() {
        Failure::ForeignKey => DomainRepoError::AppNotFound,
        Failure::Unique { constraint } if constraint.as_deref() == Some(DOMAINS_PKEY) => {
            DomainRepoError::Taken
        }
        Failure::Unique { constraint } => DomainRepoError::Backend(
            format!(
                "unexpected unique violation: {}",
                constraint.unwrap_or_default()
            )
            .into(),
        ),
        Failure::Backend(e) => DomainRepoError::Backend(e),
    }
}

/// An [`AuthzRepoError`]: every failure is a backend failure (the port reads only).
pub(crate) fn authz_error(e: impl Into<Failure>) -> AuthzRepoError {
    match e.into() {
        Failure::Backend(e) => AuthzRepoError::Backend(e),
        other => AuthzRepoError::Backend(format!("unexpected {other:?}").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_database_errors_are_backend() {
        assert!(matches!(
            member_error(sqlx::Error::PoolTimedOut),
            AppMembersRepoError::Backend(_)
        ));
        assert!(matches!(
            app_error(sqlx::Error::PoolClosed, None),
            AppRepoError::Backend(_)
        ));
        assert!(matches!(
            user_error(sqlx::Error::RowNotFound, None),
            AdminUserRepoError::Backend(_)
        ));
        assert!(matches!(
            authz_error(sqlx::Error::PoolTimedOut),
            AuthzRepoError::Backend(_)
        ));
        assert!(matches!(
            domain_error(sqlx::Error::PoolTimedOut),
            DomainRepoError::Backend(_)
        ));
    }

    #[test]
    fn decode_errors_are_backend() {
        let e = DecodeError::new("role", "superuser");
        match member_error(e) {
            AppMembersRepoError::Backend(e) => assert!(e.to_string().contains("superuser")),
            other => panic!("got {other:?}"),
        }
    }
}
