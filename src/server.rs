//! The assembled server (feature `server`): pick a store, bootstrap the owner,
//! bind, serve, shut down gracefully. `main.rs` is a thin CLI over this, and
//! the end-to-end tests start it in-process on a real listener.

use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use picloud_axum::conn::ServeOptions;
use picloud_axum::{ApiState, AppOptions, Readiness};
use picloud_core::Stores;
use picloud_core::auth::{AuthService, Bootstrap};
use picloud_core::cluster::NodeRole;
use picloud_core::env::EnvService;
use picloud_core::executor::{ExecutorConfig, ExecutorStats, InlineBudget, LazyExecutor};
use picloud_core::scripts::ScriptService;
use picloud_core::secrets::MasterKey;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// The default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// How to run a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen (default [`DEFAULT_LISTEN`]; port 0 picks a free port).
    pub listen: SocketAddr,
    /// PostgreSQL URL; `None` means the in-memory store (nothing persists).
    pub database_url: Option<String>,
    /// The bootstrap owner's token; `None` generates one when needed.
    pub bootstrap_token: Option<String>,
    /// The largest request body accepted, in bytes (default 64 KiB).
    pub body_limit: usize,
    /// How long a request body may take to arrive after the head (default
    /// 30 s; then a 408).
    pub body_timeout: Duration,
    /// Connection handling: the header read (and keep-alive idle) timeout,
    /// the connection cap and the shutdown grace period.
    pub serve: ServeOptions,
    /// The script executor: its pool and its inline budget. The default
    /// budget's stack slice fits tokio's default worker stacks; on a
    /// [`runtime`] the binary uses [`executor_config`].
    pub executor: ExecutorConfig,
    /// The job retry backoff's base (default 1 s; `PICLOUD_RETRY_BASE_MS`).
    pub retry_base: Duration,
    /// Whether this node runs jobs and fires schedules (default `true`).
    pub run_jobs: bool,
    /// The master key that wraps each app's secret key
    /// (`PICLOUD_MASTER_KEY` or `PICLOUD_MASTER_KEY_FILE`). `None`: on the
    /// memory store a random one (nothing persists anyway); on PostgreSQL
    /// none, and writing a secret is a 409 that says how to set one.
    pub master_key: Option<MasterKey>,
    /// IPs and CIDR ranges scripts may reach despite the private-address
    /// rule (`PICLOUD_EGRESS_ALLOW`, comma-separated). Empty: none.
    pub egress_allow: String,
    /// How scripts' outbound requests resolve names (`None`: the system's
    /// resolver). Tests give a static one, so no test sends a DNS query.
    pub egress_resolver: Option<Arc<dyn picloud_core::egress::Resolve>>,
    /// The instance's public URL (`PICLOUD_PUBLIC_URL`); `https://` makes
    /// the dashboard's session cookie `Secure`.
    pub public_url: Option<String>,
    /// This node's role in a cluster (`PICLOUD_ROLE`; default `all`). The
    /// memory store allows only `all`.
    pub role: NodeRole,
    /// How long a node reports not ready before it stops taking requests,
    /// on shutdown (default none): time for a load balancer's health check
    /// to notice.
    pub drain_delay: Duration,
    /// Where `GET /metrics` (Prometheus) listens, on a listener of its own
    /// (`PICLOUD_METRICS_LISTEN`); `None` (the default): nowhere.
    pub metrics_listen: Option<SocketAddr>,
}

/// The native stack of each async worker thread of [`runtime`]: room for
/// the inline budget's slice of [`executor_config`].
pub const WORKER_STACK_SIZE: usize = 8 * 1024 * 1024;

/// The multi-threaded tokio runtime the `picloud` binary serves on: one
/// worker per CPU, each with [`WORKER_STACK_SIZE`] of stack.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("picloud-async")
        .thread_stack_size(WORKER_STACK_SIZE)
        .build()
}

