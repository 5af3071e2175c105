//! Authorization: the capability table as one pure function.
//!
//! The store answers one fact, "what explicit role does this user hold on
//! this app?" ([`AuthzRepository::app_role`]); everything else is decided here,
//! without I/O, so it can be benchmarked, property-tested against a reference
//! model, and reused by every transport. Handlers never re-implement a rule:
//! they call a service, and the service calls [`require`].
//!
//! | capability | owner | admin | member |
//! |---|---|---|---|
//! | `InstanceManageUsers` | yes | yes | no |
//! | `InstanceManageRoles` | yes | no | no |
//! | `CreateApp` | yes | yes | no |
//! | `ManageOwnTokens` | yes | yes | yes |
//! | `AppView(app)` | yes | yes | any explicit app role |
//! | `AppEdit(app)` | yes | yes | `editor` or `app_admin` |
//! | `AppAdmin(app)` | yes | **no** | `app_admin` |
//!
//! An inactive principal holds nothing. A principal scoped to one app (an
//! app-scoped token) holds no instance capability, nothing on other apps, and
//! at most its `max_role` on its app; in particular it cannot manage tokens
//! (`ManageOwnTokens`), so a leaked scoped token cannot mint a broader one.

use crate::domain::{App, AppRole, InstanceRole, Principal};
use crate::ids::AppId;
use crate::ports::AppRepoError;
pub use crate::ports::authz::{AuthzRepoError, AuthzRepository};
use crate::stores::Stores;

/// Something a principal may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    /// Browse the user directory, create or deactivate users.
    InstanceManageUsers,
    /// Change a user's instance role.
    InstanceManageRoles,
    /// Create a new app.
    CreateApp,
    /// List, issue and revoke one's own API tokens.
    ManageOwnTokens,
    /// See an app and its contents.
    AppView(AppId),
    /// Change an app's scripts, schedules, domains and environment.
    AppEdit(AppId),
    /// Manage an app's members and settings, or delete it.
    AppAdmin(AppId),
}

impl Capability {
    /// The app this capability is about, if it is app-scoped.
    pub const fn app(self) -> Option<AppId> {
        match self {
            Self::AppView(app) | Self::AppEdit(app) | Self::AppAdmin(app) => Some(app),
            Self::InstanceManageUsers
            | Self::InstanceManageRoles
            | Self::CreateApp
            | Self::ManageOwnTokens => None,
        }
    }

    /// The lowest app role that grants this capability, if it is app-scoped.
    pub const fn required_app_role(self) -> Option<AppRole> {
        match self {
            Self::AppView(_) => Some(AppRole::Viewer),
            Self::AppEdit(_) => Some(AppRole::Editor),
            Self::AppAdmin(_) => Some(AppRole::AppAdmin),
            Self::InstanceManageUsers
            | Self::InstanceManageRoles
            | Self::CreateApp
            | Self::ManageOwnTokens => None,
        }
    }
}

/// The caller's effective role on `app`, given the explicit role the store
/// holds for them there (`explicit`, ignored for owners and admins).
///
/// An owner acts as `app_admin`, an admin as `editor`, a member as their
/// explicit role. Inactive principals have no role; a scoped principal has none
/// outside its app and at most its `max_role` inside it.
pub fn my_role(principal: &Principal, app: AppId, explicit: Option<AppRole>) -> Option<AppRole> {
    if !principal.is_active {
        return None;
    }
    let base = match principal.instance_role {
        InstanceRole::Owner => Some(AppRole::AppAdmin),
        InstanceRole::Admin => Some(AppRole::Editor),
        InstanceRole::Member => explicit,
    };
    match principal.scope {
        None => base,
        Some(scope) if scope.app_id == app => base.map(|r| r.min(scope.max_role)),
        Some(_) => None,
    }
}

