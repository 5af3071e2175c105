//! Conformance cases of the users port,
//! [`AdminUserRepository`](crate::ports::AdminUserRepository).
//!
//! Also the guarded updates under concurrency: an active owner always remains.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::task::JoinSet;

use crate::domain::{InstanceRole, NewAdminUser};
use crate::ids::AdminUserId;
use crate::ports::AdminUserRepoError;
use crate::stores::Stores;
use crate::testkit::Fixture;

use super::only;

/// The cases of this module, in order: `users => case, ...`, handed to
/// `$callback` after `$args`. `__conformance_ports!` calls it: the
/// conformance module re-exports exactly these functions, and
/// [`conformance_tests!`](crate::conformance_tests) runs exactly these.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_users_cases {
    ($($callback:ident)::+; $($args:tt)*) => {
        $($callback)::+! { $($args)* users =>
            users_create_then_get_and_find,
            users_duplicate_username_is_conflict,
            users_credentials_carry_the_password_hash,
            users_list_is_ordered_and_includes_inactive,
            users_set_active_and_role_round_trip,
            users_updates_of_missing_user_are_not_found,
            users_count_active_owners,
            users_update_guarded_keeps_an_active_owner,
            users_update_guarded_without_owner_rights_never_changes_an_owner,
            concurrent_promotion_and_restricted_deactivation_never_change_an_owner,
            concurrent_demotions_of_the_last_two_owners_leave_one,
            concurrent_promotions_and_demotions_never_fail_or_lose_every_owner,
        }
    };
}

/// A created user reads back identically by id and by username.
pub async fn users_create_then_get_and_find(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let mut new = NewAdminUser::new(
        crate::testkit::username(format!("{}-ann", fx.tag())),
        InstanceRole::Admin,
    );
    new.email = Some(crate::testkit::email("ann@example.com"));
    let user = stores.users.create(new.clone()).await.unwrap();
    assert_eq!(user, new.to_user());
    assert_eq!(stores.users.get(user.id).await.unwrap(), Some(user.clone()));
    assert_eq!(
        stores.users.find_by_username(&user.username).await.unwrap(),
        Some(user.clone())
    );
    assert_eq!(stores.users.get(AdminUserId::new()).await.unwrap(), None);
    assert_eq!(
        stores.users.find_by_username("nobody-here").await.unwrap(),
        None
    );
}

/// A taken username is `Conflict`.
pub async fn users_duplicate_username_is_conflict(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let user = fx.user("bob", InstanceRole::Member).await;
    let err = stores
        .users
        .create(NewAdminUser::new(
            crate::testkit::username(user.username.clone()),
            InstanceRole::Owner,
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AdminUserRepoError::Conflict(_)),
        "got {err:?}"
    );
    let kept = stores.users.get(user.id).await.unwrap().unwrap();
    assert_eq!(kept.instance_role, InstanceRole::Member);
}

/// `credentials` returns the stored hash, and `set_password_hash` replaces it.
pub async fn users_credentials_carry_the_password_hash(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let mut new = NewAdminUser::new(
        crate::testkit::username(format!("{}-carol", fx.tag())),
        InstanceRole::Member,
    );
    new.password_hash = Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into());
    let user = stores.users.create(new.clone()).await.unwrap();
    let creds = stores
        .users
        .credentials(&user.username)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(creds.user, user);
    assert_eq!(creds.password_hash, new.password_hash);
    stores
        .users
        .set_password_hash(user.id, Some("other".into()))
        .await
        .unwrap();
    let creds = stores
        .users
        .credentials(&user.username)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(creds.password_hash.as_deref(), Some("other"));
    assert_eq!(stores.users.credentials("nobody-here").await.unwrap(), None);
}

/// `list` includes inactive users and is ordered by username, byte-wise.
pub async fn users_list_is_ordered_and_includes_inactive(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let b = fx.user("b", InstanceRole::Member).await;
    let upper = fx.user("Z", InstanceRole::Member).await;
    let a = fx.inactive_user("a", InstanceRole::Admin).await;
    let mine: HashSet<AdminUserId> = [a.id, b.id, upper.id].into();
    let listed = only(&stores.users.list().await.unwrap(), &mine, |u| u.id);
    // Byte order: 'Z' (0x5a) sorts before 'a' (0x61).
    assert_eq!(listed, vec![upper, a, b]);
}

