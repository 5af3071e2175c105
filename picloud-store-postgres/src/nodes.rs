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
        // Nodes silent for a day (killed, never stopped cleanly) go: the
        // table does not grow with every crash.
        sqlx::query("DELETE FROM nodes WHERE heartbeat_at < $1 - interval '1 day'")
            .bind(node.heartbeat_at)
            .execute(&self.pool)
            .await
            .map_err(node_error)?;
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
        // With a ping on the change channel: every listener hears something
        // every heartbeat, so one that hears nothing knows it is cut off.
        let updated: i64 = sqlx::query_scalar(
            "WITH beat AS (UPDATE nodes SET heartbeat_at = $2, stats = $3 WHERE id = $1 \
             RETURNING 1) \
             SELECT (SELECT count(*) FROM beat) AS n, pg_notify($4, '{\"k\":\"ping\"}')",
        )
        .bind(id)
        .bind(at)
        .bind(stats)
        .bind(crate::CHANNEL)
        .fetch_one(&self.pool)
        .await
        .map_err(node_error)?;
        Ok(updated == 1)
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, NodeRepoError> {
        let rows: Vec<NodeRow> = sqlx::query_as(
            "SELECT id, role, address, version, started_at, heartbeat_at, stats \
             FROM nodes ORDER BY started_at, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(node_error)?;
        // A role this version does not know (a newer node's) leaves that row
        // out rather than failing the whole list.
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(NodeRecord {
                    role: NodeRole::parse(&r.role)?,
                    id: r.id,
                    address: r.address,
                    version: r.version,
                    started_at: r.started_at,
                    heartbeat_at: r.heartbeat_at,
                    stats: r.stats,
                })
            })
            .collect())
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