/// The pure decision: may `principal` exercise `capability`, given the
/// explicit role they hold on the capability's app (if any)?
#[inline]
pub fn decide(principal: &Principal, explicit: Option<AppRole>, capability: Capability) -> bool {
    if !principal.is_active {
        return false;
    }
    let role = principal.instance_role;
    match capability {
        Capability::InstanceManageUsers | Capability::CreateApp => {
            principal.scope.is_none() && matches!(role, InstanceRole::Owner | InstanceRole::Admin)
        }
        Capability::InstanceManageRoles => principal.scope.is_none() && role == InstanceRole::Owner,
        Capability::ManageOwnTokens => principal.scope.is_none(),
        Capability::AppView(app) | Capability::AppEdit(app) | Capability::AppAdmin(app) => {
            match (
                my_role(principal, app, explicit),
                capability.required_app_role(),
            ) {
                (Some(have), Some(need)) => have >= need,
                _ => false,
            }
        }
    }
}

/// Whether deciding `capability` for `principal` depends on their explicit
/// app role, and so needs a store lookup. Owners, admins, inactive principals,
/// instance capabilities and apps outside a token's scope never do.
pub fn needs_explicit_role(principal: &Principal, capability: Capability) -> Option<AppId> {
    let app = capability.app()?;
    let in_scope = principal.scope.is_none_or(|s| s.app_id == app);
    (principal.is_active && principal.instance_role == InstanceRole::Member && in_scope)
        .then_some(app)
}

/// Why [`require`] refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthzDenied {
    /// The principal does not hold the capability.
    #[error("forbidden")]
    Denied,
    /// The store could not answer.
    #[error("authorization lookup failed: {0}")]
    Repo(#[from] AuthzRepoError),
}

/// Checks that `principal` holds `capability`, asking `repo` for the explicit
/// app role only when the decision depends on it.
pub async fn require(
    repo: &dyn AuthzRepository,
    principal: &Principal,
    capability: Capability,
) -> Result<(), AuthzDenied> {
    let explicit = match needs_explicit_role(principal, capability) {
        Some(app) => repo.app_role(app, principal.user_id).await?,
        None => None,
    };
    if decide(principal, explicit, capability) {
        Ok(())
    } else {
        Err(AuthzDenied::Denied)
    }
}