/// The executor configuration for a [`runtime`]: the default pool, with
/// an inline stack slice of an eighth of [`WORKER_STACK_SIZE`] (1 MiB: the
/// default call depth fits in a release build).
pub fn executor_config() -> ExecutorConfig {
    ExecutorConfig {
        inline: Some(InlineBudget::for_worker_stack(WORKER_STACK_SIZE)),
        ..ExecutorConfig::default()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            database_url: None,
            bootstrap_token: None,
            body_limit: AppOptions::default().body_limit,
            body_timeout: AppOptions::default().body_timeout,
            serve: ServeOptions::default(),
            executor: ExecutorConfig::default(),
            retry_base: Duration::from_secs(1),
            run_jobs: true,
            master_key: None,
            egress_allow: String::new(),
            egress_resolver: None,
            public_url: None,
            role: NodeRole::All,
            drain_delay: Duration::ZERO,
            metrics_listen: None,
        }
    }
}

/// The backstop re-check of the job runner and the scheduler on
/// PostgreSQL, where other processes may add work this one is not told of.
pub const BACKSTOP: Duration = Duration::from_secs(30);

/// The KV sweeper's backstop on PostgreSQL (another node's writes with a
/// TTL are not signalled to this one).
pub const KV_BACKSTOP: Duration = Duration::from_secs(300);

/// This node in the `nodes` table: its row, and the heartbeat that keeps
/// it fresh.
mod cluster {
    use std::time::Duration;

    use picloud_axum::ApiState;
    use picloud_core::cluster::{HEARTBEAT_EVERY, NodeStats};
    use picloud_core::ports::NodeRecord;
    use tokio::sync::watch;
    use tokio::task::JoinHandle;

    /// The heartbeat of a registered node.
    pub(super) struct Heartbeat {
        id: uuid::Uuid,
        state: ApiState,
        stop: watch::Sender<bool>,
        task: Option<JoinHandle<()>>,
    }

    /// Registers `node` and (with `beat`: on a shared store) refreshes its
    /// heartbeat every [`HEARTBEAT_EVERY`], with its executor's stats. A
    /// failure is logged, never fatal: the node serves on, and its row
    /// comes back with the next heartbeat the store takes.
    pub(super) async fn register(state: ApiState, node: NodeRecord, beat: bool) -> Heartbeat {
        if let Err(e) = state.stores.nodes.register(&node).await {
            tracing::warn!(error = %e, "registering this node failed; retrying with the heartbeat");
        }
        let (stop, mut stopped) = watch::channel(false);
        let id = node.id;
        let task = beat.then(|| {
            let state = state.clone();
            tokio::spawn(async move {
                let mut node = node;
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(HEARTBEAT_EVERY) => {}
                        _ = stopped.changed() => return,
                    }
                    let stats = serde_json::to_string(&NodeStats::of(&state.scripts))
                        .unwrap_or_else(|_| "{}".to_owned());
                    let at = picloud_core::clock::now();
                    match state.stores.nodes.heartbeat(node.id, at, &stats).await {
                        Ok(true) => {}
                        // Removed (by hand, say): register again.
                        Ok(false) => {
                            node.heartbeat_at = at;
                            node.stats = stats;
                            if let Err(e) = state.stores.nodes.register(&node).await {
                                tracing::warn!(error = %e, "registering this node failed");
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                    }
                }
            })
        });
        Heartbeat {
            id,
            state,
            stop,
            task,
        }
    }

    impl Heartbeat {
        /// Stops the heartbeat and removes the node's row (a clean stop).
        pub(super) async fn leave(self) {
            let _ = self.stop.send(true);
            if let Some(task) = self.task {
                let _ = task.await;
            }
            let left = tokio::time::timeout(
                Duration::from_secs(2),
                self.state.stores.nodes.leave(self.id),
            )
            .await;
            if !matches!(left, Ok(Ok(()))) {
                tracing::warn!("this node's row was not removed; it shows as gone in 30 s");
            }
        }
    }
}

/// Outbound HTTP for scripts: the instance's egress rule.
mod egress {
    use std::sync::Arc;

    use picloud_core::egress::{Egress, EgressAllow, EgressConfig};
    use picloud_core::scripts::ScriptService;

    use super::StartError;