/// Activity and instance role changes (through `update_guarded`, the only
/// way to make them) are stored and returned, each field on its own.
pub async fn users_set_active_and_role_round_trip(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let user = fx.user("dan", InstanceRole::Member).await;
    let off = stores
        .users
        .update_guarded(user.id, None, Some(false), true)
        .await
        .unwrap();
    assert!(!off.is_active);
    let promoted = stores
        .users
        .update_guarded(user.id, Some(InstanceRole::Admin), None, true)
        .await
        .unwrap();
    assert_eq!(promoted.instance_role, InstanceRole::Admin);
    assert!(!promoted.is_active);
    assert_eq!(stores.users.get(user.id).await.unwrap(), Some(promoted));
    assert!(
        stores
            .users
            .update_guarded(user.id, None, Some(true), true)
            .await
            .unwrap()
            .is_active
    );
}

/// Every update of an unknown user is `NotFound`.
pub async fn users_updates_of_missing_user_are_not_found(stores: Stores) {
    let ghost = AdminUserId::new();
    let e = stores
        .users
        .update_guarded(ghost, None, Some(false), true)
        .await
        .unwrap_err();
    assert!(matches!(e, AdminUserRepoError::NotFound), "got {e:?}");
    let e = stores
        .users
        .update_guarded(ghost, Some(InstanceRole::Owner), None, true)
        .await
        .unwrap_err();
    assert!(matches!(e, AdminUserRepoError::NotFound), "got {e:?}");
    let e = stores
        .users
        .set_password_hash(ghost, None)
        .await
        .unwrap_err();
    assert!(matches!(e, AdminUserRepoError::NotFound), "got {e:?}");
}

/// `count_active_owners` counts active owners only.
pub async fn users_count_active_owners(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let before = stores.users.count_active_owners().await.unwrap();
    fx.user("o1", InstanceRole::Owner).await;
    fx.inactive_user("o2", InstanceRole::Owner).await;
    fx.user("adm", InstanceRole::Admin).await;
    assert_eq!(
        stores.users.count_active_owners().await.unwrap(),
        before + 1
    );
}

/// `update_guarded` changes role and flag together, and refuses to leave the
/// instance without an active owner. Needs a fresh store (it counts owners).
pub async fn users_update_guarded_keeps_an_active_owner(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let users = &stores.users;
    assert_eq!(users.count_active_owners().await.unwrap(), 0, "fresh store");
    let a = fx.user("a", InstanceRole::Owner).await;
    // An inactive owner does not count.
    let dormant = fx.inactive_user("dormant", InstanceRole::Owner).await;
    for (role, active) in [
        (Some(InstanceRole::Admin), None),
        (Some(InstanceRole::Member), Some(true)),
        (None, Some(false)),
    ] {
        let err = users
            .update_guarded(a.id, role, active, true)
            .await
            .unwrap_err();
        assert!(
            matches!(err, AdminUserRepoError::LastOwner),
            "{role:?}/{active:?}: {err:?}"
        );
    }
    let unchanged = users.get(a.id).await.unwrap().unwrap();
    assert_eq!(
        (unchanged.instance_role, unchanged.is_active),
        (InstanceRole::Owner, true)
    );
    // No change, or one that keeps the owner an active owner, is fine.
    users.update_guarded(a.id, None, None, true).await.unwrap();
    users
        .update_guarded(a.id, Some(InstanceRole::Owner), Some(true), true)
        .await
        .unwrap();
    // With a second active owner, the first may go; then the second is last.
    let b = fx.user("b", InstanceRole::Member).await;
    let b = users
        .update_guarded(b.id, Some(InstanceRole::Owner), None, true)
        .await
        .unwrap();
    assert_eq!(b.instance_role, InstanceRole::Owner);
    let a = users
        .update_guarded(a.id, Some(InstanceRole::Admin), Some(false), true)
        .await
        .unwrap();
    assert_eq!((a.instance_role, a.is_active), (InstanceRole::Admin, false));
    let err = users
        .update_guarded(b.id, None, Some(false), true)
        .await
        .unwrap_err();
    assert!(matches!(err, AdminUserRepoError::LastOwner), "{err:?}");
    // Reactivating the dormant owner frees b.
    users
        .update_guarded(dormant.id, None, Some(true), true)
        .await
        .unwrap();
    users
        .update_guarded(b.id, Some(InstanceRole::Member), None, true)
        .await
        .unwrap();
    assert_eq!(users.count_active_owners().await.unwrap(), 1);
    let err = users
        .update_guarded(AdminUserId::new(), None, Some(false), true)
        .await
        .unwrap_err();
    assert!(matches!(err, AdminUserRepoError::NotFound), "{err:?}");
}

