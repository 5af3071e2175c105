//! The user directory service (feature `auth`): list, create and update users.
//!
//! Rules, on top of the capability table:
//! - listing and creating need `InstanceManageUsers`;
//! - creating anyone but a `member`, or changing an instance role, also needs
//!   `InstanceManageRoles` (owners only), so an admin cannot mint admins;
//! - only an owner may deactivate or reactivate an owner (checked by the store
//!   on the locked row, with the change);
//! - the last active owner can be neither demoted nor deactivated.

use crate::auth::{AuthError, CryptoError, hash_password, validate_password};
use crate::authz::{AuthzDenied, AuthzRepoError, Capability, require};
use crate::domain::{AdminUser, Email, InstanceRole, NewAdminUser, Principal, Username};
use crate::error::{ErrorKind, ServiceError};
use crate::ids::AdminUserId;
use crate::ports::AdminUserRepoError;
use crate::stores::Stores;

/// Every outcome of [`UserService`] other than success.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserError {
    /// The caller may not do this.
    #[error("forbidden")]
    Forbidden,
    /// No user has this id.
    #[error("user not found: {0}")]
    NotFound(AdminUserId),
    /// The username is taken.
    #[error("username already taken: {0}")]
    UsernameTaken(String),
    /// The request breaks a rule (shown to the caller as is).
    #[error("{0}")]
    Invalid(String),
    /// Too many password hashes are being computed; try again shortly.
    #[error("too many password operations in progress; try again shortly")]
    Busy,
    /// The change would leave the instance without an active owner.
    #[error("the last active owner cannot be demoted or deactivated")]
    LastOwner,
    /// Password hashing failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The user store failed.
    #[error("user repository error: {0}")]
    Users(AdminUserRepoError),
    /// The authorization lookup failed.
    #[error("authorization repo error: {0}")]
    Authz(#[from] AuthzRepoError),
}

impl From<AdminUserRepoError> for UserError {
    fn from(e: AdminUserRepoError) -> Self {
        match e {
            AdminUserRepoError::Conflict(name) => Self::UsernameTaken(name),
            AdminUserRepoError::LastOwner => Self::LastOwner,
            AdminUserRepoError::TargetIsOwner => Self::Forbidden,
            other => Self::Users(other),
        }
    }
}

crate::error::from_authz_denied!(UserError);

impl ServiceError for UserError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Forbidden => ErrorKind::Forbidden,
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::UsernameTaken(_) => ErrorKind::Conflict,
            Self::Invalid(_) | Self::LastOwner => ErrorKind::Invalid,
            Self::Busy => ErrorKind::Busy,
            Self::Crypto(_) | Self::Users(_) | Self::Authz(_) => ErrorKind::Internal,
        }
    }
}

/// A request to create a user.
#[derive(Debug, Clone)]
pub struct CreateUser {
    /// Login name: 1–64 characters of `A-Za-z0-9._-`.
    pub username: String,
    /// Optional e-mail address.
    pub email: Option<String>,
    /// Plain password (hashed with argon2 before it reaches the store).
    pub password: String,
    /// Instance role.
    pub instance_role: InstanceRole,
}

/// A partial update of a user.
#[derive(Debug, Clone, Default)]
pub struct UpdateUser {
    /// Activate or deactivate.
    pub is_active: Option<bool>,
    /// Change the instance role.
    pub instance_role: Option<InstanceRole>,
}

/// Lists, creates and updates users, enforcing the instance capabilities.
#[derive(Debug, Clone)]
pub struct UserService {
    stores: Stores,
}

impl UserService {
    /// A service over `stores`.
    pub fn new(stores: Stores) -> Self {
        Self { stores }
    }

    async fn require(&self, p: &Principal, cap: Capability) -> Result<(), UserError> {
        Ok(require(self.stores.authz.as_ref(), p, cap).await?)
    }

    /// Every user, inactive ones included.
    pub async fn list(&self, principal: &Principal) -> Result<Vec<AdminUser>, UserError> {
        self.require(principal, Capability::InstanceManageUsers)
            .await?;
        Ok(self.stores.users.list().await?)
    }

    /// Creates a user.
    pub async fn create(
        &self,
        principal: &Principal,
        req: CreateUser,
    ) -> Result<AdminUser, UserError> {
        self.require(principal, Capability::InstanceManageUsers)
            .await?;
        if req.instance_role != InstanceRole::Member {
            self.require(principal, Capability::InstanceManageRoles)
                .await?;
        }
        let username =
            Username::parse(&req.username).map_err(|e| UserError::Invalid(e.to_string()))?;
        validate_password(&req.password).map_err(UserError::Invalid)?;
        let email = match req.email.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(e) => Some(Email::parse(e).map_err(|e| UserError::Invalid(e.to_string()))?),
        };
        let password = req.password;
        let hash = crate::auth::blocking(move || hash_password(&password))
            .await
            .map_err(|e| match e {
                AuthError::Busy => UserError::Busy,
                other => UserError::Crypto(CryptoError::from_auth(other)),
            })??;
        let mut new = NewAdminUser::new(username, req.instance_role);
        new.email = email;
        new.password_hash = Some(hash);
        Ok(self.stores.users.create(new).await?)
    }

    /// Activates, deactivates or changes the instance role of a user.
    ///
    /// Order of checks: `InstanceManageUsers` (403) → `InstanceManageRoles`
    /// when the role changes (403) → the target exists (404) → a caller
    /// without `InstanceManageRoles` never changes an owner (403) → the last
    /// active owner stays (422). The last three are made by the store on the
    /// locked row, atomically with the change, so a target promoted to owner
    /// an instant before cannot still be changed by an admin.
    pub async fn update(
        &self,
        principal: &Principal,
        id: AdminUserId,
        req: UpdateUser,
    ) -> Result<AdminUser, UserError> {
        self.require(principal, Capability::InstanceManageUsers)
            .await?;
        // Admins manage users, but never owners (nor instance roles).
        let may_manage_roles = match require(
            self.stores.authz.as_ref(),
            principal,
            Capability::InstanceManageRoles,
        )
        .await
        {
            Ok(()) => true,
            Err(AuthzDenied::Denied) => false,
            Err(AuthzDenied::Repo(e)) => return Err(UserError::Authz(e)),
        };
        if req.instance_role.is_some() && !may_manage_roles {
            return Err(UserError::Forbidden);
        }
        let user = self
            .stores
            .users
            .update_guarded(id, req.instance_role, req.is_active, may_manage_roles)
            .await
            .map_err(|e| match e {
                AdminUserRepoError::NotFound => UserError::NotFound(id),
                other => other.into(),
            })?;
        Ok(user)
    }
}
