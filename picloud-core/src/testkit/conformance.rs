//! The public conformance suite: the observable contract of every port.
//!
//! Each case is a public `async fn(Stores)` that panics on a violation, and
//! asserts on error *variants*, not just on "is an error". A store crate runs
//! them all with one macro call in a test file:
//!
//! ```ignore
//! // tests/conformance.rs of a store crate. Needs tokio (macros,
//! // rt-multi-thread) as a dev-dependency.
//! async fn stores() -> Option<picloud_core::Stores> {
//!     Some(my_store::MyStore::new().into_stores())
//! }
//! picloud_core::conformance_tests!(stores);
//! ```
//!
//! The factory returns `None` to skip (say why on stderr: a store that needs
//! a server it cannot reach, for instance). Each case expects a fresh, empty
//! store from the factory, though most also work on a shared one.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::task::JoinSet;

use crate::authz::{self, AuthzDenied, Capability};
use crate::domain::{
    ApiToken, AppRole, InstanceRole, InvocationRecord, NewAdminUser, NewApiToken, NewApp,
    ScriptName, Slug, TokenScope,
};
use crate::ids::{AdminUserId, AppId, TokenId};
use crate::members::{MembershipError, MembershipService};
use crate::ports::{
    AdminUserRepoError, AppMembersRepoError, AppRepoError, INVOCATION_BYTES_PER_APP,
    INVOCATION_BYTES_PER_SCRIPT, INVOCATION_RECORD_MAX_BYTES, INVOCATIONS_KEPT, QuotaExceeded,
    ScriptRepoError, StorageQuota, TokenRepoError,
};
use crate::stores::Stores;

use super::Fixture;

/// Expands to one `#[tokio::test]` per conformance case, each calling
/// `$factory().await` (an `async fn() -> Option<Stores>`) for a fresh store.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:path) => {
        $crate::__conformance_cases!($factory;
            apps_create_then_get_and_find_by_slug,
            apps_duplicate_slug_is_conflict,
            apps_missing_are_none,
            apps_list_is_ordered_by_slug,
            apps_list_for_member_is_explicit_memberships_only,
            apps_delete_cascades_memberships,
            apps_delete_missing_is_not_found,
            apps_resolve_by_id_or_slug,
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
            timestamps_round_trip_exactly,
            members_try_insert_creates_a_row,
            members_try_insert_never_overwrites,
            members_try_insert_needs_existing_app_and_user,
            members_update_role_changes_an_existing_row,
            members_update_role_never_creates,
            members_upsert_inserts_then_overwrites,
            members_upsert_needs_existing_app_and_user,
            members_remove_is_idempotent,
            members_find_returns_the_row_or_none,
            members_list_joins_users_and_includes_inactive,
            members_list_is_ordered_by_username,
            members_list_is_scoped_to_the_app,
            authz_app_role_follows_memberships,
            authz_require_follows_the_table,
            concurrent_try_insert_gives_exactly_one_row,
            update_role_racing_remove_never_resurrects,
            concurrent_grants_through_the_service_give_one_success,
            service_grant_change_remove_round_trip,
            service_refuses_non_app_admins,
            tokens_create_then_find_by_hash_with_user,
            tokens_find_sees_user_changes_at_once,
            tokens_need_existing_user_and_app,
            tokens_duplicate_hash_is_conflict,
            tokens_list_and_revoke,
            tokens_scoped_to_a_deleted_app_are_gone,
            tokens_expired_are_refused_then_purged_by_a_later_create,
            scripts_deploy_creates_then_appends_versions,
            scripts_deploy_needs_an_existing_app,
            scripts_rollback_sets_live_and_keeps_every_version,
            scripts_list_by_name_within_the_app,
            scripts_all_live_returns_the_live_versions,
            scripts_concurrent_deploys_get_distinct_versions,
            scripts_app_limits_round_trip,
            scripts_go_with_their_app,
            scripts_quota_refuses_the_deploy_that_would_pass_it,
            scripts_concurrent_deploys_never_pass_the_quota,
            scripts_delete_frees_the_quota_and_is_idempotent,
            invocations_recent_newest_first_and_bounded,
            invocations_of_unknown_scripts_are_dropped,
            invocations_keep_the_newest_within_the_byte_bounds,
            invocations_app_bound_spares_other_apps,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($factory:path; $($case:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                if let Some(stores) = $factory().await {
                    $crate::testkit::conformance::$case(stores).await;
                }
            }
        )+
    };
}

fn slug(s: &str) -> Slug {
    Slug::parse(s).expect("valid slug")
}

/// Only the items of `all` that are in `mine`, in `all`'s order.
fn only<T: Clone, K: Eq + std::hash::Hash>(
    all: &[T],
    mine: &HashSet<K>,
    key: impl Fn(&T) -> K,
) -> Vec<T> {
    all.iter()
        .filter(|x| mine.contains(&key(x)))
        .cloned()
        .collect()
}

// ---------------------------------------------------------------- apps

/// A created app reads back identically by id and by slug.
pub async fn apps_create_then_get_and_find_by_slug(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = fx.app("alpha").await;
    assert_eq!(stores.apps.get(app.id).await.unwrap(), Some(app.clone()));
    assert_eq!(
        stores.apps.find_by_slug(app.slug.as_str()).await.unwrap(),
        Some(app.clone())
    );
}

/// A second app with a taken slug is `Conflict`, and the first is untouched.
pub async fn apps_duplicate_slug_is_conflict(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = fx.app("dup").await;
    let err = stores
        .apps
        .create(NewApp::new(app.slug.clone(), "other"))
        .await
        .unwrap_err();
    assert!(matches!(err, AppRepoError::Conflict(_)), "got {err:?}");
    assert_eq!(stores.apps.get(app.id).await.unwrap().unwrap().name, "dup");
}

/// Unknown ids and slugs read as `None`, not as errors.
pub async fn apps_missing_are_none(stores: Stores) {
    assert_eq!(stores.apps.get(AppId::new()).await.unwrap(), None);
    assert_eq!(stores.apps.find_by_slug("no-such-app").await.unwrap(), None);
    assert_eq!(stores.apps.resolve("no-such-app").await.unwrap(), None);
    assert_eq!(
        stores
            .apps
            .resolve(&AppId::new().to_string())
            .await
            .unwrap(),
        None
    );
}

/// `list` is ordered by slug.
pub async fn apps_list_is_ordered_by_slug(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let c = fx.app("c").await;
    let a = fx.app("a").await;
    let b = fx.app("b").await;
    let mine: HashSet<AppId> = [a.id, b.id, c.id].into();
    let listed = only(&stores.apps.list().await.unwrap(), &mine, |x| x.id);
    assert_eq!(listed, vec![a, b, c]);
}

/// `list_for_member` returns exactly the apps with an explicit row, by slug.
pub async fn apps_list_for_member_is_explicit_memberships_only(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let user = fx.user("m", InstanceRole::Member).await;
    let other = fx.user("o", InstanceRole::Member).await;
    let b = fx.app("b").await;
    let a = fx.app("a").await;
    let _c = fx.app("c").await;
    let x = fx.app("x").await;
    stores
        .members
        .try_insert(b.id, user.id, AppRole::Viewer)
        .await
        .unwrap();
    stores
        .members
        .try_insert(a.id, user.id, AppRole::AppAdmin)
        .await
        .unwrap();
    stores
        .members
        .try_insert(x.id, other.id, AppRole::Editor)
        .await
        .unwrap();
    let apps = stores.apps.list_for_member(user.id).await.unwrap();
    assert_eq!(apps, vec![(a, AppRole::AppAdmin), (b, AppRole::Viewer)]);
    assert!(
        stores
            .apps
            .list_for_member(AdminUserId::new())
            .await
            .unwrap()
            .is_empty()
    );
}

