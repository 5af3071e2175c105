//! Random "worlds" for property tests: users with instance roles, activity
//! and optional token scopes, apps, and explicit memberships.
//!
//! A [`WorldSpec`] is pure data that proptest generates and shrinks;
//! [`WorldSpec::install`] writes it into any store and returns the [`World`]
//! with the real ids.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::sample::Index;

use crate::authz::{self, Capability};
use crate::domain::{
    AdminUser, App, AppRole, InstanceRole, NewAdminUser, NewApp, Principal, Slug, TokenScope,
};
use crate::stores::Stores;

use super::model;

/// One user of a world.
#[derive(Debug, Clone)]
pub struct UserSpec {
    /// Their instance role.
    pub instance_role: InstanceRole,
    /// Whether they are active.
    pub is_active: bool,
    /// An optional token scope: an app index (modulo the number of apps) and a
    /// maximum role. Property tests check both the plain and the scoped principal.
    pub token_scope: Option<(Index, AppRole)>,
}

/// A world as data.
#[derive(Debug, Clone)]
pub struct WorldSpec {
    /// The users, by index.
    pub users: Vec<UserSpec>,
    /// How many apps.
    pub apps: usize,
    /// Explicit memberships `(user, app, role)`; later entries overwrite
    /// earlier ones for the same pair. Owners and admins may get rows too, to
    /// check that they are ignored.
    pub memberships: Vec<(Index, Index, AppRole)>,
}

/// Any instance role.
pub fn arb_instance_role() -> impl Strategy<Value = InstanceRole> {
    prop::sample::select(InstanceRole::ALL.to_vec())
}

/// Any app role.
pub fn arb_app_role() -> impl Strategy<Value = AppRole> {
    prop::sample::select(AppRole::ALL.to_vec())
}

/// A user of a world; mostly active, mostly unscoped.
pub fn arb_user_spec() -> impl Strategy<Value = UserSpec> {
    (
        arb_instance_role(),
        prop::bool::weighted(0.8),
        prop::option::weighted(0.25, (any::<Index>(), arb_app_role())),
    )
        .prop_map(|(instance_role, is_active, token_scope)| UserSpec {
            instance_role,
            is_active,
            token_scope,
        })
}

/// A world of 1–6 users, 1–3 apps and up to 12 memberships.
pub fn arb_world() -> impl Strategy<Value = WorldSpec> {
    (
        prop::collection::vec(arb_user_spec(), 1..=6),
        1usize..=3,
        prop::collection::vec((any::<Index>(), any::<Index>(), arb_app_role()), 0..=12),
    )
        .prop_map(|(users, apps, memberships)| WorldSpec {
            users,
            apps,
            memberships,
        })
}

/// A world installed in a store.
#[derive(Debug, Clone)]
pub struct World {
    /// The spec it came from.
    pub spec: WorldSpec,
    /// The stored users, by index.
    pub users: Vec<AdminUser>,
    /// The stored apps, by index.
    pub apps: Vec<App>,
    /// The explicit role of `(user, app)` by index, as stored.
    pub explicit: BTreeMap<(usize, usize), AppRole>,
}

impl WorldSpec {
    /// Writes the world into `stores`, naming users `{tag}-u{i}` and apps
    /// `{tag}-a{i}` (`tag` must be a valid slug prefix, e.g.
    /// [`super::unique_tag`]).
    pub async fn install(&self, stores: &Stores, tag: &str) -> World {
        let mut users = Vec::with_capacity(self.users.len());
        for (i, spec) in self.users.iter().enumerate() {
            let mut new = NewAdminUser::new(
                crate::testkit::username(format!("{tag}-u{i}")),
                spec.instance_role,
            );
            new.is_active = spec.is_active;
            users.push(stores.users.create(new).await.expect("create user"));
        }
        let mut apps = Vec::with_capacity(self.apps);
        for i in 0..self.apps {
            let slug = Slug::parse(&format!("{tag}-a{i}")).expect("valid slug");
            let new = NewApp::new(slug, crate::testkit::display_name(format!("app {i}")));
            apps.push(stores.apps.create(new).await.expect("create app"));
        }
        let mut explicit = BTreeMap::new();
        for (u, a, role) in &self.memberships {
            let (u, a) = (u.index(users.len()), a.index(apps.len()));
            stores
                .members
                .upsert(apps[a].id, users[u].id, *role)
                .await
                .expect("upsert membership");
            explicit.insert((u, a), *role);
        }
        World {
            spec: self.clone(),
            users,
            apps,
            explicit,
        }
    }
}

impl World {
    /// The principals to check for user `i`: the plain one, and the scoped one
    /// if the spec gives the user a token scope.
    pub fn principals(&self, i: usize) -> Vec<Principal> {
        let plain = Principal::of(&self.users[i]);
        let mut out = vec![plain];
        if let Some((app, max_role)) = self.spec.users[i].token_scope {
            out.push(plain.scoped(TokenScope {
                app_id: self.apps[app.index(self.apps.len())].id,
                max_role,
            }));
        }
        out
    }

    /// The explicit role of user `i` on the capability's app, as installed.
    pub fn explicit_for(&self, i: usize, capability: Capability) -> Option<AppRole> {
        let app = capability.app()?;
        let a = self.apps.iter().position(|x| x.id == app)?;
        self.explicit.get(&(i, a)).copied()
    }

    /// Checks, for every principal of the world and every capability, that
    /// [`authz::require`] through the store agrees with the reference model.
    /// Panics with the disagreement otherwise.
    pub async fn check_require_agrees_with_model(&self, stores: &Stores) {
        let app_ids: Vec<_> = self.apps.iter().map(|a| a.id).collect();
        for cap in model::all_capabilities(&app_ids) {
            for i in 0..self.users.len() {
                let explicit = self.explicit_for(i, cap);
                for p in self.principals(i) {
                    let expected = model::allowed(&p, explicit, cap);
                    let got = authz::require(stores.authz.as_ref(), &p, cap).await;
                    let got = match got {
                        Ok(()) => true,
                        Err(authz::AuthzDenied::Denied) => false,
                        Err(e) => panic!("require failed: {e}"),
                    };
                    assert_eq!(
                        got, expected,
                        "require disagrees with the model for {p:?} (explicit {explicit:?}) on {cap:?}"
                    );
                }
            }
        }
    }
}