    /// Gives `scripts` the egress client, with `allow` (the text of
    /// `PICLOUD_EGRESS_ALLOW`) as the addresses reachable despite the rule.
    pub(super) fn configure(
        scripts: ScriptService,
        allow: &str,
        resolver: Option<Arc<dyn picloud_core::egress::Resolve>>,
    ) -> Result<ScriptService, StartError> {
        let allow = if allow.trim().is_empty() {
            EgressAllow::default()
        } else {
            EgressAllow::parse(allow)
                .map_err(|e| StartError::Config(format!("{}: {e}", EgressAllow::ENV)))?
        };
        if !allow.is_empty() {
            tracing::info!("scripts may reach {allow} despite the private-address rule");
        }
        let mut config = EgressConfig {
            allow,
            ..EgressConfig::default()
        };
        if let Some(resolver) = resolver {
            config.resolver = resolver;
        }
        let egress = Egress::new(config)
            .map_err(|e| StartError::Config(format!("the outbound HTTP client: {e}")))?;
        Ok(scripts.with_outbound(Arc::new(egress)))
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be reached or migrated (the message names
    /// the server and the cause, and says what to do).
    #[error("{0}")]
    Database(String),
    /// The feature for the requested store is not compiled in.
    #[error("{0}")]
    Unsupported(String),
    /// Bootstrapping the owner failed.
    #[error("bootstrap: {0}")]
    Bootstrap(String),
    /// A setting is wrong (the message names it).
    #[error("{0}")]
    Config(String),
    /// Binding the listener failed.
    #[error("listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// Which store a server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreKind {
    /// The in-memory store: nothing persists across restarts.
    Memory,
    /// PostgreSQL.
    Postgres,
}

impl StoreKind {
    /// `memory` or `postgres`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Postgres => "postgres",
        }
    }
}

impl std::fmt::Display for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A store, ready to serve.
pub struct OpenedStore {
    /// Its ports.
    pub stores: Stores,
    /// Which store it is.
    pub kind: StoreKind,
    /// What `/readyz` asks.
    pub readiness: Option<Arc<dyn Readiness>>,
    /// The store's change channel (PostgreSQL: the nodes of a cluster).
    pub changes: Option<Box<dyn picloud_core::cluster::ChangeFeed>>,
    /// The connection pool `/metrics` reports, if the store has one.
    pub pool: Option<Arc<dyn crate::metrics::PoolStats>>,
}

#[cfg(feature = "postgres")]
struct PgReadiness(picloud_store_postgres::PostgresStore);

#[cfg(feature = "postgres")]
#[async_trait::async_trait]
impl Readiness for PgReadiness {
    async fn ready(&self) -> bool {
        self.0.is_ready().await
    }
}

/// Opens the configured store: PostgreSQL (connected and migrated) when a
/// URL is given, else the in-memory store.
pub async fn open_store(database_url: Option<&str>) -> Result<OpenedStore, StartError> {
    open_store_as(database_url, None).await
}

/// [`open_store`], with the PostgreSQL connections named `name` (their
/// `application_name`: a cluster node's records say which node wrote them).
pub async fn open_store_as(
    database_url: Option<&str>,
    name: Option<&str>,
) -> Result<OpenedStore, StartError> {
    match database_url {
        None => Ok(OpenedStore {
            stores: picloud_store_memory::MemoryStore::new().into_stores(),
            kind: StoreKind::Memory,
            readiness: None,
            changes: None,
            pool: None,
        }),
        #[cfg(feature = "postgres")]
        Some(url) => {
            let store = picloud_store_postgres::PostgresStore::connect_explained_as(url, name)
                .await
                .map_err(StartError::Database)?;
            store.migrate().await.map_err(|e| {
                StartError::Database(format!(
                    "the database's schema could not be brought up to date: {e}"
                ))
            })?;
            // A server node follows the change channel; `migrate` and the
            // offline commands (no name) do not.
            let changes: Option<Box<dyn picloud_core::cluster::ChangeFeed>> = match name {
                Some(_) => Some(Box::new(store.changes().await.map_err(|e| {
                    StartError::Database(format!("listening for changes failed: {e}"))
                })?)),
                None => None,
            };
            Ok(OpenedStore {
                stores: store.clone().into_stores(),
                kind: StoreKind::Postgres,
                readiness: Some(Arc::new(PgReadiness(store.clone()))),
                changes,
                pool: Some(Arc::new(store)),
            })
        }
        #[cfg(not(feature = "postgres"))]
        Some(_) => {
            let _ = name;
            Err(StartError::Unsupported(
                "this build has no PostgreSQL support (feature `postgres`)".into(),
            ))
        }
    }
}