/// Deleting an app deletes its memberships and frees its slug.
pub async fn apps_delete_cascades_memberships(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let user = fx.user("m", InstanceRole::Member).await;
    let app = fx.app("gone").await;
    let kept = fx.app("kept").await;
    stores
        .members
        .try_insert(app.id, user.id, AppRole::Editor)
        .await
        .unwrap();
    stores
        .members
        .try_insert(kept.id, user.id, AppRole::Viewer)
        .await
        .unwrap();
    stores.apps.delete(app.id).await.unwrap();
    assert_eq!(stores.apps.get(app.id).await.unwrap(), None);
    assert_eq!(stores.members.find(app.id, user.id).await.unwrap(), None);
    assert_eq!(stores.authz.app_role(app.id, user.id).await.unwrap(), None);
    assert_eq!(
        stores.apps.list_for_member(user.id).await.unwrap(),
        vec![(kept.clone(), AppRole::Viewer)]
    );
    assert!(
        stores
            .members
            .find(kept.id, user.id)
            .await
            .unwrap()
            .is_some()
    );
    // The slug is free again.
    stores
        .apps
        .create(NewApp::new(app.slug.clone(), "again"))
        .await
        .unwrap();
}

/// Deleting an unknown app is `NotFound`.
pub async fn apps_delete_missing_is_not_found(stores: Stores) {
    let err = stores.apps.delete(AppId::new()).await.unwrap_err();
    assert!(matches!(err, AppRepoError::NotFound), "got {err:?}");
}

/// `resolve` finds an app by id or by slug, including a UUID-shaped slug.
pub async fn apps_resolve_by_id_or_slug(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = fx.app("resolve").await;
    assert_eq!(
        stores.apps.resolve(&app.id.to_string()).await.unwrap(),
        Some(app.clone())
    );
    assert_eq!(
        stores.apps.resolve(app.slug.as_str()).await.unwrap(),
        Some(app.clone())
    );
    // A valid slug that happens to parse as a UUID still resolves as a slug.
    let uuidish = uuid::Uuid::new_v4().to_string();
    let uuidish = format!("a{}", &uuidish[1..]);
    if let Ok(s) = Slug::parse(&uuidish) {
        let app = stores
            .apps
            .create(NewApp::new(s, "uuid-like"))
            .await
            .unwrap();
        assert_eq!(stores.apps.resolve(&uuidish).await.unwrap(), Some(app));
    }
}

// ---------------------------------------------------------------- users

