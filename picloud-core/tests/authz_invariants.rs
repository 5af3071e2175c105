//! Invariants of the pure decision, over random principals (Cedar-style):
//! it agrees with the reference model, an inactive principal holds nothing,
//! an active unscoped owner holds everything, app roles are monotone and an
//! instance admin never holds `AppAdmin`.

use picloud_core::testkit::model;
use picloud_core::testkit::world::{arb_app_role, arb_instance_role};
use picloud_core::{AdminUserId, AppId, AppRole, Capability, InstanceRole, Principal, TokenScope};
use picloud_core::{decide, my_role};
use proptest::prelude::*;

/// Two fixed apps, so that scopes sometimes match and sometimes do not.
fn apps() -> [AppId; 2] {
    [
        AppId::from(uuid::Uuid::from_u128(1)),
        AppId::from(uuid::Uuid::from_u128(2)),
    ]
}

fn arb_principal() -> impl Strategy<Value = Principal> {
    (
        arb_instance_role(),
        any::<bool>(),
        prop::option::of((0usize..2, arb_app_role())),
    )
        .prop_map(|(instance_role, is_active, scope)| Principal {
            user_id: AdminUserId::from(uuid::Uuid::from_u128(7)),
            instance_role,
            is_active,
            scope: scope.map(|(i, max_role)| TokenScope {
                app_id: apps()[i],
                max_role,
            }),
        })
}

fn arb_capability() -> impl Strategy<Value = Capability> {
    (0usize..7, 0usize..2).prop_map(|(k, a)| {
        let app = apps()[a];
        match k {
            0 => Capability::InstanceManageUsers,
            1 => Capability::InstanceManageRoles,
            2 => Capability::CreateApp,
            3 => Capability::AppView(app),
            4 => Capability::AppEdit(app),
            5 => Capability::AppAdmin(app),
            _ => Capability::ManageOwnTokens,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn decide_agrees_with_the_model(
        p in arb_principal(),
        explicit in prop::option::of(arb_app_role()),
        cap in arb_capability(),
    ) {
        prop_assert_eq!(decide(&p, explicit, cap), model::allowed(&p, explicit, cap));
    }

    #[test]
    fn an_inactive_principal_holds_nothing(
        mut p in arb_principal(),
        explicit in prop::option::of(arb_app_role()),
        cap in arb_capability(),
    ) {
        p.is_active = false;
        prop_assert!(!decide(&p, explicit, cap));
        if let Some(app) = cap.app() {
            prop_assert_eq!(my_role(&p, app, explicit), None);
        }
    }

    #[test]
    fn an_active_unscoped_owner_holds_everything(
        explicit in prop::option::of(arb_app_role()),
        cap in arb_capability(),
    ) {
        let p = Principal {
            user_id: AdminUserId::new(),
            instance_role: InstanceRole::Owner,
            is_active: true,
            scope: None,
        };
        prop_assert!(decide(&p, explicit, cap));
    }

    #[test]
    fn app_roles_are_monotone(
        p in arb_principal(),
        lower in arb_app_role(),
        higher in arb_app_role(),
        cap in arb_capability(),
    ) {
        let (lower, higher) = if lower <= higher { (lower, higher) } else { (higher, lower) };
        // app_admin ⊇ editor ⊇ viewer ⊇ no role.
        if decide(&p, None, cap) {
            prop_assert!(decide(&p, Some(lower), cap));
        }
        if decide(&p, Some(lower), cap) {
            prop_assert!(decide(&p, Some(higher), cap));
        }
    }

    #[test]
    fn an_admin_never_holds_app_admin(
        mut p in arb_principal(),
        explicit in prop::option::of(arb_app_role()),
        a in 0usize..2,
    ) {
        p.instance_role = InstanceRole::Admin;
        prop_assert!(!decide(&p, explicit, Capability::AppAdmin(apps()[a])));
    }

    #[test]
    fn a_scope_never_widens(
        p in arb_principal(),
        explicit in prop::option::of(arb_app_role()),
        cap in arb_capability(),
    ) {
        let unscoped = Principal { scope: None, ..p };
        if decide(&p, explicit, cap) {
            prop_assert!(decide(&unscoped, explicit, cap));
        }
        if let (Some(scope), Some(need)) = (p.scope, cap.required_app_role())
            && decide(&p, explicit, cap)
        {
            prop_assert!(scope.max_role >= need);
        }
    }

    #[test]
    fn explicit_rows_do_not_matter_to_owners_and_admins(
        mut p in arb_principal(),
        explicit in prop::option::of(arb_app_role()),
        cap in arb_capability(),
        owner in any::<bool>(),
    ) {
        p.instance_role = if owner { InstanceRole::Owner } else { InstanceRole::Admin };
        prop_assert_eq!(decide(&p, explicit, cap), decide(&p, None, cap));
    }
}

#[test]
fn my_role_is_the_highest_role_that_decide_allows() {
    let app = apps()[0];
    for instance_role in InstanceRole::ALL {
        for explicit in [
            None,
            Some(AppRole::Viewer),
            Some(AppRole::Editor),
            Some(AppRole::AppAdmin),
        ] {
            let p = Principal {
                user_id: AdminUserId::new(),
                instance_role,
                is_active: true,
                scope: None,
            };
            let role = my_role(&p, app, explicit);
            let caps = [
                (AppRole::Viewer, Capability::AppView(app)),
                (AppRole::Editor, Capability::AppEdit(app)),
                (AppRole::AppAdmin, Capability::AppAdmin(app)),
            ];
            for (need, cap) in caps {
                assert_eq!(role.is_some_and(|r| r >= need), decide(&p, explicit, cap));
            }
        }
    }
}
