//! Conformance cases of the members port,
//! [`AppMembersRepository`](crate::ports::AppMembersRepository).
//!
//! Also the membership service over it ([`MembershipService`]): its
//! round trip, its refusals, and concurrent grants.

use std::sync::Arc;

use tokio::task::JoinSet;

use crate::domain::{AppRole, InstanceRole, NewAdminUser};
use crate::ids::{AdminUserId, AppId};
use crate::members::{MembershipError, MembershipService};
use crate::ports::AppMembersRepoError;
use crate::stores::Stores;
use crate::testkit::Fixture;

/// The cases of this module, in order: `members => case, ...`, handed to
/// `$callback` after `$args`. `__conformance_ports!` calls it: the
/// conformance module re-exports exactly these functions, and
/// [`conformance_tests!`](crate::conformance_tests) runs exactly these.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_members_cases {
    ($($callback:ident)::+; $($args:tt)*) => {
        $($callback)::+! { $($args)* members =>
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
            concurrent_try_insert_gives_exactly_one_row,
            update_role_racing_remove_never_resurrects,
            concurrent_grants_through_the_service_give_one_success,
            service_grant_change_remove_round_trip,
            service_refuses_non_app_admins,
        }
    };
}

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
    let mut new = NewAdminUser::new(
        crate::testkit::username(format!("{}-eve", fx.tag())),
        InstanceRole::Member,
    );
    new.email = Some(crate::testkit::email("eve@example.com"));
    let eve = stores.users.create(new).await.unwrap();
    let row = stores
        .members
        .try_insert(app.id, eve.id, AppRole::Editor)
        .await
        .unwrap()
        .unwrap();
    let eve = stores
        .users
        .update_guarded(eve.id, None, Some(false), true)
        .await
        .unwrap();
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
    let listed: Vec<_> = stores
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