/// A created user reads back identically by id and by username.
pub async fn users_create_then_get_and_find(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let mut new = NewAdminUser::new(format!("{}-ann", fx.tag()), InstanceRole::Admin);
    new.email = Some("ann@example.com".into());
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
            user.username.clone(),
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
    let mut new = NewAdminUser::new(format!("{}-carol", fx.tag()), InstanceRole::Member);
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

/// Activity and instance role changes are stored and returned.
pub async fn users_set_active_and_role_round_trip(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let user = fx.user("dan", InstanceRole::Member).await;
    let off = stores.users.set_active(user.id, false).await.unwrap();
    assert!(!off.is_active);
    let promoted = stores
        .users
        .set_instance_role(user.id, InstanceRole::Admin)
        .await
        .unwrap();
    assert_eq!(promoted.instance_role, InstanceRole::Admin);
    assert!(!promoted.is_active);
    assert_eq!(stores.users.get(user.id).await.unwrap(), Some(promoted));
    assert!(
        stores
            .users
            .set_active(user.id, true)
            .await
            .unwrap()
            .is_active
    );
}

/// Every update of an unknown user is `NotFound`.
pub async fn users_updates_of_missing_user_are_not_found(stores: Stores) {
    let ghost = AdminUserId::new();
    let e = stores.users.set_active(ghost, false).await.unwrap_err();
    assert!(matches!(e, AdminUserRepoError::NotFound), "got {e:?}");
    let e = stores
        .users
        .set_instance_role(ghost, InstanceRole::Owner)
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

/// Timestamps read back exactly as written (microsecond precision).
pub async fn timestamps_round_trip_exactly(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let new = NewApp::new(slug(&format!("{}-ts", fx.tag())), "ts");
    let created_at = new.created_at;
    let app = stores.apps.create(new).await.unwrap();
    assert_eq!(app.created_at, created_at);
    assert_eq!(
        stores.apps.get(app.id).await.unwrap().unwrap().created_at,
        created_at
    );
    let user = fx.user("ts", InstanceRole::Member).await;
    let row = stores
        .members
        .try_insert(app.id, user.id, AppRole::Viewer)
        .await
        .unwrap()
        .unwrap();
    let found = stores.members.find(app.id, user.id).await.unwrap().unwrap();
    assert_eq!(found.created_at, row.created_at);
}

// ---------------------------------------------------------------- members

/// `try_insert` on a new pair creates the row and returns it.
pub async fn members_try_insert_creates_a_row(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (user, app) = (fx.user("m", InstanceRole::Member).await, fx.app("a").await);
    let row = stores
        .members
        .try_insert(app.id, user.id, AppRole::Editor)
        .await
        .unwrap()
        .expect("a new row");
    assert_eq!(
        (row.app_id, row.user_id, row.role),
        (app.id, user.id, AppRole::Editor)
    );
    assert_eq!(
        stores.members.find(app.id, user.id).await.unwrap(),
        Some(row)
    );
}

/// `try_insert` on an existing pair returns `None` and keeps the old role.
pub async fn members_try_insert_never_overwrites(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (user, app) = (fx.user("m", InstanceRole::Member).await, fx.app("a").await);
    let first = stores
        .members
        .try_insert(app.id, user.id, AppRole::Viewer)
        .await
        .unwrap()
        .unwrap();
    let again = stores
        .members
        .try_insert(app.id, user.id, AppRole::AppAdmin)
        .await
        .unwrap();
    assert_eq!(again, None);
    assert_eq!(
        stores.members.find(app.id, user.id).await.unwrap(),
        Some(first)
    );
}

/// `try_insert` with an unknown app or user is `NotFound` (a foreign key).
pub async fn members_try_insert_needs_existing_app_and_user(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (user, app) = (fx.user("m", InstanceRole::Member).await, fx.app("a").await);
    let e = stores
        .members
        .try_insert(AppId::new(), user.id, AppRole::Viewer)
        .await
        .unwrap_err();
    assert!(matches!(e, AppMembersRepoError::NotFound), "got {e:?}");
    let e = stores
        .members
        .try_insert(app.id, AdminUserId::new(), AppRole::Viewer)
        .await
        .unwrap_err();
    assert!(matches!(e, AppMembersRepoError::NotFound), "got {e:?}");
    assert!(
        stores
            .members
            .list_for_app_enriched(app.id)
            .await
            .unwrap()
            .is_empty()
    );
}

/// `update_role` changes an existing row and keeps its creation time.
pub async fn members_update_role_changes_an_existing_row(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (user, app) = (fx.user("m", InstanceRole::Member).await, fx.app("a").await);
    let row = stores
        .members
        .try_insert(app.id, user.id, AppRole::Viewer)
        .await
        .unwrap()
        .unwrap();
    let updated = stores
        .members
        .update_role(app.id, user.id, AppRole::AppAdmin)
        .await
        .unwrap()
        .expect("the row exists");
    assert_eq!(updated.role, AppRole::AppAdmin);
    assert_eq!(updated.created_at, row.created_at);
    assert_eq!(
        stores.authz.app_role(app.id, user.id).await.unwrap(),
        Some(AppRole::AppAdmin)
    );
}

/// `update_role` without a row returns `None` and creates nothing.
pub async fn members_update_role_never_creates(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (user, app) = (fx.user("m", InstanceRole::Member).await, fx.app("a").await);
    let r = stores
        .members
        .update_role(app.id, user.id, AppRole::Editor)
        .await
        .unwrap();
    assert_eq!(r, None);
    assert_eq!(stores.members.find(app.id, user.id).await.unwrap(), None);
    // Unknown app or user: still just `None`.
    let r = stores
        .members
        .update_role(AppId::new(), AdminUserId::new(), AppRole::Editor)
        .await
        .unwrap();
    assert_eq!(r, None);
}

/// `upsert` inserts a missing row, then overwrites it.
pub async fn members_upsert_inserts_then_overwrites(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (user, app) = (fx.user("m", InstanceRole::Member).await, fx.app("a").await);
    let first = stores
        .members
        .upsert(app.id, user.id, AppRole::Viewer)
        .await
        .unwrap();
    assert_eq!(first.role, AppRole::Viewer);
    let second = stores
        .members
        .upsert(app.id, user.id, AppRole::Editor)
        .await
        .unwrap();
    assert_eq!(second.role, AppRole::Editor);
    assert_eq!(
        stores
            .members
            .list_for_app_enriched(app.id)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// `upsert` with an unknown app or user is `NotFound`.
pub async fn members_upsert_needs_existing_app_and_user(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (user, app) = (fx.user("m", InstanceRole::Member).await, fx.app("a").await);
    let e = stores
        .members
        .upsert(AppId::new(), user.id, AppRole::Viewer)
        .await
        .unwrap_err();
    assert!(matches!(e, AppMembersRepoError::NotFound), "got {e:?}");
    let e = stores
        .members
        .upsert(app.id, AdminUserId::new(), AppRole::Viewer)
        .await
        .unwrap_err();
    assert!(matches!(e, AppMembersRepoError::NotFound), "got {e:?}");
}

/// `remove` deletes the row; removing again (or a row that never existed) succeeds.
pub async fn members_remove_is_idempotent(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (user, app) = (fx.user("m", InstanceRole::Member).await, fx.app("a").await);
    stores
        .members
        .try_insert(app.id, user.id, AppRole::Editor)
        .await
        .unwrap();
    stores.members.remove(app.id, user.id).await.unwrap();
    assert_eq!(stores.members.find(app.id, user.id).await.unwrap(), None);
    stores.members.remove(app.id, user.id).await.unwrap();
    stores
        .members
        .remove(AppId::new(), AdminUserId::new())
        .await
        .unwrap();
}

/// `find` returns exactly the stored row, or `None`.
pub async fn members_find_returns_the_row_or_none(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (user, app) = (fx.user("m", InstanceRole::Member).await, fx.app("a").await);
    assert_eq!(stores.members.find(app.id, user.id).await.unwrap(), None);
    let row = stores
        .members
        .try_insert(app.id, user.id, AppRole::Viewer)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stores.members.find(app.id, user.id).await.unwrap(),
        Some(row)
    );
}

/// The enriched list carries the user's fields, inactive users included.
pub async fn members_list_joins_users_and_includes_inactive(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = fx.app("a").await;
    let mut new = NewAdminUser::new(format!("{}-eve", fx.tag()), InstanceRole::Member);
    new.email = Some("eve@example.com".into());
    let eve = stores.users.create(new).await.unwrap();
    let row = stores
        .members
        .try_insert(app.id, eve.id, AppRole::Editor)
        .await
        .unwrap()
        .unwrap();
    let eve = stores.users.set_active(eve.id, false).await.unwrap();
    let list = stores.members.list_for_app_enriched(app.id).await.unwrap();
    assert_eq!(list.len(), 1);
    let d = &list[0];
    assert_eq!(d.user_id, eve.id);
    assert_eq!(d.username, eve.username);
    assert_eq!(d.email.as_deref(), Some("eve@example.com"));
    assert_eq!(d.instance_role, InstanceRole::Member);
    assert!(!d.is_active);
    assert_eq!(d.role, AppRole::Editor);
    assert_eq!(d.created_at, row.created_at);
}

/// The enriched list is ordered by username, byte-wise, whatever the
/// insertion order.
pub async fn members_list_is_ordered_by_username(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = fx.app("a").await;
    let mut names = Vec::new();
    for name in ["m", "B", "z", "a", "aa", "Zed"] {
        let u = fx.user(name, InstanceRole::Member).await;
        stores
            .members
            .try_insert(app.id, u.id, AppRole::Viewer)
            .await
            .unwrap();
        names.push(u.username);
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let listed: Vec<String> = stores
        .members
        .list_for_app_enriched(app.id)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.username)
        .collect();
    assert_eq!(listed, names);
}

/// One app's list never shows another app's members.
pub async fn members_list_is_scoped_to_the_app(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (a, b) = (fx.app("a").await, fx.app("b").await);
    let (u1, u2) = (
        fx.user("u1", InstanceRole::Member).await,
        fx.user("u2", InstanceRole::Member).await,
    );
    stores
        .members
        .try_insert(a.id, u1.id, AppRole::Viewer)
        .await
        .unwrap();
    stores
        .members
        .try_insert(b.id, u2.id, AppRole::Viewer)
        .await
        .unwrap();
    let la = stores.members.list_for_app_enriched(a.id).await.unwrap();
    assert_eq!(
        la.iter().map(|d| d.user_id).collect::<Vec<_>>(),
        vec![u1.id]
    );
    assert!(
        stores
            .members
            .list_for_app_enriched(AppId::new())
            .await
            .unwrap()
            .is_empty()
    );
}

// ---------------------------------------------------------------- authz

/// `app_role` reflects inserts, updates and removals.
pub async fn authz_app_role_follows_memberships(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (user, app) = (fx.user("m", InstanceRole::Member).await, fx.app("a").await);
    assert_eq!(stores.authz.app_role(app.id, user.id).await.unwrap(), None);
    stores
        .members
        .try_insert(app.id, user.id, AppRole::Viewer)
        .await
        .unwrap();
    assert_eq!(
        stores.authz.app_role(app.id, user.id).await.unwrap(),
        Some(AppRole::Viewer)
    );
    stores
        .members
        .update_role(app.id, user.id, AppRole::Editor)
        .await
        .unwrap();
    assert_eq!(
        stores.authz.app_role(app.id, user.id).await.unwrap(),
        Some(AppRole::Editor)
    );
    stores.members.remove(app.id, user.id).await.unwrap();
    assert_eq!(stores.authz.app_role(app.id, user.id).await.unwrap(), None);
}

/// `require` through the store follows the capability table for every
/// instance role and app role.
pub async fn authz_require_follows_the_table(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = fx.app("a").await;
    let owner = fx.user("owner", InstanceRole::Owner).await;
    let admin = fx.user("admin", InstanceRole::Admin).await;
    let viewer = fx.user("viewer", InstanceRole::Member).await;
    let editor = fx.user("editor", InstanceRole::Member).await;
    let app_admin = fx.user("appadmin", InstanceRole::Member).await;
    let stranger = fx.user("stranger", InstanceRole::Member).await;
    let gone = fx.inactive_user("gone", InstanceRole::Owner).await;
    for (u, r) in [
        (&viewer, AppRole::Viewer),
        (&editor, AppRole::Editor),
        (&app_admin, AppRole::AppAdmin),
    ] {
        stores.members.try_insert(app.id, u.id, r).await.unwrap();
    }
    let id = app.id;
    use Capability::*;
    let table: [(&crate::domain::AdminUser, [bool; 6]); 7] = [
        //          users  roles  create view   edit   admin
        (&owner, [true, true, true, true, true, true]),
        (&admin, [true, false, true, true, true, false]),
        (&viewer, [false, false, false, true, false, false]),
        (&editor, [false, false, false, true, true, false]),
        (&app_admin, [false, false, false, true, true, true]),
        (&stranger, [false, false, false, false, false, false]),
        (&gone, [false, false, false, false, false, false]),
    ];
    let caps = [
        InstanceManageUsers,
        InstanceManageRoles,
        CreateApp,
        AppView(id),
        AppEdit(id),
        AppAdmin(id),
    ];
    for (user, expected) in table {
        let p = Fixture::principal(user);
        for (cap, want) in caps.iter().zip(expected) {
            let got = authz::require(stores.authz.as_ref(), &p, *cap).await;
            match (got, want) {
                (Ok(()), true) | (Err(AuthzDenied::Denied), false) => {}
                (got, _) => panic!("{} on {cap:?}: expected {want}, got {got:?}", user.username),
            }
        }
    }
}

// ---------------------------------------------------------------- concurrency

/// 100 concurrent `try_insert` calls on the same pair: exactly one `Some`.
pub async fn concurrent_try_insert_gives_exactly_one_row(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (user, app) = (fx.user("m", InstanceRole::Member).await, fx.app("a").await);
    let mut tasks = JoinSet::new();
    for i in 0..100 {
        let members = Arc::clone(&stores.members);
        let role = AppRole::ALL[i % 3];
        tasks.spawn(async move { members.try_insert(app.id, user.id, role).await });
    }
    let mut created = Vec::new();
    while let Some(r) = tasks.join_next().await {
        if let Some(row) = r.expect("task").expect("try_insert") {
            created.push(row);
        }
    }
    assert_eq!(created.len(), 1, "exactly one insert wins");
    let stored = stores.members.find(app.id, user.id).await.unwrap();
    assert_eq!(
        stored.as_ref(),
        created.first(),
        "the winner's role is the stored one"
    );
}

/// 200 trials of `update_role` racing `remove`: the row never survives.
pub async fn update_role_racing_remove_never_resurrects(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = fx.app("a").await;
    let user = fx.user("m", InstanceRole::Member).await;
    for trial in 0..200 {
        stores
            .members
            .try_insert(app.id, user.id, AppRole::Viewer)
            .await
            .unwrap();
        let (m1, m2) = (Arc::clone(&stores.members), Arc::clone(&stores.members));
        let update =
            tokio::spawn(async move { m1.update_role(app.id, user.id, AppRole::AppAdmin).await });
        let remove = tokio::spawn(async move { m2.remove(app.id, user.id).await });
        let updated = update.await.unwrap().unwrap();
        remove.await.unwrap().unwrap();
        if let Some(row) = &updated {
            assert_eq!(row.role, AppRole::AppAdmin);
        }
        assert_eq!(
            stores.members.find(app.id, user.id).await.unwrap(),
            None,
            "trial {trial}: the row came back"
        );
    }
}

/// 100 concurrent grants of the same member through the service: exactly one
/// success, and every other call is `AlreadyMember`.
pub async fn concurrent_grants_through_the_service_give_one_success(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let owner = fx.user("owner", InstanceRole::Owner).await;
    let target = fx.user("target", InstanceRole::Member).await;
    let app = fx.app("a").await;
    let service = MembershipService::new(stores.clone());
    let mut tasks = JoinSet::new();
    for _ in 0..100 {
        let (service, slug) = (service.clone(), app.slug.to_string());
        let p = Fixture::principal(&owner);
        tasks.spawn(async move { service.grant(&p, &slug, target.id, AppRole::Editor).await });
    }
    let (mut ok, mut dup) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        match r.expect("task") {
            Ok(_) => ok += 1,
            Err(MembershipError::AlreadyMember { .. }) => dup += 1,
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!((ok, dup), (1, 99));
}

// ---------------------------------------------------------------- service

/// Grant, change and remove through the service, with each refusal in turn.
pub async fn service_grant_change_remove_round_trip(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let owner = Fixture::principal(&fx.user("owner", InstanceRole::Owner).await);
    let member = fx.user("member", InstanceRole::Member).await;
    let admin = fx.user("admin", InstanceRole::Admin).await;
    let inactive = fx.inactive_user("inactive", InstanceRole::Member).await;
    let app = fx.app("a").await;
    let svc = MembershipService::new(stores.clone());
    let s = app.slug.as_str();

    let d = svc
        .grant(&owner, s, member.id, AppRole::Viewer)
        .await
        .unwrap();
    assert_eq!(
        (d.user_id, d.role, d.username.as_str()),
        (member.id, AppRole::Viewer, member.username.as_str())
    );
    let e = svc
        .grant(&owner, s, member.id, AppRole::Editor)
        .await
        .unwrap_err();
    assert!(
        matches!(e, MembershipError::AlreadyMember { .. }),
        "got {e:?}"
    );
    let e = svc
        .grant(&owner, s, inactive.id, AppRole::Viewer)
        .await
        .unwrap_err();
    assert!(
        matches!(e, MembershipError::TargetInactive { .. }),
        "got {e:?}"
    );
    let e = svc
        .grant(&owner, s, admin.id, AppRole::Viewer)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            MembershipError::TargetNotMember {
                instance_role: InstanceRole::Admin,
                ..
            }
        ),
        "got {e:?}"
    );
    let e = svc
        .grant(&owner, s, AdminUserId::new(), AppRole::Viewer)
        .await
        .unwrap_err();
    assert!(matches!(e, MembershipError::UserNotFound(_)), "got {e:?}");
    let e = svc
        .grant(&owner, "no-such-app", member.id, AppRole::Viewer)
        .await
        .unwrap_err();
    assert!(matches!(e, MembershipError::AppNotFound(_)), "got {e:?}");

    // By id as well as by slug.
    let d = svc
        .change_role(&owner, &app.id.to_string(), member.id, AppRole::AppAdmin)
        .await
        .unwrap();
    assert_eq!(d.role, AppRole::AppAdmin);
    let e = svc
        .change_role(&owner, s, inactive.id, AppRole::Viewer)
        .await
        .unwrap_err();
    assert!(
        matches!(e, MembershipError::MembershipNotFound),
        "got {e:?}"
    );

    let listed = svc.list(&owner, s).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].role, AppRole::AppAdmin);

    // The new app admin manages members themselves.
    let as_member = Fixture::principal(&member);
    assert_eq!(svc.list(&as_member, s).await.unwrap().len(), 1);

    svc.remove(&owner, s, member.id).await.unwrap();
    svc.remove(&owner, s, member.id).await.unwrap();
    assert!(svc.list(&owner, s).await.unwrap().is_empty());
    let e = svc.list(&as_member, s).await.unwrap_err();
    assert!(matches!(e, MembershipError::Forbidden), "got {e:?}");
}

