//! Applying the change channel to a node's caches, and the cluster view.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{Change, ChangeFeed, FeedEvent, NODE_GONE_AFTER, NodeRole};
use crate::authz::{AuthzDenied, Capability};
use crate::domain::{Principal, QueueUsage};
use crate::domains::DomainService;
use crate::events::EventService;
use crate::ids::AppId;
use crate::ports::{JobQueueError, NodeRepoError};
use crate::scripts::ScriptService;
use crate::stores::Stores;

/// The most records of one writer's batch a node reads for its live tails:
/// a tail shows at most this many of one batch, and skips the rest (a live
/// tail is a view, not the log; the invocation log keeps every record).
const RUNS_PER_READ: usize = 32;

/// The most (app, writer) positions a follower remembers; past it, it
/// forgets them all (a tail then starts again from the next batch).
const MAX_CURSORS: usize = 10_000;

/// Applies the change channel to one node's caches: scripts (deploys,
/// rollbacks, limits, apps created, renamed or deleted), custom domains,
/// env and secrets, the job runner's and the scheduler's wake-ups, and the
/// runs other nodes recorded, for this node's live tails.
pub struct Follower {
    events: EventService,
    domains: DomainService,
    /// This node's name as its records carry it: its own runs reach its
    /// tails directly, not through the store.
    me: String,
    /// The last record shown of each (app, writer).
    cursors: HashMap<(AppId, String), i64>,
    /// Called with each notification's lag (a metric).
    on_lag: Option<Box<dyn Fn(Duration) + Send + Sync>>,
    /// The apps being brought up to date, each by a task of its own: `true`
    /// when another change came meanwhile (the task goes again). One
    /// app's large recompile never holds up another app's change.
    syncing: Arc<Mutex<HashMap<AppId, bool>>>,
    /// How many apps are brought up to date at once (a resync of many apps
    /// must not take every store connection, nor every core).
    sync_slots: Arc<tokio::sync::Semaphore>,
}

/// How many apps a follower brings up to date at once.
const SYNCS_AT_ONCE: usize = 4;

/// How often one app's refresh is tried before the follower gives up on it
/// (until its next change or the next resync).
const SYNC_TRIES: u32 = 5;

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

impl Follower {
    /// A follower for the node whose services these are; `me` is the name
    /// its store connection writes its records under.
    pub fn new(events: EventService, domains: DomainService, me: impl Into<String>) -> Self {
        Self {
            events,
            domains,
            me: me.into(),
            cursors: HashMap::new(),
            on_lag: None,
            syncing: Arc::default(),
            sync_slots: Arc::new(tokio::sync::Semaphore::new(SYNCS_AT_ONCE)),
        }
    }

    /// Calls `f` with the lag of every notification that says when its
    /// change began (for a metric).
    #[must_use]
    pub fn on_lag(mut self, f: impl Fn(Duration) + Send + Sync + 'static) -> Self {
        self.on_lag = Some(Box::new(f));
        self
    }

    fn scripts(&self) -> &ScriptService {
        self.events.scripts()
    }

    /// Applies one change to this node's caches. Failures are logged: the
    /// next change of the same thing, or the next resync, mends them.
    pub async fn apply(&mut self, change: Change) {
        match change {
            Change::Script { app } => self.sync_app(app),
            Change::App { app } => {
                self.sync_app(app);
                self.refresh_domains().await;
            }
            Change::Schedule => self.events.schedule_signal().notify_one(),
            // Nothing caches subscriptions: an emit reads them.
            Change::Subscription => {}
            Change::Jobs => self.scripts().job_signal().notify_one(),
            Change::Domain => self.refresh_domains().await,
            Change::Env { app } => self.scripts().env().forget(app),
            Change::Runs {
                app,
                node,
                first,
                last,
            } => self.show_runs(app, node, first, last).await,
        }
    }