/// Without `may_touch_owner`, no change of an owner (active or not) applies:
/// each is `TargetIsOwner`, checked after `NotFound` and before `LastOwner`;
/// an empty change and changes of non-owners pass. Needs a fresh store.
pub async fn users_update_guarded_without_owner_rights_never_changes_an_owner(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let users = &stores.users;
    let last = fx.user("last", InstanceRole::Owner).await;
    let dormant = fx.inactive_user("dormant", InstanceRole::Owner).await;
    for owner in [&last, &dormant] {
        for (role, active) in [
            (None, Some(false)),
            (None, Some(true)),
            (Some(InstanceRole::Admin), None),
            (Some(InstanceRole::Owner), Some(true)),
        ] {
            let err = users
                .update_guarded(owner.id, role, active, false)
                .await
                .unwrap_err();
            assert!(
                matches!(err, AdminUserRepoError::TargetIsOwner),
                "{}: {role:?}/{active:?}: {err:?}",
                owner.username
            );
        }
        let unchanged = users.get(owner.id).await.unwrap().unwrap();
        assert_eq!(&unchanged, owner);
        // Nothing asked, nothing refused.
        let same = users
            .update_guarded(owner.id, None, None, false)
            .await
            .unwrap();
        assert_eq!(&same, owner);
    }
    let err = users
        .update_guarded(AdminUserId::new(), None, Some(false), false)
        .await
        .unwrap_err();
    assert!(matches!(err, AdminUserRepoError::NotFound), "{err:?}");
    // Non-owners are changed as usual.
    let adm = fx.user("adm", InstanceRole::Admin).await;
    let adm = users
        .update_guarded(adm.id, None, Some(false), false)
        .await
        .unwrap();
    assert!(!adm.is_active);
    let adm = users
        .update_guarded(adm.id, Some(InstanceRole::Member), Some(true), false)
        .await
        .unwrap();
    assert_eq!(
        (adm.instance_role, adm.is_active),
        (InstanceRole::Member, true)
    );
    // With the right, the last owner's guard still holds.
    let err = users
        .update_guarded(last.id, None, Some(false), true)
        .await
        .unwrap_err();
    assert!(matches!(err, AdminUserRepoError::LastOwner), "{err:?}");
}

/// A member is promoted to owner (and activated) while a caller without
/// `may_touch_owner` deactivates it, round after round: the deactivation
/// either applies before the promotion (its result is no owner, and the
/// promotion reactivates) or is refused with `TargetIsOwner`. An owner is
/// never left deactivated. Needs a fresh store.
pub async fn concurrent_promotion_and_restricted_deactivation_never_change_an_owner(
    stores: Stores,
) {
    let fx = Fixture::new(stores.clone());
    fx.user("keeper", InstanceRole::Owner).await;
    let target = fx.user("target", InstanceRole::Member).await.id;
    let (mut applied, mut refused) = (0, 0);
    for round in 0..50 {
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let promote = {
            let (stores, barrier) = (stores.clone(), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                stores
                    .users
                    .update_guarded(target, Some(InstanceRole::Owner), Some(true), true)
                    .await
            })
        };
        let deactivate = {
            let (stores, barrier) = (stores.clone(), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                stores
                    .users
                    .update_guarded(target, None, Some(false), false)
                    .await
            })
        };
        let promoted = promote.await.unwrap().expect("the promotion succeeds");
        assert_eq!(promoted.instance_role, InstanceRole::Owner, "round {round}");
        match deactivate.await.unwrap() {
            Ok(u) => {
                assert_ne!(u.instance_role, InstanceRole::Owner, "round {round}: {u:?}");
                applied += 1;
            }
            Err(AdminUserRepoError::TargetIsOwner) => refused += 1,
            Err(other) => panic!("round {round}: {other:?}"),
        }
        let now = stores.users.get(target).await.unwrap().unwrap();
        assert_eq!(
            (now.instance_role, now.is_active),
            (InstanceRole::Owner, true),
            "round {round}: an owner was changed"
        );
        stores
            .users
            .update_guarded(target, Some(InstanceRole::Member), Some(true), true)
            .await
            .unwrap();
    }
    assert_eq!(applied + refused, 50);
}

