//! [`Stores`]: one bundle of every port, as trait objects.
//!
//! Services, transports and the conformance suite take a `Stores` rather than
//! four separate arguments. A store crate usually implements every port on one
//! value and hands it out as several views with [`Stores::from_shared`].

use std::fmt;
use std::sync::Arc;

use crate::ports::{
    AdminUserRepository, AppMembersRepository, AppRepository, AppSettingsRepository,
    AuthzRepository, DomainRepository, EnvRepository, InvocationRepository, JobQueue, KvStore,
    NodeRepository, ScheduleRepository, ScriptRepository, SubscriptionRepository, TokenRepository,
};

/// Every port PiCloud needs, as shared trait objects.
///
/// Non-exhaustive, so that a new port is not a breaking change: build one
/// with [`Stores::from_shared`] (or `testkit::strict_mocks`), then replace
/// any port by assigning its field.
#[derive(Clone)]
#[non_exhaustive]
pub struct Stores {
    /// Apps.
    pub apps: Arc<dyn AppRepository>,
    /// Users.
    pub users: Arc<dyn AdminUserRepository>,
    /// Explicit app memberships.
    pub members: Arc<dyn AppMembersRepository>,
    /// The authorization fact source (explicit app roles).
    pub authz: Arc<dyn AuthzRepository>,
    /// API tokens (hashed).
    pub tokens: Arc<dyn TokenRepository>,
    /// Scripts and their versions.
    pub scripts: Arc<dyn ScriptRepository>,
    /// Recent invocations.
    pub invocations: Arc<dyn InvocationRepository>,
    /// Per-app settings (the limits override).
    pub settings: Arc<dyn AppSettingsRepository>,
    /// The job queue of the event engine.
    pub jobs: Arc<dyn JobQueue>,
    /// Cron schedules.
    pub schedules: Arc<dyn ScheduleRepository>,
    /// Topic subscriptions.
    pub subscriptions: Arc<dyn SubscriptionRepository>,
    /// Each app's key-value state.
    pub kv: Arc<dyn KvStore>,
    /// Each app's environment, secrets and data key.
    pub env: Arc<dyn EnvRepository>,
    /// Custom domains.
    pub domains: Arc<dyn DomainRepository>,
    /// The nodes of a cluster.
    pub nodes: Arc<dyn NodeRepository>,
}

impl Stores {
    /// Hands out one store value that implements every port as one view per
    /// port. All views share the same instance (and so the same connection
    /// pool or the same memory).
    pub fn from_shared<S>(store: Arc<S>) -> Self
    where
        S: AppRepository
            + AdminUserRepository
            + AppMembersRepository
            + AuthzRepository
            + TokenRepository
            + ScriptRepository
            + InvocationRepository
            + AppSettingsRepository
            + JobQueue
            + ScheduleRepository
            + SubscriptionRepository
            + KvStore
            + EnvRepository
            + DomainRepository
            + NodeRepository
            + 'static,
    {
        Self {
            apps: store.clone(),
            users: store.clone(),
            members: store.clone(),
            authz: store.clone(),
            tokens: store.clone(),
            scripts: store.clone(),
            invocations: store.clone(),
            settings: store.clone(),
            jobs: store.clone(),
            schedules: store.clone(),
            subscriptions: store.clone(),
            kv: store.clone(),
            env: store.clone(),
            domains: store.clone(),
            nodes: store,
        }
    }
}

impl fmt::Debug for Stores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stores").finish_non_exhaustive()
    }
}
