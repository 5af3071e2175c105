//! [`NodeRepository`] in memory: a single-node store lists the node that
//! registered (a server on the memory store is never part of a cluster).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use picloud_core::ports::{NodeRecord, NodeRepoError, NodeRepository};
use uuid::Uuid;

use crate::MemoryStore;

#[async_trait]
impl NodeRepository for MemoryStore {
    async fn register(&self, node: &NodeRecord) -> Result<(), NodeRepoError> {
        self.write().nodes.insert(node.id, node.clone());
        Ok(())
    }

    async fn heartbeat(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        stats: &str,
    ) -> Result<bool, NodeRepoError> {
        let mut s = self.write();
        Ok(match s.nodes.get_mut(&id) {
            Some(node) => {
                node.heartbeat_at = at;
                stats.clone_into(&mut node.stats);
                true
            }
            None => false,
        })
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, NodeRepoError> {
        let mut nodes: Vec<NodeRecord> = self.read().nodes.values().cloned().collect();
        nodes.sort_by_key(|n| (n.started_at, n.id));
        Ok(nodes)
    }

    async fn leave(&self, id: Uuid) -> Result<(), NodeRepoError> {
        self.write().nodes.remove(&id);
        Ok(())
    }
}