/// Runs the migrations against `database_url` (`picloud migrate`).
pub async fn migrate(database_url: &str) -> Result<(), StartError> {
    open_store(Some(database_url)).await.map(|_| ())
}

/// Owner recovery (`picloud admin create-owner-token`): straight through
/// the store at `database_url`, issues a fresh owner token, and returns it
/// with the owner's username. See [`AuthService::create_owner_token`].
pub async fn create_owner_token(database_url: &str) -> Result<(String, String), StartError> {
    let opened = open_store(Some(database_url)).await?;
    let (issued, owner) = AuthService::new(opened.stores)
        .create_owner_token()
        .await
        .map_err(|e| StartError::Bootstrap(e.to_string()))?;
    Ok((issued.token, owner.username.to_string()))
}

/// Reads the master key from `PICLOUD_MASTER_KEY` (64 hex characters) or,
/// failing that, the file named by `PICLOUD_MASTER_KEY_FILE`. `Ok(None)`
/// when neither is set.
pub fn master_key_from_env() -> Result<Option<MasterKey>, StartError> {
    let bad = |from: &str, e: picloud_core::secrets::SecretError| {
        StartError::Config(format!("{from}: {e}"))
    };
    if let Ok(text) = std::env::var("PICLOUD_MASTER_KEY")
        && !text.trim().is_empty()
    {
        return MasterKey::from_hex(&text)
            .map(Some)
            .map_err(|e| bad("PICLOUD_MASTER_KEY", e));
    }
    if let Ok(path) = std::env::var("PICLOUD_MASTER_KEY_FILE")
        && !path.is_empty()
    {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            StartError::Config(format!("PICLOUD_MASTER_KEY_FILE: cannot read {path}: {e}"))
        })?;
        return MasterKey::from_hex(&text)
            .map(Some)
            .map_err(|e| bad("PICLOUD_MASTER_KEY_FILE", e));
    }
    Ok(None)
}

/// `picloud admin rotate-master-key`: re-wraps every app's data key in the
/// store at `database_url` from `old` to `new`, offline. Secrets are not
/// touched (they are sealed under the data keys). Returns how many keys
/// were re-wrapped; running it again after an interruption finishes the
/// rest.
pub async fn rotate_master_key(
    database_url: &str,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<usize, StartError> {
    let opened = open_store(Some(database_url)).await?;
    EnvService::rotate_master_key(&opened.stores, old, new)
        .await
        .map_err(|e| StartError::Config(format!("rotating the master key: {e}")))
}

/// The env service of a server: its master key, checked against the
/// store's wrapped data keys (a mismatch is logged: those apps' secrets
/// cannot be opened until the right key is set).
async fn env_service(
    stores: &Stores,
    kind: StoreKind,
    configured: Option<MasterKey>,
) -> Result<EnvService, StartError> {
    let master = match (configured, kind) {
        (Some(key), _) => Some(key),
        (None, StoreKind::Memory) => {
            Some(MasterKey::random().map_err(|e| StartError::Config(format!("master key: {e}")))?)
        }
        (None, StoreKind::Postgres) => {
            tracing::warn!("{}", picloud_core::env::NO_MASTER_KEY);
            None
        }
    };
    if let Some(key) = &master
        && let Ok(keys) = stores.env.data_keys().await
    {
        let foreign = keys
            .iter()
            .filter(|(_, w)| w.master_key_id != key.id())
            .count();
        if foreign > 0 {
            tracing::warn!(
                "{foreign} app(s) have secrets wrapped by another master key than the configured                  one ({}): their runs fail until that key is set, or the keys are re-wrapped with                  `picloud admin rotate-master-key`",
                key.id()
            );
        }
    }
    Ok(EnvService::new(stores.clone(), master))
}

/// A server running in the background.
#[derive(Debug)]
pub struct RunningServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    /// Which store it runs on.
    pub store_kind: StoreKind,
    /// What bootstrap did (a generated token is in here, to print once).
    pub bootstrap: Bootstrap,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    state: ApiState,
}

