//! The users port.

use async_trait::async_trait;

use super::BoxError;
use crate::domain::{AdminUser, InstanceRole, NewAdminUser, OwnerGuardRefusal, UserCredentials};
use crate::ids::AdminUserId;

/// Errors of [`AdminUserRepository`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminUserRepoError {
    /// No such user.
    #[error("user not found")]
    NotFound,
    /// The username (or id) is already taken.
    #[error("username already taken: {0}")]
    Conflict(String),
    /// The change would leave the instance without an active owner.
    #[error("the last active owner cannot be demoted or deactivated")]
    LastOwner,
    /// The target is an owner and the caller may not change owners (see
    /// [`AdminUserRepository::update_guarded`]'s `may_touch_owner`).
    #[error("the target is an owner")]
    TargetIsOwner,
    /// The backend failed.
    #[error("user store backend error: {0}")]
    Backend(#[source] BoxError),
}

impl From<OwnerGuardRefusal> for AdminUserRepoError {
    fn from(refusal: OwnerGuardRefusal) -> Self {
        match refusal {
            OwnerGuardRefusal::TargetIsOwner => Self::TargetIsOwner,
            OwnerGuardRefusal::LastOwner => Self::LastOwner,
        }
    }
}

/// Stores users and their password hashes.
///
/// A user's instance role and active flag change only through
/// [`update_guarded`](Self::update_guarded), so the instance never loses its
/// last active owner; a user who should start inactive is created so
/// ([`NewAdminUser::is_active`]).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait AdminUserRepository: Send + Sync {
    /// Stores a new user. [`AdminUserRepoError::Conflict`] if the username is taken.
    async fn create(&self, user: NewAdminUser) -> Result<AdminUser, AdminUserRepoError>;

    /// The user with this id, if any.
    async fn get(&self, id: AdminUserId) -> Result<Option<AdminUser>, AdminUserRepoError>;

    /// The user with this username (exact match), if any.
    async fn find_by_username(
        &self,
        username: &str,
    ) -> Result<Option<AdminUser>, AdminUserRepoError>;

    /// The user with this username and their password hash, for login.
    async fn credentials(
        &self,
        username: &str,
    ) -> Result<Option<UserCredentials>, AdminUserRepoError>;

    /// Every user, inactive ones included, ordered by username (byte order).
    async fn list(&self) -> Result<Vec<AdminUser>, AdminUserRepoError>;

    /// Changes a user's instance role and/or active flag in one atomic step
    /// (`None` leaves a field as it is), checking two guards on the row as it
    /// is when the change applies (locked), never on an earlier read. This is
    /// the only way to change either field: there is no unguarded setter, and
    /// bootstrap and test helpers use this too.
    ///
    /// The guards are [`check_user_change`](crate::domain::check_user_change),
    /// a pure function a store calls on the target and the other active
    /// owners as they are under its lock (its refusal converts into this
    /// error with `?`), so every store applies the same rule:
    ///
    /// 1. with `may_touch_owner` false, a change (any field `Some`) of a user
    ///    whose instance role is `owner`, active or not, is refused with
    ///    [`AdminUserRepoError::TargetIsOwner`]; a call with both fields
    ///    `None` changes nothing and is not refused;
    /// 2. a change that would leave no active owner is refused with
    ///    [`AdminUserRepoError::LastOwner`].
    ///
    /// The checks and the write are one unit: of two concurrent calls that
    /// each demote or deactivate one of the last two owners, exactly one
    /// succeeds, and a call without `may_touch_owner` racing the target's
    /// promotion to owner either applies before the promotion or is refused.
    /// [`AdminUserRepoError::NotFound`] if absent (checked first).
    async fn update_guarded(
        &self,
        id: AdminUserId,
        role: Option<InstanceRole>,
        is_active: Option<bool>,
        may_touch_owner: bool,
    ) -> Result<AdminUser, AdminUserRepoError>;

    /// Replaces a user's password hash. [`AdminUserRepoError::NotFound`] if absent.
    async fn set_password_hash(
        &self,
        id: AdminUserId,
        password_hash: Option<String>,
    ) -> Result<(), AdminUserRepoError>;

    /// How many active owners exist (bootstrap creates one when there is none).
    async fn count_active_owners(&self) -> Result<u64, AdminUserRepoError>;
}
