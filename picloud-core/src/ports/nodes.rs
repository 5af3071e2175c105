//! The nodes port: the nodes of a cluster, each with a heartbeat.
//!
//! **Semantics every store keeps:**
//! - [`NodeRepository::register`] inserts a node or replaces its row;
//! - [`NodeRepository::heartbeat`] refreshes the row of a registered node
//!   and says `false` when there is none (it was removed: register again);
//! - [`NodeRepository::nodes`] lists every row, oldest start first;
//! - [`NodeRepository::leave`] removes a node's row.
//!
//! A single-node store lists the one node that registered.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::BoxError;
use crate::cluster::NodeRole;

/// A node as its row records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// Its id, made at start-up.
    pub id: Uuid,
    /// Its role.
    pub role: NodeRole,
    /// The address it serves on.
    pub address: String,
    /// Its version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat.
    pub heartbeat_at: DateTime<Utc>,
    /// Its load at the last heartbeat, as JSON text (`{}` for none).
    pub stats: String,
}

/// Errors of [`NodeRepository`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeRepoError {
    /// The backend failed.
    #[error("node store backend error: {0}")]
    Backend(#[source] BoxError),
}

/// The nodes of a cluster.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait NodeRepository: Send + Sync {
    /// Inserts `node`, or replaces the row of the same id.
    async fn register(&self, node: &NodeRecord) -> Result<(), NodeRepoError>;

    /// Sets the heartbeat of node `id` to `at` with `stats`; `false` when
    /// no such node is registered.
    async fn heartbeat(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        stats: &str,
    ) -> Result<bool, NodeRepoError>;

    /// Every node, the oldest start first (then by id).
    async fn nodes(&self) -> Result<Vec<NodeRecord>, NodeRepoError>;

    /// Removes node `id`'s row (a clean stop).
    async fn leave(&self, id: Uuid) -> Result<(), NodeRepoError>;
}
