//! Random sequences of grant / change-role / remove calls through the
//! [`MembershipService`], checked call by call against a simple model of the
//! expected outcome, then checked on the final member list.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::sample::Index;

use crate::domain::{AppRole, InstanceRole, Principal};
use crate::ids::AdminUserId;
use crate::members::{MembershipError, MembershipService};
use crate::stores::Stores;

use super::model;
use super::world::{World, arb_app_role};

/// Who a call targets: a user of the world, or an id nobody has.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// The user at this index (modulo the number of users).
    User(Index),
    /// An unknown user id.
    Unknown,
}

/// One call through the service, made by the caller at `by` (an index).
#[derive(Debug, Clone, Copy)]
pub enum ServiceOp {
    /// `grant(target, role)`.
    Grant {
        /// The caller.
        by: Index,
        /// The target.
        target: Target,
        /// The role to grant.
        role: AppRole,
    },
    /// `change_role(target, role)`.
    ChangeRole {
        /// The caller.
        by: Index,
        /// The target.
        target: Target,
        /// The new role.
        role: AppRole,
    },
    /// `remove(target)`.
    Remove {
        /// The caller.
        by: Index,
        /// The target.
        target: Target,
    },
}

/// The outcome of a call, stripped of ids and timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Success; for grant and change, the resulting role.
    Ok(Option<AppRole>),
    /// `UserNotFound`.
    UserNotFound,
    /// `MembershipNotFound`.
    MembershipNotFound,
    /// `AlreadyMember`.
    AlreadyMember,
    /// `TargetInactive`.
    TargetInactive,
    /// `TargetNotMember`.
    TargetNotMember,
    /// `Forbidden`.
    Forbidden,
    /// Anything else (never expected).
    Other,
}

fn arb_target() -> impl Strategy<Value = Target> {
    prop_oneof![9 => any::<Index>().prop_map(Target::User), 1 => Just(Target::Unknown)]
}

/// A sequence of up to 24 service calls.
pub fn arb_service_ops() -> impl Strategy<Value = Vec<ServiceOp>> {
    let op = prop_oneof![
        (any::<Index>(), arb_target(), arb_app_role())
            .prop_map(|(by, target, role)| ServiceOp::Grant { by, target, role }),
        (any::<Index>(), arb_target(), arb_app_role())
            .prop_map(|(by, target, role)| ServiceOp::ChangeRole { by, target, role }),
        (any::<Index>(), arb_target()).prop_map(|(by, target)| ServiceOp::Remove { by, target }),
    ];
    prop::collection::vec(op, 0..24)
}

fn outcome_of<T>(
    r: Result<T, MembershipError>,
    role: impl FnOnce(T) -> Option<AppRole>,
) -> Outcome {
    match r {
        Ok(v) => Outcome::Ok(role(v)),
        Err(MembershipError::UserNotFound(_)) => Outcome::UserNotFound,
        Err(MembershipError::MembershipNotFound) => Outcome::MembershipNotFound,
        Err(MembershipError::AlreadyMember { .. }) => Outcome::AlreadyMember,
        Err(MembershipError::TargetInactive { .. }) => Outcome::TargetInactive,
        Err(MembershipError::TargetNotMember { .. }) => Outcome::TargetNotMember,
        Err(MembershipError::Forbidden) => Outcome::Forbidden,
        Err(_) => Outcome::Other,
    }
}

/// Runs `ops` on the world's first app through the service and checks every
/// outcome, and the final member list, against the model. Panics on the first
/// disagreement.
pub async fn check_service_agrees_with_model(stores: &Stores, world: &World, ops: &[ServiceOp]) {
    let service = MembershipService::new(stores.clone());
    let app = &world.apps[0];
    let n = world.users.len();
    // The model's state: explicit roles on app 0, by user index.
    let mut rows: BTreeMap<usize, AppRole> = world
        .explicit
        .iter()
        .filter(|((_, a), _)| *a == 0)
        .map(|((u, _), r)| (*u, *r))
        .collect();
    let unknown = AdminUserId::new();
    for (step, op) in ops.iter().enumerate() {
        let (by, target) = match *op {
            ServiceOp::Grant { by, target, .. }
            | ServiceOp::ChangeRole { by, target, .. }
            | ServiceOp::Remove { by, target } => (by.index(n), target),
        };
        let caller: Principal = Principal::of(&world.users[by]);
        let may = model::allowed(
            &caller,
            rows.get(&by).copied(),
            crate::Capability::AppAdmin(app.id),
        );
        let target_idx = match target {
            Target::User(i) => Some(i.index(n)),
            Target::Unknown => None,
        };
        let target_id = target_idx.map_or(unknown, |i| world.users[i].id);
        let slug = app.slug.as_str();

        let (expected, got) = match *op {
            ServiceOp::Grant { role, .. } => {
                let expected = if !may {
                    Outcome::Forbidden
                } else {
                    match target_idx {
                        None => Outcome::UserNotFound,
                        Some(t) if !world.users[t].is_active => Outcome::TargetInactive,
                        Some(t) if world.users[t].instance_role != InstanceRole::Member => {
                            Outcome::TargetNotMember
                        }
                        Some(t) if rows.contains_key(&t) => Outcome::AlreadyMember,
                        Some(t) => {
                            rows.insert(t, role);
                            Outcome::Ok(Some(role))
                        }
                    }
                };
                let got = service.grant(&caller, slug, target_id, role).await;
                (expected, outcome_of(got, |d| Some(d.role)))
            }
            ServiceOp::ChangeRole { role, .. } => {
                let expected = if !may {
                    Outcome::Forbidden
                } else {
                    match target_idx {
                        None => Outcome::UserNotFound,
                        Some(t) => match rows.get_mut(&t) {
                            None => Outcome::MembershipNotFound,
                            Some(r) => {
                                *r = role;
                                Outcome::Ok(Some(role))
                            }
                        },
                    }
                };
                let got = service.change_role(&caller, slug, target_id, role).await;
                (expected, outcome_of(got, |d| Some(d.role)))
            }
            ServiceOp::Remove { .. } => {
                let expected = if !may {
                    Outcome::Forbidden
                } else {
                    if let Some(t) = target_idx {
                        rows.remove(&t);
                    }
                    Outcome::Ok(None)
                };
                let got = service.remove(&caller, slug, target_id).await;
                (expected, outcome_of(got, |()| None))
            }
        };
        assert_eq!(got, expected, "step {step}: {op:?} by user {by}");
    }

    // The final list, read as the store's own members list, matches the model.
    let listed: BTreeMap<usize, AppRole> = stores
        .members
        .list_for_app_enriched(app.id)
        .await
        .expect("list members")
        .into_iter()
        .map(|d| {
            let i = world
                .users
                .iter()
                .position(|u| u.id == d.user_id)
                .expect("known user");
            (i, d.role)
        })
        .collect();
    assert_eq!(listed, rows, "final member list");
}
