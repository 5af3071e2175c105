//! Users, their credentials and username validation.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::InstanceRole;
use crate::ids::AdminUserId;

/// A user of the instance (called an "admin user" for historical reasons: every
/// user can log in to the admin API, with what their role allows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminUser {
    /// Their id.
    pub id: AdminUserId,
    /// Their unique login name.
    pub username: String,
    /// An optional e-mail address.
    pub email: Option<String>,
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
    pub username: String,
    /// An optional e-mail address.
    pub email: Option<String>,
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
    pub fn new(username: impl Into<String>, instance_role: InstanceRole) -> Self {
        Self {
            id: AdminUserId::new(),
            username: username.into(),
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

/// Checks a username: 1–64 characters of `A-Za-z0-9._-`.
pub fn validate_username(username: &str) -> Result<(), UsernameError> {
    let ok = (1..=64).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok { Ok(()) } else { Err(UsernameError) }
}

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
    }
}
