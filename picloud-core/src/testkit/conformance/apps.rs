//! Conformance cases of the apps port,
//! [`AppRepository`](crate::ports::AppRepository).
//!
//! Also timestamps (of apps and of memberships): they read back exactly.

use std::collections::HashSet;

use crate::domain::{AppRole, InstanceRole, NewApp, Slug};
use crate::ids::{AdminUserId, AppId};
use crate::ports::AppRepoError;
use crate::stores::Stores;
use crate::testkit::Fixture;

use super::{only, slug};

/// The cases of this module, in order: `apps => case, ...`, handed to
/// `$callback` after `$args`. `__conformance_ports!` calls it: the
/// conformance module re-exports exactly these functions, and
/// [`conformance_tests!`](crate::conformance_tests) runs exactly these.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_apps_cases {
    ($($callback:ident)::+; $($args:tt)*) => {
        $($callback)::+! { $($args)* apps =>
            apps_create_then_get_and_find_by_slug,
            apps_duplicate_slug_is_conflict,
            apps_missing_are_none,
            apps_list_is_ordered_by_slug,
            apps_list_for_member_is_explicit_memberships_only,
            apps_delete_cascades_memberships,
            apps_delete_missing_is_not_found,
            apps_rename_changes_only_the_name,
            apps_resolve_by_id_or_slug,
            timestamps_round_trip_exactly,
        }
    };
}

/// A rename changes the display name and nothing else, reads back by id
/// and by slug, and a missing app is `NotFound`.
pub async fn apps_rename_changes_only_the_name(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = fx.app("renamed").await;
    let other = fx.app("untouched").await;
    let name = crate::testkit::display_name("A New Name");
    let renamed = stores.apps.rename(app.id, name.clone()).await.unwrap();
    assert_eq!(renamed.name, name);
    assert_eq!((renamed.id, &renamed.slug), (app.id, &app.slug));
    assert_eq!(renamed.created_at, app.created_at);
    assert_eq!(
        stores.apps.get(app.id).await.unwrap(),
        Some(renamed.clone())
    );
    assert_eq!(
        stores.apps.find_by_slug(app.slug.as_str()).await.unwrap(),
        Some(renamed)
    );
    assert_eq!(stores.apps.get(other.id).await.unwrap(), Some(other));
    let err = stores.apps.rename(AppId::new(), name).await.unwrap_err();
    assert!(matches!(err, AppRepoError::NotFound), "{err:?}");
}

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
        .create(NewApp::new(
            app.slug.clone(),
            crate::testkit::display_name("other"),
        ))
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
        .create(NewApp::new(
            app.slug.clone(),
            crate::testkit::display_name("again"),
        ))
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
            .create(NewApp::new(s, crate::testkit::display_name("uuid-like")))
            .await
            .unwrap();
        assert_eq!(stores.apps.resolve(&uuidish).await.unwrap(), Some(app));
    }
}

/// Timestamps read back exactly as written (microsecond precision).
pub async fn timestamps_round_trip_exactly(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let new = NewApp::new(
        slug(&format!("{}-ts", fx.tag())),
        crate::testkit::display_name("ts"),
    );
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
