//! Ports: the repository traits a store implements.
//!
//! Every trait is `#[async_trait]`, `Send + Sync`, and usable as
//! `Arc<dyn Trait>`. Each has its own error enum with meaningful variants
//! (`NotFound`, `Conflict`) plus `Backend` for everything else, so that one
//! conformance suite can assert on errors across every store. With the `mock`
//! feature, each trait also gets a `mockall` mock (`MockAppRepository`, ...).
//!
//! To add a port, copy the shape of [`settings`] (the newest, and small): the
//! trait, its `#[non_exhaustive]` error enum with a `Backend(BoxError)`
//! variant, the `automock` attribute; then a field of [`crate::Stores`], a
//! conformance module, and one file per store. ARCHITECTURE.md ("How to add
//! a port") lists the four places.

pub mod apps;
pub mod authz;
pub mod domains;
pub mod env;
pub mod invocations;
pub mod jobs;
pub mod kv;
pub mod members;
pub mod nodes;
pub mod schedules;
pub mod scripts;
pub mod settings;
pub mod subscriptions;
pub mod tokens;
pub mod users;

pub use apps::{AppRepoError, AppRepository};
pub use authz::{AuthzRepoError, AuthzRepository};
pub use domains::{Domain, DomainRepoError, DomainRepository};
pub use env::{EnvRepoError, EnvRepository};
pub use invocations::{
    INVOCATION_BYTES_PER_APP, INVOCATION_BYTES_PER_SCRIPT, INVOCATION_RECORD_MAX_BYTES,
    INVOCATIONS_KEPT, InvocationFilter, InvocationRepoError, InvocationRepository, WrittenRecord,
    fit_record, fit_record_copy,
};
pub use jobs::{Completion, Enqueued, JobFilter, JobQueue, JobQueueError};
pub use kv::{KvError, KvStore};
pub use members::{AppMembersRepoError, AppMembersRepository};
pub use nodes::{NodeRecord, NodeRepoError, NodeRepository};
pub use schedules::{ScheduleRepoError, ScheduleRepository};
pub use scripts::{
    QuotaExceeded, SOURCE_BYTES_PER_APP, ScriptRepoError, ScriptRepository, StorageQuota,
    VERSIONS_PER_SCRIPT,
};
pub use settings::{AppSettingsRepository, SettingsRepoError};
pub use subscriptions::{SubscriptionRepoError, SubscriptionRepository};
pub use tokens::{TokenRepoError, TokenRepository};
pub use users::{AdminUserRepoError, AdminUserRepository};

/// A backend's own error (a database driver error, say), boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
