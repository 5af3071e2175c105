//! Cluster mode: several nodes on one store.
//!
//! There is no cluster switch: several servers on one PostgreSQL database
//! are a cluster, and the database is the only coordinator (row locks,
//! unique keys, `LISTEN`/`NOTIFY`). This module holds what the nodes share:
//!
//! - [`NodeRole`]: which routes and which background work a node takes;
//! - [`Change`] and [`ChangeFeed`]: the change channel as a store delivers
//!   it (the PostgreSQL store's triggers send a notification in the
//!   transaction of each change a node caches);
//! - with the `executor` feature, `Follower`, which applies each change
//!   to this node's caches (and re-reads everything after the feed
//!   reconnects), and `ClusterService`, the cluster view.

use std::time::Duration;

use crate::ids::AppId;

/// Which part of the work a node takes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// Everything (the default, and the only role of a memory store).
    #[default]
    All,
    /// The admin API, sign-in, the logs stream and the dashboard.
    Api,
    /// `/run`, `/async`, custom domains, `/internal/tls-ask`, the job
    /// runner and the scheduler.
    Worker,
}

impl NodeRole {
    /// `all`, `api` or `worker`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Api => "api",
            Self::Worker => "worker",
        }
    }

    /// Parses `all`, `api` or `worker`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "all" => Some(Self::All),
            "api" => Some(Self::Api),
            "worker" => Some(Self::Worker),
            _ => None,
        }
    }

    /// Whether the node serves `/api/v1/…` and the dashboard.
    pub const fn serves_api(self) -> bool {
        matches!(self, Self::All | Self::Api)
    }

    /// Whether the node serves `/run`, `/async`, custom domains and
    /// `/internal/tls-ask`, and runs jobs and schedules.
    pub const fn serves_scripts(self) -> bool {
        matches!(self, Self::All | Self::Worker)
    }
}

impl std::fmt::Display for NodeRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What changed, as one notification of the change channel names it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// A script of the app was deployed, rolled back, deleted or made
    /// public or private.
    Script {
        /// The app.
        app: AppId,
    },
    /// The app was created, deleted or renamed, or its limits or settings
    /// changed.
    App {
        /// The app.
        app: AppId,
    },
    /// A schedule changed: schedulers recompute their next tick.
    Schedule,
    /// A topic subscription changed.
    Subscription,
    /// Jobs were queued: idle runners look for work.
    Jobs,
    /// A custom domain was added or removed.
    Domain,
    /// The app's env variables, secrets or data key changed.
    Env {
        /// The app.
        app: AppId,
    },
    /// The node `node` recorded runs of the app, its records at `first`
    /// to `last` (for live tails on the other nodes).
    Runs {
        /// The app.
        app: AppId,
        /// The writer (its connection's `application_name`).
        node: String,
        /// The position of the oldest record of the batch.
        first: i64,
        /// The position of the newest record of the batch.
        last: i64,
    },
}

/// What a [`ChangeFeed`] gives.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedEvent {
    /// A change, and how long after its transaction began it arrived
    /// (when the notification says).
    Change {
        /// The change.
        change: Change,
        /// Its lag.
        lag: Option<Duration>,
    },
    /// The feed (re)connected: changes may have been missed meanwhile, so
    /// everything cached must be read again. Sent after the feed listens
    /// again, so that nothing after the re-read is missed.
    Resync,
}

/// A store's change channel, as a node receives it.
#[async_trait::async_trait]
pub trait ChangeFeed: Send {
    /// The next event; `None` once the feed has ended for good.
    async fn next(&mut self) -> Option<FeedEvent>;
}

/// How long after its last heartbeat a node is shown as gone.
pub const NODE_GONE_AFTER: Duration = Duration::from_secs(30);

/// How often a node refreshes its heartbeat (DESIGN: no more often than
/// every 10 s). On PostgreSQL each heartbeat also pings the change channel,
/// so a listener that hears nothing for a few heartbeats knows its
/// connection is dead even when no packet said so.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

#[cfg(feature = "executor")]
mod follow;
#[cfg(feature = "executor")]
pub use follow::{ClusterError, ClusterNode, ClusterService, ClusterView, Follower, NodeStats};
