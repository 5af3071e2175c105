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
use picloud_core::env::EnvService;
use picloud_core::executor::{ExecutorConfig, ExecutorStats, InlineBudget, LazyExecutor};
use picloud_core::scripts::ScriptService;
use picloud_core::secrets::MasterKey;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

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
    match database_url {
        None => Ok(OpenedStore {
            stores: picloud_store_memory::MemoryStore::new().into_stores(),
            kind: StoreKind::Memory,
            readiness: None,
            pool: None,
        }),
        #[cfg(feature = "postgres")]
        Some(url) => {
            let store = picloud_store_postgres::PostgresStore::connect_explained(url)
                .await
                .map_err(StartError::Database)?;
            store.migrate().await.map_err(|e| {
                StartError::Database(format!(
                    "the database's schema could not be brought up to date: {e}"
                ))
            })?;
            Ok(OpenedStore {
                stores: store.clone().into_stores(),
                kind: StoreKind::Postgres,
                readiness: Some(Arc::new(PgReadiness(store.clone()))),
                pool: Some(Arc::new(store)),
            })
        }
        #[cfg(not(feature = "postgres"))]
        Some(_) => Err(StartError::Unsupported(
            "this build has no PostgreSQL support (feature `postgres`)".into(),
        )),
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
    let opened = open_store(config.database_url.as_deref()).await?;
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
    start_on(opened, &config, bootstrap, signal).await
}

async fn start_on(
    opened: OpenedStore,
    config: &ServerConfig,
    bootstrap: Bootstrap,
    signal: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<RunningServer, StartError> {
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
    let router = picloud_axum::app(
        state.clone(),
        AppOptions {
            body_limit: config.body_limit,
            readiness: opened.readiness,
            body_timeout: config.body_timeout,
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
    let engine = config.run_jobs.then(|| {
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
    let task = tokio::spawn(async move {
        // On the signal, end the log streams first: they would otherwise
        // keep their connections busy for the whole grace period.
        let signal = async move {
            signal.await;
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
    tracing::info!("picloud ready on http://{addr} (store: {})", opened.kind);
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
