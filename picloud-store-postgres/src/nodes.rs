//! [`NodeRepository`] on the `nodes` table (migration 0014).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use picloud_core::cluster::NodeRole;
use picloud_core::ports::{NodeRecord, NodeRepoError, NodeRepository};
use uuid::Uuid;

use crate::PostgresStore;

fn node_error(e: sqlx::Error) -> NodeRepoError {
    NodeRepoError::Backend(Box::new(e))
}

#[derive(sqlx::FromRow)]
struct NodeRow {
    id: Uuid,
    role: String,
    address: String,
    version: String,
    started_at: DateTime<Utc>,
    heartbeat_at: DateTime<Utc>,
    stats: String,
}

#[async_trait]
impl NodeRepository for PostgresStore {
    async fn register(&self, node: &NodeRecord) -> Result<(), NodeRepoError> {
        sqlx::query(
            "INSERT INTO nodes (id, role, address, version, started_at, heartbeat_at, stats) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (id) DO UPDATE SET role = $2, address = $3, version = $4, \
                 started_at = $5, heartbeat_at = $6, stats = $7",
        )
        .bind(node.id)
        .bind(node.role.as_str())
        .bind(&node.address)
        .bind(&node.version)
        .bind(node.started_at)
        .bind(node.heartbeat_at)
        .bind(&node.stats)
        .execute(&self.pool)
        .await
        .map_err(node_error)?;
        Ok(())
    }

    async fn heartbeat(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        stats: &str,
    ) -> Result<bool, NodeRepoError> {
        let done = sqlx::query("UPDATE nodes SET heartbeat_at = $2, stats = $3 WHERE id = $1")
            .bind(id)
            .bind(at)
            .bind(stats)
            .execute(&self.pool)
            .await
            .map_err(node_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, NodeRepoError> {
        let rows: Vec<NodeRow> = sqlx::query_as(
            "SELECT id, role, address, version, started_at, heartbeat_at, stats \
             FROM nodes ORDER BY started_at, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(node_error)?;
        rows.into_iter()
            .map(|r| {
                Ok(NodeRecord {
                    role: NodeRole::parse(&r.role).ok_or_else(|| {
                        NodeRepoError::Backend(format!("unknown node role {:?}", r.role).into())
                    })?,
                    id: r.id,
                    address: r.address,
                    version: r.version,
                    started_at: r.started_at,
                    heartbeat_at: r.heartbeat_at,
                    stats: r.stats,
                })
            })
            .collect()
    }

    async fn leave(&self, id: Uuid) -> Result<(), NodeRepoError> {
        sqlx::query("DELETE FROM nodes WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(node_error)?;
        Ok(())
    }
}