/// Viewers, editors, instance admins, strangers and inactive owners are all
/// refused, on every method, and nothing changes.
pub async fn service_refuses_non_app_admins(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = fx.app("a").await;
    let target = fx.user("target", InstanceRole::Member).await;
    let viewer = fx.user("viewer", InstanceRole::Member).await;
    let editor = fx.user("editor", InstanceRole::Member).await;
    stores
        .members
        .try_insert(app.id, viewer.id, AppRole::Viewer)
        .await
        .unwrap();
    stores
        .members
        .try_insert(app.id, editor.id, AppRole::Editor)
        .await
        .unwrap();
    let callers = [
        viewer,
        editor,
        fx.user("admin", InstanceRole::Admin).await,
        fx.user("stranger", InstanceRole::Member).await,
        fx.inactive_user("old-owner", InstanceRole::Owner).await,
    ];
    let svc = MembershipService::new(stores.clone());
    let s = app.slug.as_str();
    for caller in &callers {
        let p = Fixture::principal(caller);
        let forbidden = |e: MembershipError| {
            assert!(
                matches!(e, MembershipError::Forbidden),
                "{}: got {e:?}",
                caller.username
            )
        };
        forbidden(svc.list(&p, s).await.unwrap_err());
        forbidden(
            svc.grant(&p, s, target.id, AppRole::Viewer)
                .await
                .unwrap_err(),
        );
        forbidden(
            svc.change_role(&p, s, viewer_id(&callers), AppRole::AppAdmin)
                .await
                .unwrap_err(),
        );
        forbidden(svc.remove(&p, s, viewer_id(&callers)).await.unwrap_err());
    }
    let rows = stores.members.list_for_app_enriched(app.id).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|d| d.role != AppRole::AppAdmin));
}

fn viewer_id(callers: &[crate::domain::AdminUser]) -> AdminUserId {
    callers[0].id
}

