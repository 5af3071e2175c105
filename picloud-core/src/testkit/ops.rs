//! Random sequences of raw repository operations, with observations stripped
//! of ids and timestamps, so that two stores can be run side by side and
//! compared op by op (the differential test between the memory and PostgreSQL
//! stores).

use proptest::prelude::*;
use proptest::sample::Index;

use crate::domain::{AppRole, InstanceRole, NewAdminUser, NewApp};
use crate::ports::{AdminUserRepoError, AppMembersRepoError, AppRepoError};
use crate::stores::Stores;

use super::world::{World, arb_app_role, arb_instance_role};

/// One repository call, on users and apps named by index into a [`World`].
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)] // The variants are named after the port methods they call (or say).
pub enum RepoOp {
    TryInsert {
        user: Index,
        app: Index,
        role: AppRole,
    },
    UpdateRole {
        user: Index,
        app: Index,
        role: AppRole,
    },
    Upsert {
        user: Index,
        app: Index,
        role: AppRole,
    },
    Remove {
        user: Index,
        app: Index,
    },
    Find {
        user: Index,
        app: Index,
    },
    AppRole {
        user: Index,
        app: Index,
    },
    ListForApp {
        app: Index,
    },
    ListForMember {
        user: Index,
    },
    /// `update_guarded` of the active flag alone, with the right to change
    /// owners (there is no unguarded setter).
    SetActive {
        user: Index,
        is_active: bool,
    },
    /// `update_guarded` of the instance role alone, with the right to change
    /// owners (there is no unguarded setter).
    SetInstanceRole {
        user: Index,
        role: InstanceRole,
    },
    UpdateGuarded {
        user: Index,
        role: Option<InstanceRole>,
        is_active: Option<bool>,
        may_touch_owner: bool,
    },
    DeleteApp {
        app: Index,
    },
    GetApp {
        app: Index,
    },
    ResolveSlug {
        app: Index,
    },
    CreateAppWithTakenSlug {
        app: Index,
    },
    CreateUserWithTakenName {
        user: Index,
    },
    ListUsers,
    ListApps,
    CountActiveOwners,
}

/// An error, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrKind {
    /// A `NotFound` variant.
    NotFound,
    /// A `Conflict` variant.
    Conflict,
    /// The last active owner would be lost.
    LastOwner,
    /// The target is an owner, and the caller may not change owners.
    TargetIsOwner,
    /// Anything else.
    Backend,
}

/// What an operation returned, with users and apps as indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// A membership row, or none.
    Row(Option<(usize, usize, AppRole)>),
    /// An explicit role, or none.
    Role(Option<AppRole>),
    /// An enriched member list: (user, role, user active, user instance role).
    Members(Vec<(usize, AppRole, bool, InstanceRole)>),
    /// A list of apps.
    Apps(Vec<usize>),
    /// A list of apps with the user's explicit role on each.
    MemberApps(Vec<(usize, AppRole)>),
    /// An app, or none.
    App(Option<usize>),
    /// A list of users: (user, instance role, active).
    Users(Vec<(usize, InstanceRole, bool)>),
    /// A count.
    Count(u64),
    /// Success with nothing to show.
    Done,
    /// An error.
    Err(ErrKind),
}

/// Any repository operation.
pub fn arb_repo_op() -> impl Strategy<Value = RepoOp> {
    let ua = || (any::<Index>(), any::<Index>());
    prop_oneof![
        4 => (ua(), arb_app_role()).prop_map(|((user, app), role)| RepoOp::TryInsert { user, app, role }),
        3 => (ua(), arb_app_role()).prop_map(|((user, app), role)| RepoOp::UpdateRole { user, app, role }),
        2 => (ua(), arb_app_role()).prop_map(|((user, app), role)| RepoOp::Upsert { user, app, role }),
        3 => ua().prop_map(|(user, app)| RepoOp::Remove { user, app }),
        2 => ua().prop_map(|(user, app)| RepoOp::Find { user, app }),
        2 => ua().prop_map(|(user, app)| RepoOp::AppRole { user, app }),
        2 => any::<Index>().prop_map(|app| RepoOp::ListForApp { app }),
        1 => any::<Index>().prop_map(|user| RepoOp::ListForMember { user }),
        1 => (any::<Index>(), any::<bool>()).prop_map(|(user, is_active)| RepoOp::SetActive { user, is_active }),
        1 => (any::<Index>(), arb_instance_role()).prop_map(|(user, role)| RepoOp::SetInstanceRole { user, role }),
        2 => (any::<Index>(), proptest::option::of(arb_instance_role()), proptest::option::of(any::<bool>()), any::<bool>())
            .prop_map(|(user, role, is_active, may_touch_owner)| RepoOp::UpdateGuarded { user, role, is_active, may_touch_owner }),
        1 => any::<Index>().prop_map(|app| RepoOp::DeleteApp { app }),
        1 => any::<Index>().prop_map(|app| RepoOp::GetApp { app }),
        1 => any::<Index>().prop_map(|app| RepoOp::ResolveSlug { app }),
        1 => any::<Index>().prop_map(|app| RepoOp::CreateAppWithTakenSlug { app }),
        1 => any::<Index>().prop_map(|user| RepoOp::CreateUserWithTakenName { user }),
        1 => Just(RepoOp::ListUsers),
        1 => Just(RepoOp::ListApps),
        1 => Just(RepoOp::CountActiveOwners),
    ]
}

