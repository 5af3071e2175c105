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
//! - `strict_mocks` (with feature `mock` too): a [`Stores`] of `mockall`
//!   mocks that expect nothing, for a test to override port by port.

pub mod conformance;
pub mod model;
pub mod ops;
pub mod service_model;
pub mod world;

use uuid::Uuid;

use crate::domain::{
    AdminUser, App, DisplayName, Email, InstanceRole, NewAdminUser, NewApp, Principal, Slug,
    Username,
};
use crate::stores::Stores;

/// A [`Stores`] of `mockall` mocks with no expectations (needs feature
/// `mock` too): any call on any port panics. A test builds the mocks it
/// expects calls on and takes the rest from here, so that a new port changes
/// only this function:
///
/// ```ignore
/// let mut stores = picloud_core::testkit::strict_mocks();
/// stores.apps = Arc::new(apps_mock);
/// ```
#[cfg(feature = "mock")]
#[cfg_attr(docsrs, doc(cfg(feature = "mock")))]
pub fn strict_mocks() -> Stores {
    use std::sync::Arc;

    use crate::ports::{
        apps, authz, domains, env, invocations, jobs, kv, members, nodes, schedules, scripts,
        settings, subscriptions, tokens, users,
    };

    Stores {
        apps: Arc::new(apps::MockAppRepository::new()),
        users: Arc::new(users::MockAdminUserRepository::new()),
        members: Arc::new(members::MockAppMembersRepository::new()),
        authz: Arc::new(authz::MockAuthzRepository::new()),
        tokens: Arc::new(tokens::MockTokenRepository::new()),
        scripts: Arc::new(scripts::MockScriptRepository::new()),
        invocations: Arc::new(invocations::MockInvocationRepository::new()),
        settings: Arc::new(settings::MockAppSettingsRepository::new()),
        jobs: Arc::new(jobs::MockJobQueue::new()),
        schedules: Arc::new(schedules::MockScheduleRepository::new()),
        subscriptions: Arc::new(subscriptions::MockSubscriptionRepository::new()),
        kv: Arc::new(kv::MockKvStore::new()),
        env: Arc::new(env::MockEnvRepository::new()),
        domains: Arc::new(domains::MockDomainRepository::new()),
        nodes: Arc::new(nodes::MockNodeRepository::new()),
    }
}

/// `s` as a [`Username`]; panics if it is not one (for tests).
pub fn username(s: impl AsRef<str>) -> Username {
    Username::parse(s.as_ref()).unwrap_or_else(|e| panic!("{:?}: {e}", s.as_ref()))
}

/// `s` as a [`DisplayName`]; panics if it is not one (for tests).
pub fn display_name(s: impl AsRef<str>) -> DisplayName {
    DisplayName::parse(s.as_ref()).unwrap_or_else(|e| panic!("{:?}: {e}", s.as_ref()))
}

/// `s` as an [`Email`]; panics if it is not one (for tests).
pub fn email(s: impl AsRef<str>) -> Email {
    Email::parse(s.as_ref()).unwrap_or_else(|e| panic!("{:?}: {e}", s.as_ref()))
}

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
        let new = NewAdminUser::new(username(format!("{}-{name}", self.tag)), role);
        self.stores.users.create(new).await.expect("create user")
    }

    /// Creates an active owner `{tag}-owner` and returns its principal: the
    /// caller most service tests start from.
    pub async fn owner(&self) -> Principal {
        Self::principal(&self.user("owner", InstanceRole::Owner).await)
    }

    /// Creates an inactive user `{tag}-{name}` with `role`. Created inactive
    /// rather than deactivated afterwards: no guarded update is needed, and
    /// an inactive owner can be made in a store with no active owner.
    pub async fn inactive_user(&self, name: &str, role: InstanceRole) -> AdminUser {
        let new = NewAdminUser {
            is_active: false,
            ..NewAdminUser::new(username(format!("{}-{name}", self.tag)), role)
        };
        self.stores
            .users
            .create(new)
            .await
            .expect("create inactive user")
    }

    /// Creates an app with the slug `{tag}-{name}`.
    pub async fn app(&self, name: &str) -> App {
        let slug = Slug::parse(&format!("{}-{name}", self.tag)).expect("valid slug");
        self.stores
            .apps
            .create(NewApp::new(slug, display_name(name)))
            .await
            .expect("create app")
    }

    /// The principal of `user` (unscoped).
    pub fn principal(user: &AdminUser) -> Principal {
        Principal::of(user)
    }
}