// ---------------------------------------------------------------- tokens

fn new_token(user: AdminUserId, scope: Option<TokenScope>) -> NewApiToken {
    let now = crate::clock::now();
    NewApiToken {
        token: ApiToken {
            id: TokenId::new(),
            user_id: user,
            name: "ci".into(),
            scope,
            created_at: now,
            expires_at: Some(now + chrono::Duration::hours(1)),
        },
        token_hash: format!("hash-{}", uuid::Uuid::new_v4().simple()),
    }
}

/// A stored token is found by its hash, together with its user.
pub async fn tokens_create_then_find_by_hash_with_user(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let user = fx.user("tok", InstanceRole::Member).await;
    let app = fx.app("a").await;
    let scope = TokenScope {
        app_id: app.id,
        max_role: AppRole::Viewer,
    };
    let new = new_token(user.id, Some(scope));
    let stored = stores.tokens.create(new.clone()).await.unwrap();
    assert_eq!(stored, new.token);
    let (token, owner) = stores
        .tokens
        .find_by_hash(&new.token_hash)
        .await
        .unwrap()
        .expect("found");
    assert_eq!(token, new.token);
    assert_eq!(owner, user);
    assert_eq!(
        stores.tokens.find_by_hash("no-such-hash").await.unwrap(),
        None
    );
}

/// The user read with a token is current: deactivation shows at once.
pub async fn tokens_find_sees_user_changes_at_once(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let user = fx.user("tok", InstanceRole::Admin).await;
    let new = new_token(user.id, None);
    stores.tokens.create(new.clone()).await.unwrap();
    stores.users.set_active(user.id, false).await.unwrap();
    let (_, seen) = stores
        .tokens
        .find_by_hash(&new.token_hash)
        .await
        .unwrap()
        .unwrap();
    assert!(!seen.is_active);
}

/// A token for an unknown user or scoped to an unknown app is `NotFound`.
pub async fn tokens_need_existing_user_and_app(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let user = fx.user("tok", InstanceRole::Member).await;
    let e = stores
        .tokens
        .create(new_token(AdminUserId::new(), None))
        .await
        .unwrap_err();
    assert!(matches!(e, TokenRepoError::NotFound), "got {e:?}");
    let scope = TokenScope {
        app_id: AppId::new(),
        max_role: AppRole::Editor,
    };
    let e = stores
        .tokens
        .create(new_token(user.id, Some(scope)))
        .await
        .unwrap_err();
    assert!(matches!(e, TokenRepoError::NotFound), "got {e:?}");
}

/// Two tokens with the same hash: the second is `Conflict`.
pub async fn tokens_duplicate_hash_is_conflict(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let user = fx.user("tok", InstanceRole::Member).await;
    let first = new_token(user.id, None);
    stores.tokens.create(first.clone()).await.unwrap();
    let mut second = new_token(user.id, None);
    second.token_hash = first.token_hash.clone();
    let e = stores.tokens.create(second).await.unwrap_err();
    assert!(matches!(e, TokenRepoError::Conflict(_)), "got {e:?}");
}

/// Tokens list per user, newest first; revoke is idempotent and per user.
pub async fn tokens_list_and_revoke(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let ann = fx.user("ann", InstanceRole::Member).await;
    let bob = fx.user("bob", InstanceRole::Member).await;
    let mut old = new_token(ann.id, None);
    old.token.created_at -= chrono::Duration::minutes(5);
    let new = new_token(ann.id, None);
    let bobs = new_token(bob.id, None);
    for t in [&old, &new, &bobs] {
        stores.tokens.create(t.clone()).await.unwrap();
    }
    let listed = stores.tokens.list_for_user(ann.id).await.unwrap();
    assert_eq!(listed, vec![new.token.clone(), old.token.clone()]);
    // Bob cannot revoke Ann's token.
    stores.tokens.revoke(bob.id, new.token.id).await.unwrap();
    assert!(
        stores
            .tokens
            .find_by_hash(&new.token_hash)
            .await
            .unwrap()
            .is_some()
    );
    stores.tokens.revoke(ann.id, new.token.id).await.unwrap();
    stores.tokens.revoke(ann.id, new.token.id).await.unwrap();
    assert_eq!(
        stores.tokens.find_by_hash(&new.token_hash).await.unwrap(),
        None
    );
    assert_eq!(
        stores.tokens.list_for_user(ann.id).await.unwrap(),
        vec![old.token]
    );
}

/// Deleting an app deletes the tokens scoped to it, and only those.
pub async fn tokens_scoped_to_a_deleted_app_are_gone(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let user = fx.user("tok", InstanceRole::Owner).await;
    let app = fx.app("a").await;
    let scoped = new_token(
        user.id,
        Some(TokenScope {
            app_id: app.id,
            max_role: AppRole::Editor,
        }),
    );
    let plain = new_token(user.id, None);
    stores.tokens.create(scoped.clone()).await.unwrap();
    stores.tokens.create(plain.clone()).await.unwrap();
    stores.apps.delete(app.id).await.unwrap();
    assert_eq!(
        stores
            .tokens
            .find_by_hash(&scoped.token_hash)
            .await
            .unwrap(),
        None
    );
    assert!(
        stores
            .tokens
            .find_by_hash(&plain.token_hash)
            .await
            .unwrap()
            .is_some()
    );
}

/// An expired token is never taken for a live one: `find_by_hash` returns
/// it with its past expiry (the caller refuses it) or not at all. The next
/// `create`, by any user, purges it: it is gone from `find_by_hash` and from
/// the listing, while live and non-expiring tokens stay.
pub async fn tokens_expired_are_refused_then_purged_by_a_later_create(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let ann = fx.user("ann", InstanceRole::Member).await;
    let bob = fx.user("bob", InstanceRole::Member).await;
    let now = crate::clock::now();
    let mut expired = Vec::new();
    for minutes in [1, 30, 600] {
        let mut t = new_token(ann.id, None);
        t.token.created_at = now - chrono::Duration::hours(13);
        t.token.expires_at = Some(now - chrono::Duration::minutes(minutes));
        stores.tokens.create(t.clone()).await.unwrap();
        expired.push(t);
    }
    let live = new_token(ann.id, None);
    let mut forever = new_token(ann.id, None);
    forever.token.expires_at = None;
    for t in [&live, &forever] {
        stores.tokens.create(t.clone()).await.unwrap();
    }
    for t in &expired {
        if let Some((found, _)) = stores.tokens.find_by_hash(&t.token_hash).await.unwrap() {
            assert!(
                found.expires_at.is_some_and(|at| at <= crate::clock::now()),
                "an expired token read back as live: {found:?}"
            );
        }
    }
    // Another user's token creation purges them.
    stores.tokens.create(new_token(bob.id, None)).await.unwrap();
    for t in &expired {
        assert_eq!(
            stores.tokens.find_by_hash(&t.token_hash).await.unwrap(),
            None,
            "expired {:?} was not purged",
            t.token.expires_at
        );
    }
    let listed = stores.tokens.list_for_user(ann.id).await.unwrap();
    let ids: HashSet<TokenId> = listed.iter().map(|t| t.id).collect();
    assert_eq!(
        ids,
        HashSet::from([live.token.id, forever.token.id]),
        "{listed:?}"
    );
}

// ---------------------------------------------------------------- scripts

fn script_name(s: &str) -> ScriptName {
    ScriptName::parse(s).expect("valid script name")
}