/// Up to 40 operations.
pub fn arb_repo_ops() -> impl Strategy<Value = Vec<RepoOp>> {
    prop::collection::vec(arb_repo_op(), 0..40)
}

fn app_err(e: AppRepoError) -> ErrKind {
    match e {
        AppRepoError::NotFound => ErrKind::NotFound,
        AppRepoError::Conflict(_) => ErrKind::Conflict,
        _ => ErrKind::Backend,
    }
}

fn user_err(e: AdminUserRepoError) -> ErrKind {
    match e {
        AdminUserRepoError::NotFound => ErrKind::NotFound,
        AdminUserRepoError::Conflict(_) => ErrKind::Conflict,
        AdminUserRepoError::LastOwner => ErrKind::LastOwner,
        AdminUserRepoError::TargetIsOwner => ErrKind::TargetIsOwner,
        _ => ErrKind::Backend,
    }
}

fn member_err(e: AppMembersRepoError) -> ErrKind {
    match e {
        AppMembersRepoError::NotFound => ErrKind::NotFound,
        AppMembersRepoError::Conflict(_) => ErrKind::Conflict,
        _ => ErrKind::Backend,
    }
}

/// Applies `ops` to `stores`, in which `world` was installed, and returns one
/// observation per op. Users and apps outside the world (from other tests
/// sharing the store) are filtered out of lists.
pub async fn apply(stores: &Stores, world: &World, ops: &[RepoOp]) -> Vec<Observation> {
    let nu = world.users.len();
    let na = world.apps.len();
    let user_idx = |id| world.users.iter().position(|u| u.id == id);
    let app_idx = |id| world.apps.iter().position(|a| a.id == id);
    let row = |m: crate::domain::AppMembership| {
        (
            user_idx(m.user_id).expect("world user"),
            app_idx(m.app_id).expect("world app"),
            m.role,
        )
    };
    let apps_obs = |apps: Vec<crate::domain::App>| {
        Observation::Apps(apps.into_iter().filter_map(|a| app_idx(a.id)).collect())
    };
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        let obs = match *op {
            RepoOp::TryInsert { user, app, role } => {
                let (u, a) = (&world.users[user.index(nu)], &world.apps[app.index(na)]);
                match stores.members.try_insert(a.id, u.id, role).await {
                    Ok(r) => Observation::Row(r.map(row)),
                    Err(e) => Observation::Err(member_err(e)),
                }
            }
            RepoOp::UpdateRole { user, app, role } => {
                let (u, a) = (&world.users[user.index(nu)], &world.apps[app.index(na)]);
                match stores.members.update_role(a.id, u.id, role).await {
                    Ok(r) => Observation::Row(r.map(row)),
                    Err(e) => Observation::Err(member_err(e)),
                }
            }
            RepoOp::Upsert { user, app, role } => {
                let (u, a) = (&world.users[user.index(nu)], &world.apps[app.index(na)]);
                match stores.members.upsert(a.id, u.id, role).await {
                    Ok(r) => Observation::Row(Some(row(r))),
                    Err(e) => Observation::Err(member_err(e)),
                }
            }
            RepoOp::Remove { user, app } => {
                let (u, a) = (&world.users[user.index(nu)], &world.apps[app.index(na)]);
                match stores.members.remove(a.id, u.id).await {
                    Ok(()) => Observation::Done,
                    Err(e) => Observation::Err(member_err(e)),
                }
            }
            RepoOp::Find { user, app } => {
                let (u, a) = (&world.users[user.index(nu)], &world.apps[app.index(na)]);
                match stores.members.find(a.id, u.id).await {
                    Ok(r) => Observation::Row(r.map(row)),
                    Err(e) => Observation::Err(member_err(e)),
                }
            }
            RepoOp::AppRole { user, app } => {
                let (u, a) = (&world.users[user.index(nu)], &world.apps[app.index(na)]);
                match stores.authz.app_role(a.id, u.id).await {
                    Ok(r) => Observation::Role(r),
                    Err(_) => Observation::Err(ErrKind::Backend),
                }
            }
            RepoOp::ListForApp { app } => {
                let a = &world.apps[app.index(na)];
                match stores.members.list_for_app_enriched(a.id).await {
                    Ok(rows) => Observation::Members(
                        rows.into_iter()
                            .map(|d| {
                                let u = user_idx(d.user_id).expect("world user");
                                (u, d.role, d.is_active, d.instance_role)
                            })
                            .collect(),
                    ),
                    Err(e) => Observation::Err(member_err(e)),
                }
            }
            RepoOp::ListForMember { user } => {
                let u = &world.users[user.index(nu)];
                match stores.apps.list_for_member(u.id).await {
                    Ok(apps) => Observation::MemberApps(
                        apps.into_iter()
                            .filter_map(|(a, r)| app_idx(a.id).map(|i| (i, r)))
                            .collect(),
                    ),
                    Err(e) => Observation::Err(app_err(e)),
                }
            }
            RepoOp::SetActive { user, is_active } => {
                let u = &world.users[user.index(nu)];
                match stores
                    .users
                    .update_guarded(u.id, None, Some(is_active), true)
                    .await
                {
                    Ok(u) => Observation::Users(vec![(
                        user_idx(u.id).expect("world user"),
                        u.instance_role,
                        u.is_active,
                    )]),
                    Err(e) => Observation::Err(user_err(e)),
                }
            }
            RepoOp::SetInstanceRole { user, role } => {
                let u = &world.users[user.index(nu)];
                match stores
                    .users
                    .update_guarded(u.id, Some(role), None, true)
                    .await
                {
                    Ok(u) => Observation::Users(vec![(
                        user_idx(u.id).expect("world user"),
                        u.instance_role,
                        u.is_active,
                    )]),
                    Err(e) => Observation::Err(user_err(e)),
                }
            }
            RepoOp::UpdateGuarded {
                user,
                role,
                is_active,
                may_touch_owner,
            } => {
                let u = &world.users[user.index(nu)];
                match stores
                    .users
                    .update_guarded(u.id, role, is_active, may_touch_owner)
                    .await
                {
                    Ok(u) => Observation::Users(vec![(
                        user_idx(u.id).expect("world user"),
                        u.instance_role,
                        u.is_active,
                    )]),
                    Err(e) => Observation::Err(user_err(e)),
                }
            }
            RepoOp::DeleteApp { app } => {
                match stores.apps.delete(world.apps[app.index(na)].id).await {
                    Ok(()) => Observation::Done,
                    Err(e) => Observation::Err(app_err(e)),
                }
            }
            RepoOp::GetApp { app } => match stores.apps.get(world.apps[app.index(na)].id).await {
                Ok(a) => Observation::App(a.and_then(|a| app_idx(a.id))),
                Err(e) => Observation::Err(app_err(e)),
            },
            RepoOp::ResolveSlug { app } => {
                match stores
                    .apps
                    .resolve(world.apps[app.index(na)].slug.as_str())
                    .await
                {
                    Ok(a) => Observation::App(a.and_then(|a| app_idx(a.id))),
                    Err(e) => Observation::Err(app_err(e)),
                }
            }
            RepoOp::CreateAppWithTakenSlug { app } => {
                let a = &world.apps[app.index(na)];
                // Taken unless the app was deleted; then the create succeeds
                // and the new app stays outside the world.
                match stores
                    .apps
                    .create(NewApp::new(
                        a.slug.clone(),
                        crate::testkit::display_name("dup"),
                    ))
                    .await
                {
                    Ok(_) => Observation::Done,
                    Err(e) => Observation::Err(app_err(e)),
                }
            }
            RepoOp::CreateUserWithTakenName { user } => {
                let u = &world.users[user.index(nu)];
                let new = NewAdminUser::new(
                    crate::testkit::username(u.username.clone()),
                    InstanceRole::Member,
                );
                match stores.users.create(new).await {
                    Ok(_) => Observation::Done,
                    Err(e) => Observation::Err(user_err(e)),
                }
            }
            RepoOp::ListUsers => match stores.users.list().await {
                Ok(users) => Observation::Users(
                    users
                        .into_iter()
                        .filter_map(|u| user_idx(u.id).map(|i| (i, u.instance_role, u.is_active)))
                        .collect(),
                ),
                Err(e) => Observation::Err(user_err(e)),
            },
            RepoOp::ListApps => match stores.apps.list().await {
                Ok(apps) => apps_obs(apps),
                Err(e) => Observation::Err(app_err(e)),
            },
            RepoOp::CountActiveOwners => match stores.users.count_active_owners().await {
                // Only meaningful on a store holding just this world; the
                // differential test uses fresh stores.
                Ok(n) => Observation::Count(n),
                Err(e) => Observation::Err(user_err(e)),
            },
        };
        out.push(obs);
    }
    out
}
