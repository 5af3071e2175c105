//! Conformance cases of the authz port,
//! [`AuthzRepository`](crate::ports::AuthzRepository).

use crate::authz::{self, AuthzDenied, Capability};
use crate::domain::{AppRole, InstanceRole};
use crate::stores::Stores;
use crate::testkit::Fixture;

/// The cases of this module, in order: `authz => case, ...`, handed to
/// `$callback` after `$args`. `__conformance_ports!` calls it: the
/// conformance module re-exports exactly these functions, and
/// [`conformance_tests!`](crate::conformance_tests) runs exactly these.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_authz_cases {
    ($($callback:ident)::+; $($args:tt)*) => {
        $($callback)::+! { $($args)* authz =>
            authz_app_role_follows_memberships,
            authz_require_follows_the_table,
        }
    };
}

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
