//! Prometheus metrics (feature `server`): `GET /metrics` on a listener of
//! its own (`PICLOUD_METRICS_LISTEN`), off unless configured, so the
//! numbers never share a port with the public routes.
//!
//! An answer holds two kinds of series:
//!
//! - **What happened**, counted where it happens in `picloud-core` (runs,
//!   job outcomes, the cluster's NOTIFY lag; the names are in
//!   [`picloud_core::metrics_names`]) through the `metrics` facade, into
//!   the process's one Prometheus recorder. It is installed on the first
//!   server that asks for metrics and shared by any later one in the same
//!   process (the tests start many); until then the facade is a no-op.
//! - **How this node stands**, read when scraped: the executor's pool and
//!   its inline/pool counts, the job queue's depth, the database pool.
//!   These are written straight into the answer, so each server reports
//!   its own, never another's left in the shared recorder.
//!
//! Labels stay bounded; see [`picloud_core::metrics_names`] for `app` and
//! `script`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use picloud_axum::conn::ServeOptions;
use picloud_axum::error::ApiError;
use picloud_core::Stores;
use picloud_core::metrics_names as names;
use picloud_core::ports::JobQueue;
use picloud_core::scripts::ScriptService;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::server::StartError;

/// The Prometheus text format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The buckets of [`names::INVOCATION_DURATION`], in seconds: from an
/// inline run's fraction of a millisecond to the longest wall clocks.
pub const DURATION_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The buckets of [`names::NOTIFY_LAG`], in seconds: changes reach every
/// node within a second, so most of the range is below it.
pub const NOTIFY_LAG_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// How long a scrape waits for the store's queue depth before it leaves
/// those lines out.
const DEPTH_TIMEOUT: Duration = Duration::from_secs(2);

/// A store's connection pool, as `/metrics` reports it.
pub trait PoolStats: Send + Sync {
    /// Its connections now.
    fn connections(&self) -> PoolConnections;
}

/// The connections of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConnections {
    /// Open and waiting for a query.
    pub idle: u64,
    /// Open and lent out.
    pub in_use: u64,
    /// The most the pool opens.
    pub max: u64,
}

#[cfg(feature = "postgres")]
impl PoolStats for picloud_store_postgres::PostgresStore {
    fn connections(&self) -> PoolConnections {
        let pool = self.pool();
        let idle = u64::try_from(pool.num_idle()).unwrap_or(u64::MAX);
        PoolConnections {
            idle,
            in_use: u64::from(pool.size()).saturating_sub(idle),
            max: u64::from(pool.options().get_max_connections()),
        }
    }
}

/// The process's recorder: installed on the first call, the same handle
/// after. If another recorder was installed first (an embedder's), the
/// answers hold only the node's state, and a warning says why.
fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(names::INVOCATION_DURATION.to_owned()),
                &DURATION_BUCKETS,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(names::NOTIFY_LAG.to_owned()),
                    &NOTIFY_LAG_BUCKETS,
                )
            })
            .expect("the bucket lists are not empty")
            .build_recorder();
        let handle = recorder.handle();
        match metrics::set_global_recorder(recorder) {
            Ok(()) => describe(),
            Err(e) => tracing::warn!(
                "/metrics: another metrics recorder is installed ({e}); only this node's \
                 state is reported"
            ),
        }
        // Histograms keep their samples until upkeep folds them in: bound
        // that between scrapes, whether anyone scrapes or not.
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("picloud-metrics".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("/metrics: the upkeep thread did not start: {e}");
        }
        handle
    })
}

/// The descriptions of the series counted in `picloud-core`.
fn describe() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(
        names::INVOCATIONS,
        "Script runs, by app, script, status class and trigger (http, async, cron, event)."
    );
    describe_histogram!(
        names::INVOCATION_DURATION,
        Unit::Seconds,
        "How long script runs took, by app and script."
    );
    describe_counter!(
        names::JOB_OUTCOMES,
        "Job attempts completed by this node, by outcome (succeeded, retried, dead)."
    );
    describe_counter!(
        names::JOBS_RECLAIMED,
        "Running jobs whose lease ran out, reclaimed by this node."
    );
    describe_histogram!(
        names::NOTIFY_LAG,
        Unit::Seconds,
        "Time from a change's NOTIFY to this node acting on it."
    );
}

/// What a scrape reads of this node.
struct Node {
    scripts: ScriptService,
    jobs: Arc<dyn JobQueue>,
    pool: Option<Arc<dyn PoolStats>>,
}

/// One metric family of the text format: its `HELP` and `TYPE` lines and
/// a sample per `(labels, value)` (`labels` as written between braces,
/// empty for none).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