impl RunningServer {
    /// `http://{addr}`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets requests in flight finish (for at most the
    /// shutdown grace period), and waits.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }

    /// Where `GET /metrics` listens (`None` unless
    /// [`ServerConfig::metrics_listen`] was given).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The script executor's load, and how many runs finished inline or
    /// went to the pool.
    pub fn executor_stats(&self) -> Option<ExecutorStats> {
        self.state.scripts.executor_stats()
    }

    /// Waits until the server stops (after `signal` given to [`start_with_signal`]).
    pub async fn wait(self) -> std::io::Result<()> {
        self.task
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }
}

/// Starts a server that stops when [`RunningServer::shutdown`] is called.
pub async fn start(config: ServerConfig) -> Result<RunningServer, StartError> {
    let (tx, rx) = oneshot::channel::<()>();
    let mut server = start_with_signal(config, async {
        let _ = rx.await;
    })
    .await?;
    server.shutdown = Some(tx);
    Ok(server)
}

/// Starts a server that stops when `signal` completes (the binary passes
/// SIGINT/SIGTERM).
pub async fn start_with_signal(
    config: ServerConfig,
    signal: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<RunningServer, StartError> {
    let node = Uuid::new_v4();
    let name = node_name(node);
    let opened = open_store_as(config.database_url.as_deref(), Some(&name)).await?;
    if opened.kind == StoreKind::Memory && config.role != NodeRole::All {
        return Err(StartError::Config(format!(
            "--role {} needs PostgreSQL (DATABASE_URL): a node on the in-memory store \
             shares nothing with others, so it must take every role (--role all)",
            config.role
        )));
    }
    if opened.kind == StoreKind::Memory {
        tracing::warn!(
            "no DATABASE_URL: using the in-memory store; nothing persists across restarts"
        );
    }
    let bootstrap = AuthService::new(opened.stores.clone())
        .bootstrap(config.bootstrap_token.as_deref())
        .await
        .map_err(|e| StartError::Bootstrap(e.to_string()))?;
    if bootstrap == Bootstrap::ConfiguredTokenIgnored {
        tracing::warn!(
            "PICLOUD_BOOTSTRAP_TOKEN is ignored: an owner exists, and this is not one of its \
             working tokens (the variable is used only when the first owner is created). \
             If you are locked out, run `picloud admin create-owner-token --database-url URL` \
             on this machine for a fresh owner token"
        );
    }
    start_on(opened, &config, bootstrap, node, signal).await
}

/// The name a node's PostgreSQL connections carry (`application_name`):
/// its invocation records say which node wrote them.
fn node_name(node: Uuid) -> String {
    format!("picloud-{node}")
}

async fn start_on(
    mut opened: OpenedStore,
    config: &ServerConfig,
    bootstrap: Bootstrap,
    node: Uuid,
    signal: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<RunningServer, StartError> {
    let role = config.role;
    let env = env_service(&opened.stores, opened.kind, config.master_key.clone()).await?;
    let scripts = ScriptService::new(
        opened.stores.clone(),
        Arc::new(LazyExecutor::new(config.executor.clone())),
    )
    .with_env(env);
    let scripts = egress::configure(
        scripts,
        &config.egress_allow,
        config.egress_resolver.clone(),
    )?;
    let state = ApiState::with_scripts(scripts);
    state.set_secure_cookies(
        config
            .public_url
            .as_deref()
            .is_some_and(|u| u.to_ascii_lowercase().starts_with("https://")),
    );
    // Before the listener binds: a custom domain must never reach the
    // instance's own routes, not even while starting.
    let domains = state
        .domains
        .refresh()
        .await
        .map_err(|e| StartError::Database(format!("reading the custom domains failed: {e}")))?;
    if domains > 0 {
        tracing::info!("{domains} custom domain(s) routed");
    }
    let sweeper = picloud_core::kv::KvSweeper::start(
        opened.stores.clone(),
        Arc::clone(state.scripts.kv_signal()),
        (opened.kind == StoreKind::Postgres).then_some(KV_BACKSTOP),
    );
    let writer = state.scripts.writer().clone();
    // The change channel, followed from before the warm-up: a deploy on
    // another node meanwhile is applied after the warm-up compiled it, or
    // over it, never under it.
    let follower = opened.changes.take().map(|feed| {
        let follower = picloud_core::cluster::Follower::new(
            state.events.clone(),
            state.domains.clone(),
            node_name(node),
        );
        tokio::spawn(follower.follow(feed))
    });
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let router = picloud_axum::app(
        state.clone(),
        AppOptions {
            body_limit: config.body_limit,
            readiness: opened.readiness,
            body_timeout: config.body_timeout,
            role,
            draining: Arc::clone(&draining),
        },
    );
    let listen = config.listen;
    let serve = config.serve.clone();
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: listen,
        source,
    })?;
    let metrics = crate::metrics::start(
        config.metrics_listen,
        &state.scripts,
        &opened.stores,
        opened.pool,
    )
    .await?;
    let metrics_addr = metrics.as_ref().map(|m| m.addr);
    let scripts = state.scripts.clone();
    let backstop = (opened.kind == StoreKind::Postgres).then_some(BACKSTOP);
    state.cluster.set_this_node(node);
    let heartbeat = cluster::register(
        state.clone(),
        picloud_core::ports::NodeRecord {
            id: node,
            role,
            address: addr.to_string(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: picloud_core::clock::now(),
            heartbeat_at: picloud_core::clock::now(),
            stats: "{}".to_owned(),
        },
        opened.kind == StoreKind::Postgres,
    )
    .await;
    let engine = (config.run_jobs && role.serves_scripts()).then(|| {
        let runner = picloud_core::events::JobRunner::start(
            state.events.clone(),
            picloud_core::events::RunnerConfig {
                retry_base: config.retry_base,
                backstop,
                ..picloud_core::events::RunnerConfig::default()
            },
        );
        let scheduler = picloud_core::events::Scheduler::start(state.events.clone(), backstop);
        (runner, scheduler)
    });
    let drain_delay = config.drain_delay;
    let task = tokio::spawn(async move {
        // On the signal, end the log streams first: they would otherwise
        // keep their connections busy for the whole grace period.
        let signal = async move {
            signal.await;
            // Not ready first: a load balancer stops sending requests
            // here while the ones in flight finish.
            draining.store(true, std::sync::atomic::Ordering::Release);
            if !drain_delay.is_zero() {
                tracing::info!("draining: /readyz answers 503; stopping in {drain_delay:?}");
                tokio::time::sleep(drain_delay).await;
            }
            scripts.close_tails();
        };
        let served = picloud_axum::conn::serve_with(listener, router, signal, serve).await;
        // Running attempts finish and their completions are written;
        // queued jobs stay queued for the next start.
        if let Some((runner, scheduler)) = engine {
            scheduler.stop().await;
            runner.drain().await;
        }
        sweeper.stop().await;
        heartbeat.leave().await;
        if let Some(follower) = follower {
            follower.abort();
        }
        if let Some(metrics) = metrics {
            metrics.stop().await;
        }
        // Requests in flight are done (or were cut off after the grace
        // period): write their invocation records
        // before the process exits, but do not hang on a database that is
        // gone (the pool's own timeouts are longer than a supervisor waits).
        if tokio::time::timeout(std::time::Duration::from_secs(5), writer.flush())
            .await
            .is_err()
        {
            tracing::warn!("invocation records not written within 5 s of shutdown");
        }
        served
    });
    tracing::info!(
        "picloud ready on http://{addr} (store: {}, role: {role}, node: {node})",
        opened.kind
    );
    // Compile the live scripts in the background: the listener is bound
    // already, `/readyz` answers 503 until this is done, and `/run` compiles
    // what it needs on demand meanwhile.
    let warming = state.clone();
    tokio::spawn(async move {
        let state = warming;
        loop {
            match state.warm().await {
                Ok(scripts) => {
                    let noun = if scripts == 1 { "script" } else { "scripts" };
                    tracing::info!("warm: {scripts} live {noun} compiled");
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "warming the script cache failed; retrying in 2 s");
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                }
            }
        }
    });
    Ok(RunningServer {
        addr,
        metrics_addr,
        store_kind: opened.kind,
        bootstrap,
        shutdown: None,
        task,
        state,
    })
}