/// Two owners left, and each is demoted (or deactivated) by a concurrent
/// call: exactly one call succeeds and one owner remains, round after round.
/// Needs a fresh store.
pub async fn concurrent_demotions_of_the_last_two_owners_leave_one(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let mut survivor = fx.user("owner-0", InstanceRole::Owner).await;
    for round in 1..=20 {
        let newcomer = fx
            .user(&format!("owner-{round}"), InstanceRole::Owner)
            .await;
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let mut set = JoinSet::new();
        for (user, role, active) in [
            (survivor.id, Some(InstanceRole::Admin), None),
            (newcomer.id, None, Some(false)),
        ] {
            let (stores, barrier) = (stores.clone(), Arc::clone(&barrier));
            set.spawn(async move {
                barrier.wait().await;
                (
                    user,
                    stores.users.update_guarded(user, role, active, true).await,
                )
            });
        }
        let mut ok = Vec::new();
        let mut refused = 0;
        while let Some(joined) = set.join_next().await {
            match joined.unwrap() {
                (user, Ok(_)) => ok.push(user),
                (_, Err(AdminUserRepoError::LastOwner)) => refused += 1,
                (_, Err(other)) => panic!("round {round}: {other:?}"),
            }
        }
        assert_eq!((ok.len(), refused), (1, 1), "round {round}");
        assert_eq!(
            stores.users.count_active_owners().await.unwrap(),
            1,
            "round {round}"
        );
        // The one that was not changed is the owner left.
        survivor = if ok[0] == survivor.id {
            newcomer
        } else {
            survivor
        };
        let left = stores.users.get(survivor.id).await.unwrap().unwrap();
        assert_eq!(
            (left.instance_role, left.is_active),
            (InstanceRole::Owner, true)
        );
    }
}

/// Promotions, demotions and deactivations of overlapping users, all at
/// once: each call succeeds or is refused with `LastOwner` (never a backend
/// error such as a deadlock), and an active owner always remains.
pub async fn concurrent_promotions_and_demotions_never_fail_or_lose_every_owner(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let mut users = vec![fx.user("o-0", InstanceRole::Owner).await];
    for i in 1..6 {
        users.push(fx.user(&format!("u-{i}"), InstanceRole::Member).await);
    }
    let changes = [
        (Some(InstanceRole::Owner), None),
        (Some(InstanceRole::Member), None),
        (None, Some(false)),
        (Some(InstanceRole::Owner), Some(true)),
        (None, Some(true)),
        (Some(InstanceRole::Admin), None),
    ];
    for round in 0..10 {
        let barrier = Arc::new(tokio::sync::Barrier::new(12));
        let mut set = JoinSet::new();
        for k in 0..12 {
            let user = users[(k * 5 + round) % users.len()].id;
            let (role, active) = changes[(k + round * 7) % changes.len()];
            let (stores, barrier) = (stores.clone(), Arc::clone(&barrier));
            set.spawn(async move {
                barrier.wait().await;
                stores.users.update_guarded(user, role, active, true).await
            });
        }
        while let Some(joined) = set.join_next().await {
            match joined.unwrap() {
                Ok(_) | Err(AdminUserRepoError::LastOwner) => {}
                Err(other) => panic!("round {round}: {other:?}"),
            }
        }
        let owners = stores.users.count_active_owners().await.unwrap();
        assert!(owners >= 1, "round {round}: no active owner left");
    }
}
