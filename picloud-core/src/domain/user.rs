//! Users, their credentials, and the [`Username`] and [`Email`] types.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::InstanceRole;
use super::text::text_newtype;
use crate::ids::AdminUserId;

/// A user of the instance (called an "admin user" for historical reasons: every
/// user can log in to the admin API, with what their role allows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminUser {
    /// Their id.
    pub id: AdminUserId,
    /// Their unique login name.
    pub username: Username,
    /// An optional e-mail address.
    pub email: Option<Email>,
    /// Their role on the instance.
    pub instance_role: InstanceRole,
    /// False once deactivated: they can no longer authenticate or act.
    pub is_active: bool,
    /// When they were created.
    pub created_at: DateTime<Utc>,
}

/// What a store needs to create a user. The password arrives already hashed:
/// stores never see a plain secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAdminUser {
    /// The id to give them.
    pub id: AdminUserId,
    /// Their unique login name.
    pub username: Username,
    /// An optional e-mail address.
    pub email: Option<Email>,
    /// A PHC-format password hash (argon2), or `None` for a user who cannot log
    /// in with a password (tokens only).
    pub password_hash: Option<String>,
    /// Their role on the instance.
    pub instance_role: InstanceRole,
    /// Whether they start active.
    pub is_active: bool,
    /// Their creation time.
    pub created_at: DateTime<Utc>,
}

impl NewAdminUser {
    /// An active user with a fresh id, created now, without a password.
    pub fn new(username: Username, instance_role: InstanceRole) -> Self {
        Self {
            id: AdminUserId::new(),
            username,
            email: None,
            password_hash: None,
            instance_role,
            is_active: true,
            created_at: crate::clock::now(),
        }
    }

    /// The user this will become once stored.
    pub fn to_user(&self) -> AdminUser {
        AdminUser {
            id: self.id,
            username: self.username.clone(),
            email: self.email.clone(),
            instance_role: self.instance_role,
            is_active: self.is_active,
            created_at: self.created_at,
        }
    }
}

/// A user together with their password hash, for login only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCredentials {
    /// The user.
    pub user: AdminUser,
    /// Their PHC-format password hash, if they have one.
    pub password_hash: Option<String>,
}

/// Why a username was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("username must be 1 to 64 characters of a-z, A-Z, 0-9, '.', '_' and '-'")]
pub struct UsernameError;

/// A login name: 1–64 characters of `A-Za-z0-9._-`. A value of this type is
/// always one a user can log in with, so no store (and no raw port call)
/// keeps a user who never could.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

impl Username {
    /// The longest username allowed, in bytes (all of them ASCII).
    pub const MAX_LEN: usize = 64;

    /// Validates `s` as a username. It is not trimmed: `" ann"` is refused.
    pub fn parse(s: &str) -> Result<Self, UsernameError> {
        let ok = (1..=Self::MAX_LEN).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(UsernameError)
        }
    }

    /// The username as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks a username: 1–64 characters of `A-Za-z0-9._-` (see [`Username`]).
pub fn validate_username(username: &str) -> Result<(), UsernameError> {
    Username::parse(username).map(drop)
}

/// Why an e-mail address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("email is not a valid address")]
pub struct EmailError;

/// An e-mail address, as far as PiCloud checks one: at most 254 bytes,
/// something on each side of an `@`, no white space and no control
/// characters (NUL included). Whether it receives mail is not checked.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// The longest address allowed, in bytes.
    pub const MAX_LEN: usize = 254;

    /// Validates `s` as an address. It is not trimmed.
    pub fn parse(s: &str) -> Result<Self, EmailError> {
        let ok = s.len() <= Self::MAX_LEN
            && s.split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
            && !s.chars().any(|c| c.is_whitespace() || c.is_control());
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(EmailError)
        }
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

text_newtype!(Username, UsernameError);
text_newtype!(Email, EmailError);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_the_rules() {
        assert!(validate_username("ann").is_ok());
        assert!(validate_username("Ann.B_c-1").is_ok());
        assert!(validate_username("").is_err());
        assert!(validate_username(&"a".repeat(65)).is_err());
        assert!(validate_username("ann smith").is_err());
        assert!(validate_username("ann/..").is_err());
        assert!(Username::parse("Alice Smith").is_err());
        assert!(Username::parse("ann\0").is_err());
        assert!(serde_json::from_str::<Username>("\"a b\"").is_err());
        let ann = Username::parse("ann").unwrap();
        assert_eq!(serde_json::to_string(&ann).unwrap(), "\"ann\"");
    }

    #[test]
    fn emails_follow_the_rules() {
        assert!(Email::parse("ann@example.org").is_ok());
        assert!(Email::parse("ann").is_err());
        assert!(Email::parse("@example.org").is_err());
        assert!(Email::parse("ann@").is_err());
        assert!(Email::parse("ann @example.org").is_err());
        assert!(Email::parse("ann\0@example.org").is_err());
        assert!(Email::parse(&format!("{}@b", "a".repeat(253))).is_err());
        assert!(serde_json::from_str::<Email>("\"nope\"").is_err());
    }
}
