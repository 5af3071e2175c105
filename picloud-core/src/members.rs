//! The membership service: who holds which explicit role on an app.
//!
//! Every rule of the members API lives here, so that any transport (PiCloud's
//! axum routers, an embedder's own handlers) gets them for free. The order of
//! checks is part of the contract, because it decides which error a caller
//! sees when several apply:
//!
//! - **grant:** resolve app → require `AppAdmin` → user exists → user active →
//!   user is an instance `member` → `try_insert` (`None` means already a member);
//! - **change role:** resolve app → require → user exists → `update_role`
//!   (`None` means not a member);
//! - **remove:** resolve app → require → `remove` (idempotent);
//! - **list:** resolve app → require → list.
//!
//! Grants are deliberately not idempotent: a duplicate is `AlreadyMember`
//! rather than a silent overwrite, and role changes go through
//! [`MembershipService::change_role`]. Both write paths are single atomic
//! store operations, so concurrent grants yield exactly one success and a
//! role change racing a removal never resurrects the row.
//!
//! There is no "last app admin" guard: owners always hold `AppAdmin`, so an
//! app cannot be orphaned by removing its last explicit `app_admin`.

use crate::authz::{AuthzRepoError, Capability, resolve_and_require};
use crate::domain::{AdminUser, App, AppMembershipDetail, AppRole, InstanceRole, Principal};
use crate::error::{ErrorKind, ServiceError};
use crate::ids::AdminUserId;
use crate::ports::{AdminUserRepoError, AppMembersRepoError, AppRepoError};
use crate::stores::Stores;

/// Every outcome of the membership service other than success.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// No app has this id or slug.
    #[error("app not found: {0}")]
    AppNotFound(String),
    /// No user has this id.
    #[error("user not found: {0}")]
    UserNotFound(AdminUserId),
    /// The user holds no explicit membership on the app.
    #[error("no membership exists for this user on this app")]
    MembershipNotFound,
    /// The user is already a member; their role changes through `change_role`.
    #[error("{username} is already a member of this app — use PATCH to change their role")]
    AlreadyMember {
        /// The target's username.
        username: String,
    },
    /// The target is deactivated.
    #[error("{username} is deactivated and cannot be added as a member")]
    TargetInactive {
        /// The target's username.
        username: String,
    },
    /// The target is an owner or admin, who never get explicit rows.
    #[error(
        "{username} has instance_role {instance_role} and already has implicit access \
         on every app — no explicit membership needed"
    )]
    TargetNotMember {
        /// The target's username.
        username: String,
        /// The target's instance role.
        instance_role: InstanceRole,
    },
    /// The caller may not manage this app's members.
    #[error("forbidden")]
    Forbidden,
    /// The authorization lookup failed.
    #[error("authorization repo error: {0}")]
    Authz(#[from] AuthzRepoError),
    /// The app store failed.
    #[error("app repository error: {0}")]
    Apps(#[from] AppRepoError),
    /// The user store failed.
    #[error("user repository error: {0}")]
    Users(#[from] AdminUserRepoError),
    /// The membership store failed.
    #[error("membership repository error: {0}")]
    Members(#[from] AppMembersRepoError),
}

crate::error::from_authz_denied!(MembershipError, not_found = AppNotFound);

impl ServiceError for MembershipError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::AppNotFound(_) | Self::UserNotFound(_) | Self::MembershipNotFound => {
                ErrorKind::NotFound
            }
            Self::AlreadyMember { .. } => ErrorKind::Conflict,
            Self::TargetInactive { .. } | Self::TargetNotMember { .. } => ErrorKind::Invalid,
            Self::Forbidden => ErrorKind::Forbidden,
            Self::Authz(_) | Self::Apps(_) | Self::Users(_) | Self::Members(_) => {
                ErrorKind::Internal
            }
        }
    }
}

/// Grants, changes, removes and lists explicit app memberships, enforcing
/// `AppAdmin` on the app for every call.
#[derive(Debug, Clone)]
pub struct MembershipService {
    stores: Stores,
}

impl MembershipService {
    /// A service over `stores`.
    pub fn new(stores: Stores) -> Self {
        Self { stores }
    }

    /// The app's explicit members, joined with their users.
    pub async fn list(
        &self,
        principal: &Principal,
        app: &str,
    ) -> Result<Vec<AppMembershipDetail>, MembershipError> {
        let app = self.authorized_app(principal, app).await?;
        Ok(self.stores.members.list_for_app_enriched(app.id).await?)
    }

    /// Gives `user` the explicit `role` on the app. Refuses duplicates
    /// ([`MembershipError::AlreadyMember`]), inactive users and non-members.
    pub async fn grant(
        &self,
        principal: &Principal,
        app: &str,
        user: AdminUserId,
        role: AppRole,
    ) -> Result<AppMembershipDetail, MembershipError> {
        let ident = app;
        let app = self.authorized_app(principal, ident).await?;
        let target = self.existing_user(user).await?;
        if !target.is_active {
            return Err(MembershipError::TargetInactive {
                username: target.username.into(),
            });
        }
        if target.instance_role != InstanceRole::Member {
            return Err(MembershipError::TargetNotMember {
                username: target.username.into(),
                instance_role: target.instance_role,
            });
        }
        let row = self
            .stores
            .members
            .try_insert(app.id, target.id, role)
            .await
            .map_err(|e| match e {
                // The app vanished between resolve and insert.
                AppMembersRepoError::NotFound => MembershipError::AppNotFound(ident.to_owned()),
                other => other.into(),
            })?
            .ok_or_else(|| MembershipError::AlreadyMember {
                username: target.username.to_string(),
            })?;
        Ok(AppMembershipDetail::compose(&target, &row))
    }

    /// Changes the role of an existing member. Never creates a membership.
    pub async fn change_role(
        &self,
        principal: &Principal,
        app: &str,
        user: AdminUserId,
        role: AppRole,
    ) -> Result<AppMembershipDetail, MembershipError> {
        let app = self.authorized_app(principal, app).await?;
        let target = self.existing_user(user).await?;
        let row = self
            .stores
            .members
            .update_role(app.id, target.id, role)
            .await?
            .ok_or(MembershipError::MembershipNotFound)?;
        Ok(AppMembershipDetail::compose(&target, &row))
    }

    /// Removes a membership. Idempotent.
    pub async fn remove(
        &self,
        principal: &Principal,
        app: &str,
        user: AdminUserId,
    ) -> Result<(), MembershipError> {
        let app = self.authorized_app(principal, app).await?;
        self.stores.members.remove(app.id, user).await?;
        Ok(())
    }

    /// Resolves the app, then requires `AppAdmin` on it.
    async fn authorized_app(
        &self,
        principal: &Principal,
        ident: &str,
    ) -> Result<App, MembershipError> {
        Ok(resolve_and_require(&self.stores, principal, ident, Capability::AppAdmin).await?)
    }

    async fn existing_user(&self, user: AdminUserId) -> Result<AdminUser, MembershipError> {
        self.stores
            .users
            .get(user)
            .await?
            .ok_or(MembershipError::UserNotFound(user))
    }
}