/// The first deploy creates version 1; each next one appends and goes live.
pub async fn scripts_deploy_creates_then_appends_versions(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (app, dev) = (fx.app("a").await, fx.user("dev", InstanceRole::Admin).await);
    let hello = script_name("hello");
    let first = stores
        .scripts
        .deploy(
            app.id,
            &hello,
            "\"v1\"".into(),
            dev.id,
            StorageQuota::default(),
        )
        .await
        .unwrap();
    assert!(first.created);
    assert_eq!((first.version.version, first.script.live_version), (1, 1));
    assert_eq!(first.version.created_by, dev.id);
    let second = stores
        .scripts
        .deploy(
            app.id,
            &hello,
            "\"v2\"".into(),
            dev.id,
            StorageQuota::default(),
        )
        .await
        .unwrap();
    assert!(!second.created);
    assert_eq!(second.script.id, first.script.id);
    assert_eq!(
        (second.script.live_version, second.script.latest_version),
        (2, 2)
    );
    let versions = stores.scripts.versions(app.id, &hello).await.unwrap();
    let listed: Vec<(u32, u64)> = versions.iter().map(|v| (v.version, v.size_bytes)).collect();
    assert_eq!(listed, [(1, 4), (2, 4)]);
    assert_eq!(versions[1].created_by, dev.id);
    let v1 = stores.scripts.version(app.id, &hello, 1).await.unwrap();
    assert_eq!(v1.map(|v| v.source).as_deref(), Some("\"v1\""));
    assert_eq!(
        stores.scripts.get(app.id, &hello).await.unwrap(),
        Some(second.script)
    );
    assert_eq!(
        stores
            .scripts
            .get(app.id, &script_name("nope"))
            .await
            .unwrap(),
        None
    );
    assert!(
        stores
            .scripts
            .versions(app.id, &script_name("nope"))
            .await
            .unwrap()
            .is_empty()
    );
}

/// Deploying to an unknown app is `NotFound`.
pub async fn scripts_deploy_needs_an_existing_app(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let dev = fx.user("dev", InstanceRole::Admin).await;
    let e = stores
        .scripts
        .deploy(
            AppId::new(),
            &script_name("x"),
            "1".into(),
            dev.id,
            StorageQuota::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ScriptRepoError::NotFound), "got {e:?}");
}

/// A rollback makes an old version live; every version stays readable, and
/// the next deploy appends after the newest.
pub async fn scripts_rollback_sets_live_and_keeps_every_version(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (app, dev) = (fx.app("a").await, fx.user("dev", InstanceRole::Admin).await);
    let n = script_name("api");
    for src in ["1", "2", "3"] {
        stores
            .scripts
            .deploy(app.id, &n, src.into(), dev.id, StorageQuota::default())
            .await
            .unwrap();
    }
    let back = stores.scripts.set_live(app.id, &n, 1).await.unwrap();
    assert_eq!((back.live_version, back.latest_version), (1, 3));
    assert_eq!(
        stores
            .scripts
            .version(app.id, &n, 3)
            .await
            .unwrap()
            .unwrap()
            .source,
        "3"
    );
    assert_eq!(stores.scripts.version(app.id, &n, 4).await.unwrap(), None);
    let e = stores.scripts.set_live(app.id, &n, 9).await.unwrap_err();
    assert!(matches!(e, ScriptRepoError::NotFound), "got {e:?}");
    let e = stores
        .scripts
        .set_live(app.id, &script_name("ghost"), 1)
        .await
        .unwrap_err();
    assert!(matches!(e, ScriptRepoError::NotFound), "got {e:?}");
    let next = stores
        .scripts
        .deploy(app.id, &n, "4".into(), dev.id, StorageQuota::default())
        .await
        .unwrap();
    assert_eq!((next.version.version, next.script.live_version), (4, 4));
}

/// `list` gives the app's scripts by name, and only them.
pub async fn scripts_list_by_name_within_the_app(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (a, b) = (fx.app("a").await, fx.app("b").await);
    let dev = fx.user("dev", InstanceRole::Admin).await;
    for name in ["zeta", "Alpha", "beta"] {
        stores
            .scripts
            .deploy(
                a.id,
                &script_name(name),
                "1".into(),
                dev.id,
                StorageQuota::default(),
            )
            .await
            .unwrap();
    }
    stores
        .scripts
        .deploy(
            b.id,
            &script_name("other"),
            "1".into(),
            dev.id,
            StorageQuota::default(),
        )
        .await
        .unwrap();
    let names: Vec<String> = stores
        .scripts
        .list(a.id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name.to_string())
        .collect();
    assert_eq!(names, ["Alpha", "beta", "zeta"]);
}

/// `all_live` pairs each script with its live version's source.
pub async fn scripts_all_live_returns_the_live_versions(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (app, dev) = (fx.app("a").await, fx.user("dev", InstanceRole::Admin).await);
    let n = script_name("s");
    stores
        .scripts
        .deploy(app.id, &n, "1".into(), dev.id, StorageQuota::default())
        .await
        .unwrap();
    let d = stores
        .scripts
        .deploy(app.id, &n, "2".into(), dev.id, StorageQuota::default())
        .await
        .unwrap();
    stores.scripts.set_live(app.id, &n, 1).await.unwrap();
    let live = stores.scripts.all_live().await.unwrap();
    let (script, version) = live
        .iter()
        .find(|(s, _)| s.id == d.script.id)
        .expect("listed");
    assert_eq!(
        (
            script.live_version,
            version.version,
            version.source.as_str()
        ),
        (1, 1, "1")
    );
}