/// Why [`resolve_and_require`] gave no app.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppAccessError {
    /// No app has this id or slug.
    #[error("app not found: {0}")]
    NotFound(String),
    /// The principal does not hold the capability on it.
    #[error("forbidden")]
    Denied,
    /// The app store failed.
    #[error("app repository error: {0}")]
    Apps(#[from] AppRepoError),
    /// The authorization lookup failed.
    #[error("authorization lookup failed: {0}")]
    Authz(#[from] AuthzRepoError),
}

/// Resolves `id_or_slug` to an app and requires `capability(app)` of
/// `principal`: the one way every service turns "an app the caller named"
/// into "an app the caller may act on". An unknown app is
/// [`AppAccessError::NotFound`], whoever asks.
pub async fn resolve_and_require(
    stores: &Stores,
    principal: &Principal,
    id_or_slug: &str,
    capability: fn(AppId) -> Capability,
) -> Result<App, AppAccessError> {
    Ok(resolve_with_role(stores, principal, id_or_slug, capability)
        .await?
        .0)
}

/// [`resolve_and_require`], also giving the caller's effective role on the
/// app ([`my_role`]), from the same single lookup of their explicit role.
pub async fn resolve_with_role(
    stores: &Stores,
    principal: &Principal,
    id_or_slug: &str,
    capability: fn(AppId) -> Capability,
) -> Result<(App, Option<AppRole>), AppAccessError> {
    let app = stores
        .apps
        .resolve(id_or_slug)
        .await?
        .ok_or_else(|| AppAccessError::NotFound(id_or_slug.to_owned()))?;
    let capability = capability(app.id);
    // Every app capability depends on the explicit role under the same
    // condition, so one lookup serves the decision and the role.
    let explicit = match needs_explicit_role(principal, capability) {
        Some(id) => stores.authz.app_role(id, principal.user_id).await?,
        None => None,
    };
    if !decide(principal, explicit, capability) {
        return Err(AppAccessError::Denied);
    }
    let role = my_role(principal, app.id, explicit);
    Ok((app, role))
}

/// The caller's effective role on `app`, looking up the explicit role only if
/// it matters (see [`my_role`]).
pub async fn my_role_in(
    repo: &dyn AuthzRepository,
    principal: &Principal,
    app: AppId,
) -> Result<Option<AppRole>, AuthzRepoError> {
    let explicit = match needs_explicit_role(principal, Capability::AppView(app)) {
        Some(app) => repo.app_role(app, principal.user_id).await?,
        None => None,
    };
    Ok(my_role(principal, app, explicit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TokenScope;
    use crate::ids::AdminUserId;

    fn principal(role: InstanceRole) -> Principal {
        Principal {
            user_id: AdminUserId::new(),
            instance_role: role,
            is_active: true,
            scope: None,
        }
    }

    #[test]
    fn the_table_from_design_md() {
        let app = AppId::new();
        let owner = principal(InstanceRole::Owner);
        let admin = principal(InstanceRole::Admin);
        let member = principal(InstanceRole::Member);
        use Capability::*;
        for cap in [InstanceManageUsers, CreateApp] {
            assert!(decide(&owner, None, cap));
            assert!(decide(&admin, None, cap));
            assert!(!decide(&member, Some(AppRole::AppAdmin), cap));
        }
        for p in [&owner, &admin, &member] {
            assert!(decide(p, None, ManageOwnTokens));
        }
        assert!(decide(&owner, None, InstanceManageRoles));
        assert!(!decide(&admin, None, InstanceManageRoles));
        assert!(decide(&admin, None, AppEdit(app)));
        assert!(!decide(&admin, None, AppAdmin(app)));
        assert!(decide(&owner, None, AppAdmin(app)));
        assert!(!decide(&member, None, AppView(app)));
        assert!(decide(&member, Some(AppRole::Viewer), AppView(app)));
        assert!(!decide(&member, Some(AppRole::Viewer), AppEdit(app)));
        assert!(decide(&member, Some(AppRole::Editor), AppEdit(app)));
        assert!(!decide(&member, Some(AppRole::Editor), AppAdmin(app)));
        assert!(decide(&member, Some(AppRole::AppAdmin), AppAdmin(app)));
    }

    #[test]
    fn scoped_tokens_never_grant_more_than_their_scope() {
        let app = AppId::new();
        let other = AppId::new();
        let owner = principal(InstanceRole::Owner).scoped(TokenScope {
            app_id: app,
            max_role: AppRole::Viewer,
        });
        assert!(decide(&owner, None, Capability::AppView(app)));
        assert!(!decide(&owner, None, Capability::AppEdit(app)));
        assert!(!decide(&owner, None, Capability::AppView(other)));
        assert!(!decide(&owner, None, Capability::CreateApp));
        assert!(!decide(&owner, None, Capability::ManageOwnTokens));
        assert_eq!(my_role(&owner, app, None), Some(AppRole::Viewer));
        assert_eq!(my_role(&owner, other, None), None);
        assert_eq!(needs_explicit_role(&owner, Capability::AppView(app)), None);
    }

    #[test]
    fn my_role_follows_the_instance_role() {
        let app = AppId::new();
        let e = Some(AppRole::Viewer);
        assert_eq!(
            my_role(&principal(InstanceRole::Owner), app, e),
            Some(AppRole::AppAdmin)
        );
        assert_eq!(
            my_role(&principal(InstanceRole::Admin), app, e),
            Some(AppRole::Editor)
        );
        assert_eq!(my_role(&principal(InstanceRole::Member), app, e), e);
        assert_eq!(my_role(&principal(InstanceRole::Member), app, None), None);
        let mut inactive = principal(InstanceRole::Owner);
        inactive.is_active = false;
        assert_eq!(my_role(&inactive, app, e), None);
    }
}
