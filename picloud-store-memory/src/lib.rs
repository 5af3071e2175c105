//! # picloud-store-memory
//!
//! An in-memory implementation of every PiCloud port. It is the default store
//! of the `picloud` server (nothing persists across restarts) and the reference
//! against which other stores are compared: it passes the same conformance
//! suite as the PostgreSQL store and mirrors its observable semantics, down to
//! foreign keys (a membership needs an existing app and user), cascades
//! (deleting an app deletes its memberships) and ordering.
//!
//! Every operation takes one lock for its whole duration, which makes each one
//! atomic exactly as a single SQL statement is: `try_insert` never overwrites,
//! `update_role` never creates.
//!
//! ```
//! use picloud_store_memory::MemoryStore;
//!
//! let stores = MemoryStore::new().into_stores();
//! # let _ = stores;
//! ```
#![forbid(unsafe_code)]

mod apps;
mod authz;
mod domains;
mod env;
mod invocations;
mod jobs;
mod kv;
mod members;
mod nodes;
mod scripts;
mod settings;
mod tokens;
mod users;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use picloud_core::Stores;
use picloud_core::domain::{AdminUser, App, AppMembership, Script, ScriptVersion};
use picloud_core::ids::{AdminUserId, AppId, ScriptId};

/// Every port in memory. Cheap to create; share it through an `Arc`.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: RwLock<State>,
}

#[derive(Debug, Default)]
struct State {
    apps: HashMap<AppId, App>,
    app_slugs: HashMap<String, AppId>,
    users: HashMap<AdminUserId, StoredUser>,
    usernames: HashMap<String, AdminUserId>,
    /// Memberships keyed by `(app, user)`, so one app's rows are a range.
    members: BTreeMap<(AppId, AdminUserId), AppMembership>,
    /// The same memberships by `(user, app)`, for "apps I can see".
    members_by_user: BTreeSet<(AdminUserId, AppId)>,
    /// API tokens by the hash of their secret, indexed by id, user, scope
    /// app and expiry.
    tokens: tokens::Tokens,
    /// Scripts by `(app, name)`, so one app's scripts are a range, by name.
    scripts: BTreeMap<(AppId, String), StoredScript>,
    /// Per-app limits overrides, dropped with their app.
    app_limits: HashMap<AppId, picloud_core::limits::Limits>,
    /// Per-app public error detail, where set; dropped with their app.
    public_errors: HashMap<AppId, picloud_core::domain::PublicErrors>,
    /// Per-app allowlists of outbound hosts, where set; dropped with their
    /// app.
    egress_hosts: HashMap<AppId, Vec<String>>,
    /// Recent invocations per script, oldest first (by start time, then
    /// arrival).
    invocations: HashMap<ScriptId, VecDeque<invocations::KeptRecord>>,
    /// The arrival number of the next invocation record (PostgreSQL's
    /// `bigserial` id), which breaks ties between equal start times.
    next_record: u64,
    /// Jobs, schedules and subscriptions.
    events: jobs::Events,
    /// Each app's KV state; dropped with their app.
    kv: kv::Kv,
    /// Each app's environment and data key; dropped with their app.
    env: env::Env,
    /// Custom domains, by name and by app; dropped with their app.
    domains: domains::Domains,
    /// The nodes that registered (this process's server, if any).
    nodes: HashMap<uuid::Uuid, picloud_core::ports::NodeRecord>,
}

#[derive(Debug, Clone)]
struct StoredScript {
    script: Script,
    versions: Vec<ScriptVersion>,
    /// The bytes of all `versions`' sources (what the app's quota counts).
    source_bytes: u64,
}

#[derive(Debug, Clone)]
struct StoredUser {
    user: AdminUser,
    password_hash: Option<String>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// This store as a [`Stores`] bundle: one shared instance, one view per port.
    pub fn into_stores(self) -> Stores {
        Stores::from_shared(Arc::new(self))
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave `State` half-written:
        // every mutation is a handful of infallible map operations.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

// Helpers shared by several ports' modules.

/// The smallest UUID: the lower end of a range over one key's rows.
const fn uuid_min() -> uuid::Uuid {
    uuid::Uuid::nil()
}

/// The largest UUID: the upper end of a range over one key's rows.
const fn uuid_max() -> uuid::Uuid {
    uuid::Uuid::max()
}

/// One app's memberships, by user.
fn app_range(
    members: &BTreeMap<(AppId, AdminUserId), AppMembership>,
    app: AppId,
) -> impl Iterator<Item = (&(AppId, AdminUserId), &AppMembership)> {
    members.range((app, AdminUserId::from(uuid_min()))..=(app, AdminUserId::from(uuid_max())))
}

impl State {
    /// The app's scripts, by name.
    fn app_scripts(&self, app: AppId) -> impl Iterator<Item = &StoredScript> {
        self.scripts
            .range((app, String::new())..)
            .take_while(move |((a, _), _)| *a == app)
            .map(|(_, st)| st)
    }
}