    /// Brings the app up to date on a task of its own; changes that come
    /// while it runs make it go once more (not once each).
    fn sync_app(&self, app: AppId) {
        {
            let mut syncing = self.syncing.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(again) = syncing.get_mut(&app) {
                *again = true;
                return;
            }
            syncing.insert(app, false);
        }
        let (scripts, syncing) = (self.scripts().clone(), Arc::clone(&self.syncing));
        let slots = Arc::clone(&self.sync_slots);
        tokio::spawn(async move {
            loop {
                let Ok(_slot) = slots.acquire().await else {
                    return;
                };
                for tries in 1..=SYNC_TRIES {
                    match scripts.sync_app(app).await {
                        Ok(()) => break,
                        Err(e) => {
                            tracing::warn!(%app, error = %e, tries, "cluster: refreshing an app failed");
                            if tries < SYNC_TRIES {
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                    }
                }
                let mut syncing = syncing.lock().unwrap_or_else(PoisonError::into_inner);
                if syncing.get(&app) == Some(&true) {
                    syncing.insert(app, false);
                    continue;
                }
                syncing.remove(&app);
                break;
            }
        });
    }

    async fn refresh_domains(&self) {
        if let Err(e) = self.domains.refresh().await {
            tracing::warn!(error = %e, "cluster: refreshing the custom domains failed");
        }
    }

    /// Shows the runs `first..=last` that `node` recorded of `app` on this
    /// node's tails of the app, if it has any (and if `node` is another).
    async fn show_runs(&mut self, app: AppId, node: String, first: i64, last: i64) {
        if node == self.me {
            return;
        }
        let key = (app, node);
        if !self.scripts().is_followed(app) {
            self.cursors.remove(&key);
            return;
        }
        let shown = match self.cursors.get(&key) {
            Some(&at) => at,
            None => first.saturating_sub(1),
        };
        // The newest RUNS_PER_READ of what is new, at most.
        let width = i64::try_from(RUNS_PER_READ).unwrap_or(i64::MAX);
        let after = shown.max(last.saturating_sub(width));
        if after < last {
            let stores = self.scripts().stores().clone();
            match stores
                .invocations
                .written_by(app, &key.1, after, RUNS_PER_READ)
                .await
            {
                Ok(batch) => {
                    for written in batch.into_iter().filter(|w| w.position <= last) {
                        self.scripts()
                            .publish_remote(app, written.script, &written.record);
                    }
                }
                Err(e) => {
                    tracing::warn!(%app, error = %e, "cluster: reading another node's runs failed");
                }
            }
        }
        if self.cursors.len() >= MAX_CURSORS {
            self.cursors.clear();
        }
        self.cursors.insert(key, shown.max(last));
    }

    /// Re-reads everything this node caches: every app and its scripts,
    /// the custom domains, every app's env; and wakes the runner and the
    /// scheduler (jobs and schedules may have changed meanwhile). Retries
    /// until the store answers.
    pub async fn resync(&mut self) {
        let mut wait = Duration::from_millis(100);
        loop {
            match self.scripts().forget_stale_apps().await {
                Ok(apps) => {
                    // A task per app: one app's slow compile holds up no
                    // other app, nor the changes that follow.
                    for app in apps {
                        self.sync_app(app.id);
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cluster: resynchronising failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
        self.refresh_domains().await;
        self.scripts().env().forget_all();
        self.cursors.clear();
        self.scripts().job_signal().notify_one();
        self.events.schedule_signal().notify_one();
    }

    /// Follows `feed` until it ends: each change applied in order, and a
    /// full [`resync`](Self::resync) whenever the feed (re)connects.
    pub async fn follow(mut self, mut feed: Box<dyn ChangeFeed>) {
        while let Some(event) = feed.next().await {
            match event {
                FeedEvent::Resync => {
                    tracing::info!("cluster: change channel (re)connected; resynchronising");
                    self.resync().await;
                }
                FeedEvent::Change { change, lag } => {
                    if let Some(lag) = lag {
                        metrics::histogram!(crate::metrics_names::NOTIFY_LAG)
                            .record(lag.as_secs_f64());
                        if let Some(f) = &self.on_lag {
                            f(lag);
                        }
                    }
                    self.apply(change).await;
                }
            }
        }
    }
}

/// A node's load, as its heartbeat records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct NodeStats {
    /// Script executor worker threads.
    pub workers: usize,
    /// Runs on a worker now.
    pub running: usize,
    /// Runs waiting for a worker.
    pub queued: usize,
    /// Runs that finished inline since start.
    pub inline_completed: u64,
    /// Runs on the pool since start.
    pub pool_runs: u64,
}

impl NodeStats {
    /// The stats of `scripts`' executor (zeros before its first run).
    pub fn of(scripts: &ScriptService) -> Self {
        scripts
            .executor_stats()
            .map(|s| Self {
                workers: s.workers,
                running: s.running,
                queued: s.queued,
                inline_completed: s.inline_completed,
                pool_runs: s.pool_runs,
            })
            .unwrap_or_default()
    }
}

/// One node in the cluster view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterNode {
    /// Its id.
    pub id: Uuid,
    /// Its role.
    pub role: NodeRole,
    /// Where it serves.
    pub address: String,
    /// Its version.
    pub version: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat.
    pub heartbeat_at: DateTime<Utc>,
    /// Whether its heartbeat is older than [`NODE_GONE_AFTER`].
    pub gone: bool,
    /// Its load at that heartbeat.
    pub stats: NodeStats,
}

/// `GET /api/v1/admin/cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterView {
    /// Every registered node, the oldest first.
    pub nodes: Vec<ClusterNode>,
    /// The instance's job queue.
    pub queue: QueueUsage,
}

/// Why the cluster view could not be given.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The caller may not see it (it needs `InstanceManageUsers`).
    #[error("forbidden")]
    Denied,
    /// A store failed.
    #[error("cluster view: {0}")]
    Backend(String),
}

impl From<AuthzDenied> for ClusterError {
    fn from(e: AuthzDenied) -> Self {
        match e {
            AuthzDenied::Denied => Self::Denied,
            AuthzDenied::Repo(e) => Self::Backend(e.to_string()),
        }
    }
}

impl From<NodeRepoError> for ClusterError {
    fn from(e: NodeRepoError) -> Self {
        Self::Backend(e.to_string())
    }
}

impl From<JobQueueError> for ClusterError {
    fn from(e: JobQueueError) -> Self {
        Self::Backend(e.to_string())
    }
}

/// The cluster view: the nodes and the queue.
#[derive(Debug, Clone)]
pub struct ClusterService {
    stores: Stores,
    /// The node this service runs on, once it registered: shown alive
    /// whatever its heartbeat says (a single node on the memory store has
    /// no heartbeat to refresh).
    this_node: Arc<std::sync::OnceLock<Uuid>>,
}

impl ClusterService {
    /// The service over `stores`.
    pub fn new(stores: Stores) -> Self {
        Self {
            stores,
            this_node: Arc::default(),
        }
    }

    /// Names the node this service runs on (once; later calls are ignored).
    pub fn set_this_node(&self, id: Uuid) {
        let _ = self.this_node.set(id);
    }

    /// Every node with its role, heartbeat and load, and the instance's
    /// queue (`InstanceManageUsers`).
    pub async fn view(&self, principal: &Principal) -> Result<ClusterView, ClusterError> {
        crate::authz::require(
            self.stores.authz.as_ref(),
            principal,
            Capability::InstanceManageUsers,
        )
        .await?;
        let now = crate::clock::now();
        let gone_after = chrono::Duration::from_std(NODE_GONE_AFTER).unwrap_or_default();
        let nodes = self
            .stores
            .nodes
            .nodes()
            .await?
            .into_iter()
            .map(|n| ClusterNode {
                gone: self.this_node.get() != Some(&n.id) && now - n.heartbeat_at > gone_after,
                stats: serde_json::from_str(&n.stats).unwrap_or_default(),
                id: n.id,
                role: n.role,
                address: n.address,
                version: n.version,
                started_at: n.started_at,
                heartbeat_at: n.heartbeat_at,
            })
            .collect();
        let queue = self.stores.jobs.totals().await?;
        Ok(ClusterView { nodes, queue })
    }
}

impl crate::error::ServiceError for ClusterError {
    fn kind(&self) -> crate::error::ErrorKind {
        match self {
            Self::Denied => crate::error::ErrorKind::Forbidden,
            Self::Backend(_) => crate::error::ErrorKind::Internal,
        }
    }
}
