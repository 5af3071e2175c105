//! The owner guards of a user change, written once: the instance must always
//! keep at least one active owner, and a caller without the right to change
//! owners never changes one.
//!
//! A pure decision, no I/O. Each store calls [`check_user_change`] on the
//! rows as they are when the change applies (the memory store under its
//! write lock, the PostgreSQL store on the rows it locked in the
//! transaction that makes the change), so the rule lives here and the
//! atomicity in the store. See
//! [`AdminUserRepository::update_guarded`](crate::ports::AdminUserRepository::update_guarded).

use super::InstanceRole;

/// A user's instance role and active flag: all the owner guards look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerStanding {
    /// Their role on the instance.
    pub instance_role: InstanceRole,
    /// Whether they are active.
    pub is_active: bool,
}

impl OwnerStanding {
    /// A standing of `instance_role`, active or not.
    pub const fn new(instance_role: InstanceRole, is_active: bool) -> Self {
        Self {
            instance_role,
            is_active,
        }
    }

    /// Whether this is an active owner: the instance must always keep one.
    pub fn is_active_owner(self) -> bool {
        self.is_active && self.instance_role == InstanceRole::Owner
    }
}

/// A change of a user's instance role and/or active flag; `None` leaves a
/// field as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UserChange {
    /// The new instance role, if it changes.
    pub instance_role: Option<InstanceRole>,
    /// The new active flag, if it changes.
    pub is_active: Option<bool>,
}

impl UserChange {
    /// Whether nothing is asked (both fields `None`).
    pub fn is_empty(self) -> bool {
        self.instance_role.is_none() && self.is_active.is_none()
    }

    /// The standing `current` would have after this change.
    pub fn applied_to(self, current: OwnerStanding) -> OwnerStanding {
        OwnerStanding {
            instance_role: self.instance_role.unwrap_or(current.instance_role),
            is_active: self.is_active.unwrap_or(current.is_active),
        }
    }
}

/// Why [`check_user_change`] refused a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OwnerGuardRefusal {
    /// The target is an owner (active or not), and the caller may not
    /// change owners.
    #[error("the target is an owner")]
    TargetIsOwner,
    /// The change would leave the instance without an active owner.
    #[error("the last active owner cannot be demoted or deactivated")]
    LastOwner,
}

/// Whether applying `change` to a user who is `target` now would leave the
/// instance without an active owner, when `other_active_owners` other users
/// (the target not counted) are active owners.
pub fn leaves_no_active_owner(
    target: OwnerStanding,
    change: UserChange,
    other_active_owners: usize,
) -> bool {
    target.is_active_owner()
        && !change.applied_to(target).is_active_owner()
        && other_active_owners == 0
}

/// Decides whether `change` may apply to a user who is `target` now, with
/// `other_active_owners` active owners besides the target, counted on the
/// same state the change applies to. Checked in this order:
///
/// 1. without `may_touch_owner`, a non-empty change of an owner, active or
///    not, is [`OwnerGuardRefusal::TargetIsOwner`] (an empty change is never
///    refused);
/// 2. a change that would leave no active owner is
///    [`OwnerGuardRefusal::LastOwner`] (see [`leaves_no_active_owner`]).
pub fn check_user_change(
    target: OwnerStanding,
    change: UserChange,
    may_touch_owner: bool,
    other_active_owners: usize,
) -> Result<(), OwnerGuardRefusal> {
    if !change.is_empty() && !may_touch_owner && target.instance_role == InstanceRole::Owner {
        return Err(OwnerGuardRefusal::TargetIsOwner);
    }
    if leaves_no_active_owner(target, change, other_active_owners) {
        return Err(OwnerGuardRefusal::LastOwner);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLES: [Option<InstanceRole>; 4] = [
        None,
        Some(InstanceRole::Owner),
        Some(InstanceRole::Admin),
        Some(InstanceRole::Member),
    ];
    const FLAGS: [Option<bool>; 3] = [None, Some(true), Some(false)];

    fn every_change() -> impl Iterator<Item = UserChange> {
        ROLES.into_iter().flat_map(|instance_role| {
            FLAGS.into_iter().map(move |is_active| UserChange {
                instance_role,
                is_active,
            })
        })
    }

    fn every_standing() -> impl Iterator<Item = OwnerStanding> {
        InstanceRole::ALL
            .into_iter()
            .flat_map(|r| [true, false].map(|a| OwnerStanding::new(r, a)))
    }

    #[test]
    fn the_last_active_owner_is_never_demoted_or_deactivated() {
        let last = OwnerStanding::new(InstanceRole::Owner, true);
        for change in every_change() {
            let keeps = change.applied_to(last).is_active_owner();
            let got = check_user_change(last, change, true, 0);
            if keeps {
                assert_eq!(got, Ok(()), "{change:?}");
            } else {
                assert_eq!(got, Err(OwnerGuardRefusal::LastOwner), "{change:?}");
            }
            // With another active owner, any change of it is fine.
            assert_eq!(
                check_user_change(last, change, true, 1),
                Ok(()),
                "{change:?}"
            );
        }
        let demote = UserChange {
            instance_role: Some(InstanceRole::Admin),
            is_active: None,
        };
        let deactivate = UserChange {
            instance_role: None,
            is_active: Some(false),
        };
        assert!(leaves_no_active_owner(last, demote, 0));
        assert!(leaves_no_active_owner(last, deactivate, 0));
        assert!(!leaves_no_active_owner(last, deactivate, 2));
        assert!(!leaves_no_active_owner(last, UserChange::default(), 0));
    }

    #[test]
    fn a_user_who_is_no_active_owner_never_hits_the_last_owner_rule() {
        // An inactive owner, an admin or a member: the active owners (if any)
        // stay as they are, whatever the change.
        for target in every_standing().filter(|s| !s.is_active_owner()) {
            for change in every_change() {
                assert!(
                    !leaves_no_active_owner(target, change, 0),
                    "{target:?} {change:?}"
                );
                assert_eq!(check_user_change(target, change, true, 0), Ok(()));
            }
        }
    }

    #[test]
    fn without_owner_rights_no_owner_is_changed() {
        for target in every_standing() {
            for change in every_change() {
                for others in [0, 1] {
                    let got = check_user_change(target, change, false, others);
                    let owner = target.instance_role == InstanceRole::Owner;
                    if owner && !change.is_empty() {
                        // Checked before the last-owner rule.
                        assert_eq!(got, Err(OwnerGuardRefusal::TargetIsOwner));
                    } else {
                        // Not an owner, or nothing asked: only the last-owner
                        // rule can refuse, as with the right.
                        assert_eq!(got, check_user_change(target, change, true, others));
                    }
                }
            }
        }
        let empty = UserChange::default();
        let last = OwnerStanding::new(InstanceRole::Owner, true);
        assert_eq!(check_user_change(last, empty, false, 0), Ok(()));
    }
}
