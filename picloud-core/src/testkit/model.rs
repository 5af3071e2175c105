//! A reference model of the capability table in DESIGN.md.
//!
//! It is written as the table itself, row by row, with no shared code with
//! [`crate::authz`], so that a property test comparing the two catches a
//! mistake in either.

use crate::authz::Capability;
use crate::domain::{AppRole, InstanceRole, Principal};

/// What an instance `member` needs to hold a capability.
#[derive(Debug, Clone, Copy)]
enum MemberRule {
    Never,
    Always,
    AnyAppRole,
    OneOf(&'static [AppRole]),
}

/// One row per capability kind: (is app-scoped, owner, admin, member).
#[derive(Debug, Clone, Copy)]
struct Row {
    app_scoped: bool,
    owner: bool,
    admin: bool,
    member: MemberRule,
}

const MANAGE_USERS: Row = Row {
    app_scoped: false,
    owner: true,
    admin: true,
    member: MemberRule::Never,
};
const MANAGE_ROLES: Row = Row {
    app_scoped: false,
    owner: true,
    admin: false,
    member: MemberRule::Never,
};
const CREATE_APP: Row = Row {
    app_scoped: false,
    owner: true,
    admin: true,
    member: MemberRule::Never,
};
const MANAGE_OWN_TOKENS: Row = Row {
    app_scoped: false,
    owner: true,
    admin: true,
    member: MemberRule::Always,
};
const APP_VIEW: Row = Row {
    app_scoped: true,
    owner: true,
    admin: true,
    member: MemberRule::AnyAppRole,
};
const APP_EDIT: Row = Row {
    app_scoped: true,
    owner: true,
    admin: true,
    member: MemberRule::OneOf(&[AppRole::Editor, AppRole::AppAdmin]),
};
const APP_ADMIN: Row = Row {
    app_scoped: true,
    owner: true,
    admin: false,
    member: MemberRule::OneOf(&[AppRole::AppAdmin]),
};

fn row(capability: Capability) -> Row {
    match capability {
        Capability::InstanceManageUsers => MANAGE_USERS,
        Capability::InstanceManageRoles => MANAGE_ROLES,
        Capability::CreateApp => CREATE_APP,
        Capability::ManageOwnTokens => MANAGE_OWN_TOKENS,
        Capability::AppView(_) => APP_VIEW,
        Capability::AppEdit(_) => APP_EDIT,
        Capability::AppAdmin(_) => APP_ADMIN,
    }
}

fn member_rule_accepts(rule: MemberRule, role: Option<AppRole>) -> bool {
    match (rule, role) {
        (MemberRule::Always, _) => true,
        (MemberRule::Never, _) | (_, None) => false,
        (MemberRule::AnyAppRole, Some(_)) => true,
        (MemberRule::OneOf(roles), Some(r)) => roles.contains(&r),
    }
}

/// The model's answer: may `principal` exercise `capability`, given their
/// explicit role on the capability's app?
///
/// - inactive: nothing;
/// - owner / admin: the table's column; explicit rows are ignored;
/// - member: the table's member rule applied to the explicit role;
/// - scoped to an app: no instance capability, nothing on another app, and on
///   its app only what an explicit `max_role` would also allow.
pub fn allowed(principal: &Principal, explicit: Option<AppRole>, capability: Capability) -> bool {
    if !principal.is_active {
        return false;
    }
    let row = row(capability);
    let unscoped = match principal.instance_role {
        InstanceRole::Owner => row.owner,
        InstanceRole::Admin => row.admin,
        InstanceRole::Member => member_rule_accepts(row.member, explicit),
    };
    match principal.scope {
        None => unscoped,
        Some(scope) => {
            row.app_scoped
                && capability.app() == Some(scope.app_id)
                && unscoped
                && member_rule_accepts(row.member, Some(scope.max_role))
        }
    }
}

/// Every capability for the given apps: the four instance ones, then three
/// per app.
pub fn all_capabilities(apps: &[crate::ids::AppId]) -> Vec<Capability> {
    let mut caps = vec![
        Capability::InstanceManageUsers,
        Capability::InstanceManageRoles,
        Capability::CreateApp,
        Capability::ManageOwnTokens,
    ];
    for &app in apps {
        caps.extend([
            Capability::AppView(app),
            Capability::AppEdit(app),
            Capability::AppAdmin(app),
        ]);
    }
    caps
}