/// Concurrent deploys of one script get distinct, gapless version numbers.
pub async fn scripts_concurrent_deploys_get_distinct_versions(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (app, dev) = (fx.app("a").await, fx.user("dev", InstanceRole::Admin).await);
    let mut tasks = JoinSet::new();
    for i in 0..20 {
        let scripts = Arc::clone(&stores.scripts);
        tasks.spawn(async move {
            scripts
                .deploy(
                    app.id,
                    &script_name("race"),
                    format!("{i}"),
                    dev.id,
                    StorageQuota::default(),
                )
                .await
                .map(|d| d.version.version)
        });
    }
    let mut versions = Vec::new();
    while let Some(r) = tasks.join_next().await {
        versions.push(r.expect("task").expect("deploy"));
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=20).collect::<Vec<u32>>());
    let script = stores
        .scripts
        .get(app.id, &script_name("race"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(script.latest_version, 20);
}

/// Per-app limits overrides are stored, replaced and cleared.
pub async fn scripts_app_limits_round_trip(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = fx.app("a").await;
    assert_eq!(stores.scripts.app_limits(app.id).await.unwrap(), None);
    stores
        .scripts
        .set_app_limits(app.id, Some("{\"wall_clock_ms\":500}".into()))
        .await
        .unwrap();
    assert_eq!(
        stores.scripts.app_limits(app.id).await.unwrap().as_deref(),
        Some("{\"wall_clock_ms\":500}")
    );
    stores.scripts.set_app_limits(app.id, None).await.unwrap();
    assert_eq!(stores.scripts.app_limits(app.id).await.unwrap(), None);
    let e = stores
        .scripts
        .set_app_limits(AppId::new(), Some("{}".into()))
        .await
        .unwrap_err();
    assert!(matches!(e, ScriptRepoError::NotFound), "got {e:?}");
}

/// Deleting an app deletes its scripts, versions and invocations.
pub async fn scripts_go_with_their_app(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (app, dev) = (fx.app("a").await, fx.user("dev", InstanceRole::Admin).await);
    let d = stores
        .scripts
        .deploy(
            app.id,
            &script_name("s"),
            "1".into(),
            dev.id,
            StorageQuota::default(),
        )
        .await
        .unwrap();
    stores
        .invocations
        .append(vec![record(d.script.id, 0)])
        .await
        .unwrap();
    stores.apps.delete(app.id).await.unwrap();
    assert!(stores.scripts.list(app.id).await.unwrap().is_empty());
    assert!(
        stores
            .invocations
            .recent(d.script.id, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        stores
            .scripts
            .all_live()
            .await
            .unwrap()
            .iter()
            .all(|(s, _)| s.app_id != app.id)
    );
}

/// A quota small enough to reach in a test.
fn small_quota(bytes: u64, versions: u32) -> StorageQuota {
    StorageQuota {
        source_bytes_per_app: bytes,
        versions_per_script: versions,
    }
}

/// A deploy that would pass either quota is refused with the quota named,
/// and stores nothing; other apps have their own quota. Version listings
/// carry sizes, not sources.
pub async fn scripts_quota_refuses_the_deploy_that_would_pass_it(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (app, other) = (fx.app("a").await, fx.app("b").await);
    let dev = fx.user("dev", InstanceRole::Admin).await;
    let quota = small_quota(100, 3);
    let deploy = |app: AppId, name: &'static str, len: usize| {
        let scripts = Arc::clone(&stores.scripts);
        async move {
            scripts
                .deploy(app, &script_name(name), "x".repeat(len), dev.id, quota)
                .await
        }
    };
    deploy(app.id, "one", 40).await.unwrap();
    deploy(app.id, "two", 40).await.unwrap();
    let e = deploy(app.id, "one", 30).await.unwrap_err();
    assert!(
        matches!(
            e,
            ScriptRepoError::QuotaExceeded(QuotaExceeded::SourceBytesPerApp { limit: 100 })
        ),
        "got {e:?}"
    );
    let one = stores.scripts.get(app.id, &script_name("one")).await;
    assert_eq!(
        one.unwrap().map(|s| s.latest_version),
        Some(1),
        "nothing stored"
    );
    assert_eq!(stores.scripts.source_bytes(app.id).await.unwrap(), 80);
    // Exactly up to the quota is fine; one byte more is not.
    deploy(app.id, "three", 20).await.unwrap();
    assert_eq!(stores.scripts.source_bytes(app.id).await.unwrap(), 100);
    let e = deploy(app.id, "four", 1).await.unwrap_err();
    assert!(matches!(e, ScriptRepoError::QuotaExceeded(_)), "got {e:?}");
    assert_eq!(
        stores
            .scripts
            .get(app.id, &script_name("four"))
            .await
            .unwrap(),
        None
    );
    // Another app's quota is its own; it has a versions cap too.
    for _ in 0..3 {
        deploy(other.id, "v", 10).await.unwrap();
    }
    let e = deploy(other.id, "v", 10).await.unwrap_err();
    assert!(
        matches!(
            e,
            ScriptRepoError::QuotaExceeded(QuotaExceeded::VersionsPerScript { limit: 3 })
        ),
        "got {e:?}"
    );
    assert_eq!(stores.scripts.source_bytes(other.id).await.unwrap(), 30);
    let versions = stores
        .scripts
        .versions(other.id, &script_name("v"))
        .await
        .unwrap();
    let listed: Vec<(u32, u64)> = versions.iter().map(|v| (v.version, v.size_bytes)).collect();
    assert_eq!(listed, [(1, 10), (2, 10), (3, 10)]);
    // An unknown app is still NotFound, not a quota.
    let e = deploy(AppId::new(), "x", 1).await.unwrap_err();
    assert!(matches!(e, ScriptRepoError::NotFound), "got {e:?}");
    assert_eq!(stores.scripts.source_bytes(AppId::new()).await.unwrap(), 0);
}

/// Concurrent deploys to one app never use more than its quota together,
/// across scripts (bytes) and within one script (versions).
pub async fn scripts_concurrent_deploys_never_pass_the_quota(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (app, dev) = (fx.app("a").await, fx.user("dev", InstanceRole::Admin).await);
    let quota = small_quota(1000, 1000);
    let mut tasks = JoinSet::new();
    for i in 0..24 {
        let scripts = Arc::clone(&stores.scripts);
        tasks.spawn(async move {
            let name = script_name(&format!("s{}", i % 6));
            scripts
                .deploy(app.id, &name, "y".repeat(100), dev.id, quota)
                .await
        });
    }
    let (mut ok, mut refused) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        match r.expect("task") {
            Ok(_) => ok += 1,
            Err(ScriptRepoError::QuotaExceeded(QuotaExceeded::SourceBytesPerApp { .. })) => {
                refused += 1;
            }
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!((ok, refused), (10, 14));
    assert_eq!(stores.scripts.source_bytes(app.id).await.unwrap(), 1000);
    let mut stored = 0;
    for script in stores.scripts.list(app.id).await.unwrap() {
        let versions = stores.scripts.versions(app.id, &script.name).await.unwrap();
        assert_eq!(versions.len() as u32, script.latest_version);
        stored += versions.iter().map(|v| v.size_bytes).sum::<u64>();
    }
    assert_eq!(stored, 1000, "the usage counts exactly what is stored");

    let quota = small_quota(1 << 20, 5);
    let mut tasks = JoinSet::new();
    for _ in 0..12 {
        let scripts = Arc::clone(&stores.scripts);
        tasks.spawn(async move {
            scripts
                .deploy(app.id, &script_name("capped"), "1".into(), dev.id, quota)
                .await
        });
    }
    let mut ok = 0;
    while let Some(r) = tasks.join_next().await {
        match r.expect("task") {
            Ok(_) => ok += 1,
            Err(ScriptRepoError::QuotaExceeded(QuotaExceeded::VersionsPerScript { limit: 5 })) => {}
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(ok, 5);
    let capped = stores.scripts.get(app.id, &script_name("capped")).await;
    assert_eq!(capped.unwrap().map(|s| s.latest_version), Some(5));
}

/// Deleting a script deletes its versions and invocations and frees its
/// bytes; deleting again, or a script that never was, is not an error.
pub async fn scripts_delete_frees_the_quota_and_is_idempotent(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (app, dev) = (fx.app("a").await, fx.user("dev", InstanceRole::Admin).await);
    let quota = small_quota(100, 2);
    let (gone, kept) = (script_name("gone"), script_name("kept"));
    let mut first = None;
    for _ in 0..2 {
        let d = stores
            .scripts
            .deploy(app.id, &gone, "z".repeat(40), dev.id, quota)
            .await
            .unwrap();
        first.get_or_insert(d.script.id);
    }
    stores
        .scripts
        .deploy(app.id, &kept, "k".repeat(20), dev.id, quota)
        .await
        .unwrap();
    let gone_id = first.expect("deployed");
    stores
        .invocations
        .append(vec![record(gone_id, 0)])
        .await
        .unwrap();
    assert_eq!(stores.scripts.source_bytes(app.id).await.unwrap(), 100);

    assert!(stores.scripts.delete(app.id, &gone).await.unwrap());
    assert_eq!(stores.scripts.source_bytes(app.id).await.unwrap(), 20);
    assert_eq!(stores.scripts.get(app.id, &gone).await.unwrap(), None);
    assert!(
        stores
            .scripts
            .versions(app.id, &gone)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        stores.scripts.version(app.id, &gone, 1).await.unwrap(),
        None
    );
    assert!(
        stores
            .invocations
            .recent(gone_id, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(!stores.scripts.delete(app.id, &gone).await.unwrap());
    assert!(!stores.scripts.delete(AppId::new(), &gone).await.unwrap());
    // The freed bytes and the versions cap are usable again: a new script.
    let again = stores
        .scripts
        .deploy(app.id, &gone, "z".repeat(80), dev.id, quota)
        .await
        .unwrap();
    assert!(again.created);
    assert_eq!(again.version.version, 1);
    assert_ne!(again.script.id, gone_id);
    assert_eq!(stores.scripts.source_bytes(app.id).await.unwrap(), 100);
    // Records of the deleted script arriving late are dropped.
    stores
        .invocations
        .append(vec![record(gone_id, 1)])
        .await
        .unwrap();
    assert!(
        stores
            .invocations
            .recent(gone_id, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let names: Vec<String> = stores
        .scripts
        .list(app.id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name.to_string())
        .collect();
    assert_eq!(names, ["gone", "kept"]);
}

/// A record of `bytes` bytes of logs (one line of `fill`), `i` ms from `base`.
fn sized_record(
    script: crate::ids::ScriptId,
    base: chrono::DateTime<chrono::Utc>,
    i: i64,
    bytes: usize,
    fill: char,
) -> InvocationRecord {
    InvocationRecord {
        script_id: script,
        version: 1,
        at: base + chrono::Duration::milliseconds(i),
        status: 200,
        duration_us: 1,
        logs: vec![fill.to_string().repeat(bytes)],
        error: None,
    }
}

fn total_bytes(records: &[InvocationRecord]) -> usize {
    records.iter().map(InvocationRecord::log_bytes).sum()
}

/// A script keeps its newest records while they fit the per-script byte
/// bound; a record over the per-record cap is cut, with a marker, not
/// dropped; `recent(_, 1)` is the newest alone.
pub async fn invocations_keep_the_newest_within_the_byte_bounds(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (app, dev) = (fx.app("a").await, fx.user("dev", InstanceRole::Admin).await);
    let d = stores
        .scripts
        .deploy(
            app.id,
            &script_name("loud"),
            "1".into(),
            dev.id,
            StorageQuota::default(),
        )
        .await
        .unwrap();
    let base = crate::clock::now();
    let size = 600 * 1024;
    let all: Vec<InvocationRecord> = (0..10)
        .map(|i| sized_record(d.script.id, base, i, size, 'a'))
        .collect();
    stores.invocations.append(all[..4].to_vec()).await.unwrap();
    stores.invocations.append(all[4..].to_vec()).await.unwrap();
    let kept = stores.invocations.recent(d.script.id, 1000).await.unwrap();
    let fit = INVOCATION_BYTES_PER_SCRIPT / size;
    let newest: Vec<InvocationRecord> = all.iter().rev().take(fit).cloned().collect();
    assert_eq!(kept, newest, "the {fit} newest, newest first");
    assert!(total_bytes(&kept) <= INVOCATION_BYTES_PER_SCRIPT);
    let one = stores.invocations.recent(d.script.id, 1).await.unwrap();
    assert_eq!(one, [all[9].clone()]);

    // One record over the cap: kept, cut to the cap, its start intact, and
    // it pushes older records out by its cut size only.
    let mut huge = sized_record(d.script.id, base, 20, 3 * INVOCATION_RECORD_MAX_BYTES, 'h');
    huge.error = Some("e".repeat(INVOCATION_RECORD_MAX_BYTES));
    stores.invocations.append(vec![huge]).await.unwrap();
    let kept = stores.invocations.recent(d.script.id, 1000).await.unwrap();
    let newest = &kept[0];
    assert!(newest.log_bytes() <= INVOCATION_RECORD_MAX_BYTES);
    assert!(newest.logs[0].starts_with("hhhh"), "the start is kept");
    let marker = newest.logs.last().expect("a marker line");
    assert!(marker.starts_with("[log truncated"), "{marker}");
    assert!(
        newest
            .error
            .as_deref()
            .is_some_and(|e| e.len() < INVOCATION_RECORD_MAX_BYTES)
    );
    assert!(total_bytes(&kept) <= INVOCATION_BYTES_PER_SCRIPT);
    assert_eq!(kept[1], all[9], "older records follow, newest first");
    assert!(kept.len() >= 2 && kept.len() < fit + 1);
}

/// An app's records across its scripts fit the per-app byte bound (its
/// oldest go first), while another app's records in the same batches keep
/// the full count bound.
pub async fn invocations_app_bound_spares_other_apps(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (flood, victim) = (fx.app("flood").await, fx.app("victim").await);
    let dev = fx.user("dev", InstanceRole::Admin).await;
    let mut loud = Vec::new();
    for i in 0..10 {
        let d = stores
            .scripts
            .deploy(
                flood.id,
                &script_name(&format!("loud{i}")),
                "1".into(),
                dev.id,
                StorageQuota::default(),
            )
            .await
            .unwrap();
        loud.push(d.script.id);
    }
    let quiet = stores
        .scripts
        .deploy(
            victim.id,
            &script_name("quiet"),
            "1".into(),
            dev.id,
            StorageQuota::default(),
        )
        .await
        .unwrap()
        .script
        .id;
    let base = crate::clock::now();
    let size = 1000 * 1024; // four of them fit a script's bound
    let mut sent = Vec::new();
    let mut quiet_sent = Vec::new();
    for round in 0..4i64 {
        let mut batch = Vec::new();
        for (i, &script) in loud.iter().enumerate() {
            batch.push(sized_record(
                script,
                base,
                round * 100 + i as i64,
                size,
                'f',
            ));
        }
        for q in 0..30 {
            batch.push(sized_record(quiet, base, round * 100 + 50 + q, 10, 'q'));
        }
        sent.extend(batch[..loud.len()].iter().cloned());
        quiet_sent.extend(batch[loud.len()..].iter().cloned());
        stores.invocations.append(batch).await.unwrap();
    }
    // Expected: walking the flood app's records from the newest, those that
    // fit the app's bound.
    let mut newest_first = sent.clone();
    newest_first.sort_by_key(|r| std::cmp::Reverse(r.at));
    let mut budget = 0;
    let expected: Vec<InvocationRecord> = newest_first
        .into_iter()
        .take_while(|r| {
            budget += r.log_bytes();
            budget <= INVOCATION_BYTES_PER_APP
        })
        .collect();
    assert!(expected.len() < sent.len(), "the test must pass the bound");
    let mut kept = Vec::new();
    for &script in &loud {
        kept.extend(stores.invocations.recent(script, 1000).await.unwrap());
    }
    kept.sort_by_key(|r| std::cmp::Reverse(r.at));
    assert_eq!(kept, expected);
    assert!(total_bytes(&kept) <= INVOCATION_BYTES_PER_APP);
    let quiet_kept = stores.invocations.recent(quiet, 1000).await.unwrap();
    let quiet_newest: Vec<InvocationRecord> = quiet_sent
        .iter()
        .rev()
        .take(INVOCATIONS_KEPT)
        .cloned()
        .collect();
    assert_eq!(
        quiet_kept, quiet_newest,
        "the other app keeps its 100 newest"
    );
}

fn record(script: crate::ids::ScriptId, i: i64) -> InvocationRecord {
    InvocationRecord {
        script_id: script,
        version: 1,
        at: crate::clock::now() + chrono::Duration::milliseconds(i),
        status: 200,
        duration_us: 10 + i as u64,
        logs: vec![format!("line {i}")],
        error: (i % 2 == 1).then(|| "script error: boom".to_owned()),
    }
}

/// `recent` is newest first, bounded by `limit` and by retention.
pub async fn invocations_recent_newest_first_and_bounded(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (app, dev) = (fx.app("a").await, fx.user("dev", InstanceRole::Admin).await);
    let d = stores
        .scripts
        .deploy(
            app.id,
            &script_name("s"),
            "1".into(),
            dev.id,
            StorageQuota::default(),
        )
        .await
        .unwrap();
    let n = INVOCATIONS_KEPT as i64 + 5;
    let all: Vec<InvocationRecord> = (0..n).map(|i| record(d.script.id, i)).collect();
    // Two batches, as the background writer sends them.
    stores.invocations.append(all[..50].to_vec()).await.unwrap();
    stores.invocations.append(all[50..].to_vec()).await.unwrap();
    let recent = stores.invocations.recent(d.script.id, 3).await.unwrap();
    assert_eq!(
        recent,
        vec![
            all[n as usize - 1].clone(),
            all[n as usize - 2].clone(),
            all[n as usize - 3].clone()
        ]
    );
    let kept = stores.invocations.recent(d.script.id, 1000).await.unwrap();
    assert_eq!(kept.len(), INVOCATIONS_KEPT);
    assert_eq!(kept.last(), Some(&all[5]));
}

/// Records of unknown scripts are dropped, not errors.
pub async fn invocations_of_unknown_scripts_are_dropped(stores: Stores) {
    let ghost = crate::ids::ScriptId::new();
    stores
        .invocations
        .append(vec![record(ghost, 0)])
        .await
        .unwrap();
    assert!(
        stores
            .invocations
            .recent(ghost, 10)
            .await
            .unwrap()
            .is_empty()
    );
}