impl Node {
    /// Appends this node's state to `out`.
    async fn write_state(&self, out: &mut String) {
        if let Some(s) = self.scripts.executor_stats() {
            let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
            family(
                out,
                "picloud_runs_total",
                "counter",
                "Script runs by where they ran: inline on an async worker, or on the pool.",
                &[
                    ("path=\"inline\"", s.inline_completed),
                    ("path=\"pool\"", s.pool_runs),
                ],
            );
            family(
                out,
                "picloud_inline_fallbacks_total",
                "counter",
                "Runs sent to the pool instead of finishing inline: abandoned (an inline \
                 attempt went past its budget) or skipped (no attempt).",
                &[
                    ("reason=\"abandoned\"", s.inline_abandoned),
                    ("reason=\"skipped\"", s.inline_skipped),
                ],
            );
            family(
                out,
                "picloud_executor_workers",
                "gauge",
                "The pool's worker threads, busy or idle (none before its first run).",
                &[
                    ("state=\"busy\"", n(s.workers.saturating_sub(s.idle))),
                    ("state=\"idle\"", n(s.idle)),
                ],
            );
            family(
                out,
                "picloud_executor_queued",
                "gauge",
                "Runs waiting for a pool worker, all tenants.",
                &[("", n(s.queued))],
            );
            family(
                out,
                "picloud_executor_tenants",
                "gauge",
                "Apps with a run on the pool, running or waiting.",
                &[("", n(s.tenants))],
            );
        }
        match tokio::time::timeout(DEPTH_TIMEOUT, self.jobs.totals()).await {
            Ok(Ok(t)) => {
                // One queue for the cluster: every node reports the same.
                family(
                    out,
                    "picloud_jobs_queued",
                    "gauge",
                    "Jobs queued (due, or waiting for a retry), every app.",
                    &[("", t.queued)],
                );
                family(
                    out,
                    "picloud_jobs_running",
                    "gauge",
                    "Jobs running on any node, every app.",
                    &[("", t.running)],
                );
                family(
                    out,
                    "picloud_jobs_dead",
                    "gauge",
                    "Dead jobs kept (out of attempts), every app.",
                    &[("", t.dead)],
                );
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "/metrics: reading the queue depth failed"),
            Err(_) => tracing::warn!("/metrics: reading the queue depth timed out"),
        }
        if let Some(pool) = &self.pool {
            let c = pool.connections();
            family(
                out,
                "picloud_db_pool_connections",
                "gauge",
                "The database pool's open connections, idle or in use.",
                &[("state=\"idle\"", c.idle), ("state=\"in_use\"", c.in_use)],
            );
            family(
                out,
                "picloud_db_pool_max_connections",
                "gauge",
                "The most connections the database pool opens.",
                &[("", c.max)],
            );
        }
    }
}

async fn scrape(State(node): State<Arc<Node>>) -> impl IntoResponse {
    let mut text = recorder().render();
    node.write_state(&mut text).await;
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text)
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

/// The `/metrics` listener of a running server.
#[derive(Debug)]
pub(crate) struct MetricsServer {
    /// The address it listens on.
    pub(crate) addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl MetricsServer {
    /// Stops listening; a scrape in flight gets a second to finish.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "/metrics listener"),
            Err(e) => tracing::warn!(error = %e, "/metrics listener"),
        }
    }
}

/// Serves `GET /metrics` on `listen` (nothing when `None`) for the node of
/// `scripts` and `stores`, with `pool`'s connections when given. Anything
/// else on that listener is a JSON 404.
pub(crate) async fn start(
    listen: Option<SocketAddr>,
    scripts: &ScriptService,
    stores: &Stores,
    pool: Option<Arc<dyn PoolStats>>,
) -> Result<Option<MetricsServer>, StartError> {
    let Some(listen) = listen else {
        return Ok(None);
    };
    let bind = |source| StartError::Bind {
        addr: listen,
        source,
    };
    let listener = TcpListener::bind(listen).await.map_err(bind)?;
    let addr = listener.local_addr().map_err(bind)?;
    recorder();
    let node = Node {
        scripts: scripts.clone(),
        jobs: Arc::clone(&stores.jobs),
        pool,
    };
    let router = Router::new()
        .route("/metrics", get(scrape).fallback(not_found))
        .fallback(not_found)
        .with_state(Arc::new(node));
    let (stop, stopped) = oneshot::channel::<()>();
    let options = ServeOptions {
        max_connections: 16,
        shutdown_grace: Duration::from_secs(1),
        ..ServeOptions::default()
    };
    let task = tokio::spawn(picloud_axum::conn::serve_with(
        listener,
        router,
        async {
            let _ = stopped.await;
        },
        options,
    ));
    tracing::info!("metrics on http://{addr}/metrics");
    Ok(Some(MetricsServer { addr, stop, task }))
}
