//! The testkit (feature `testkit`): everything a store author or a property
//! tester needs to prove a store correct.
//!
//! - [`conformance`]: the public conformance suite. A store crate runs all of
//!   it with one macro call, [`conformance_tests!`](crate::conformance_tests).
//! - [`model`]: a reference model of the capability table, written as a table,
//!   independently of [`crate::authz`].
//! - [`world`]: proptest strategies for random worlds (users with instance
//!   roles and activity, apps, memberships) and a way to install one in a store.
//! - [`service_model`]: random grant / change / remove sequences run through
//!   the membership service and checked against a simple model.
//! - [`ops`]: random sequences of raw repository operations with normalized
//!   observations, so that two stores can be compared op by op.
//! - [`Fixture`]: quick creation of users and apps with unique names.

pub mod conformance;
pub mod model;
pub mod ops;
pub mod service_model;
pub mod world;

use uuid::Uuid;

use crate::domain::{AdminUser, App, InstanceRole, NewAdminUser, NewApp, Principal, Slug};
use crate::stores::Stores;

/// A short random lowercase tag, to keep names unique when tests share a store.
pub fn unique_tag() -> String {
    let id = Uuid::new_v4().simple().to_string();
    format!("t{}", &id[..11])
}

/// Creates users and apps with unique names in a store.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The store under test.
    pub stores: Stores,
    tag: String,
}

impl Fixture {
    /// A fixture over `stores`, with a fresh unique tag for names.
    pub fn new(stores: Stores) -> Self {
        Self {
            stores,
            tag: unique_tag(),
        }
    }

    /// The tag every name this fixture creates starts with.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Creates an active user `{tag}-{name}` with `role`.
    pub async fn user(&self, name: &str, role: InstanceRole) -> AdminUser {
        let new = NewAdminUser::new(format!("{}-{name}", self.tag), role);
        self.stores.users.create(new).await.expect("create user")
    }

    /// Creates a user, then deactivates them.
    pub async fn inactive_user(&self, name: &str, role: InstanceRole) -> AdminUser {
        let user = self.user(name, role).await;
        self.stores
            .users
            .set_active(user.id, false)
            .await
            .expect("deactivate user")
    }

    /// Creates an app with the slug `{tag}-{name}`.
    pub async fn app(&self, name: &str) -> App {
        let slug = Slug::parse(&format!("{}-{name}", self.tag)).expect("valid slug");
        self.stores
            .apps
            .create(NewApp::new(slug, name))
            .await
            .expect("create app")
    }

    /// The principal of `user` (unscoped).
    pub fn principal(user: &AdminUser) -> Principal {
        Principal::of(user)
    }
}
