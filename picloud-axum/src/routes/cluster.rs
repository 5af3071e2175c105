//! `GET /admin/cluster`: the nodes of the cluster and the job queue
//! (`InstanceManageUsers`).

use axum::extract::State;
use serde::Serialize;

use crate::ApiState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Caller, Json};

/// One node.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NodeDto {
    /// Its id (made at start-up).
    pub id: uuid::Uuid,
    /// `all`, `api` or `worker`.
    pub role: String,
    /// Where it serves.
    pub address: String,
    /// Its version.
    pub version: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// Its last heartbeat (RFC 3339).
    pub heartbeat_at: String,
    /// Its heartbeat is older than 30 s.
    pub gone: bool,
    /// Its script executor at that heartbeat.
    pub stats: NodeStatsDto,
}

/// A node's script executor.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NodeStatsDto {
    /// Worker threads.
    pub workers: usize,
    /// Runs on a worker.
    pub running: usize,
    /// Runs waiting for a worker.
    pub queued: usize,
    /// Runs that finished inline since start.
    pub inline_completed: u64,
    /// Runs on the pool since start.
    pub pool_runs: u64,
}

/// The instance's job queue.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueueDto {
    /// Jobs waiting to run.
    pub queued: u64,
    /// Jobs running.
    pub running: u64,
    /// Jobs that ran out of attempts.
    pub dead: u64,
}

/// The cluster view.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClusterDto {
    /// Every registered node, the oldest first.
    pub nodes: Vec<NodeDto>,
    /// The job queue.
    pub queue: QueueDto,
}

/// The nodes of the cluster (a single server lists itself), with their
/// heartbeats and load, and the job queue.
#[utoipa::path(
    get, path = "/api/v1/admin/cluster", tag = "cluster",
    responses(
        (status = 200, description = "The nodes and the queue", body = ClusterDto),
        (status = 403, description = "May not manage users", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_cluster(
    State(s): State<ApiState>,
    Caller(p): Caller,
) -> Result<Json<ClusterDto>, ApiError> {
    let view = s.cluster.view(&p).await?;
    let rfc =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    Ok(Json(ClusterDto {
        nodes: view
            .nodes
            .into_iter()
            .map(|n| NodeDto {
                id: n.id,
                role: n.role.as_str().to_owned(),
                address: n.address,
                version: n.version,
                started_at: rfc(n.started_at),
                heartbeat_at: rfc(n.heartbeat_at),
                gone: n.gone,
                stats: NodeStatsDto {
                    workers: n.stats.workers,
                    running: n.stats.running,
                    queued: n.stats.queued,
                    inline_completed: n.stats.inline_completed,
                    pool_runs: n.stats.pool_runs,
                },
            })
            .collect(),
        queue: QueueDto {
            queued: view.queue.queued,
            running: view.queue.running,
            dead: view.queue.dead,
        },
    }))
}
