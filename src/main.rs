//! The `picloud` binary: a thin CLI over [`picloud::server`], and a client
//! of any PiCloud server ([`client`]).

mod client;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use picloud::auth::Bootstrap;
use picloud::http::conn::ServeOptions;
use picloud::server::{self, DEFAULT_LISTEN, ServerConfig};

/// jemalloc, which counts every thread's allocations: each script run's
/// `max_memory_bytes` then holds for every byte it allocates (see
/// `picloud_core::executor::meter`).
#[global_allocator]
static ALLOCATOR: picloud_core::executor::meter::MeteredAllocator =
    picloud_core::executor::meter::MeteredAllocator;

/// PiCloud: upload a Rhai script, get an HTTP endpoint.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    after_help = "Environment:\n  \
        PICLOUD_BOOTSTRAP_TOKEN  the first owner's API token (at least 32 characters), used only \
        when the store has no owner yet; without it a token is generated and printed once\n  \
        DATABASE_URL             PostgreSQL (postgres://USER@HOST:PORT/DB); without it, memory\n  \
        RUST_LOG                 the log filter (default: info)\n  \
        PICLOUD_RETRY_BASE_MS    the job retry backoff's base (default 1000)\n  \
        PICLOUD_MASTER_KEY       64 hex characters: the key that wraps each app's secret key \
        (or PICLOUD_MASTER_KEY_FILE, a file holding them)\n  \
        PICLOUD_EGRESS_ALLOW     IPs and CIDR ranges scripts may reach despite the private-address \
        rule, comma-separated\n  \
        PICLOUD_ROLE             all (default), api or worker: this node's part of a cluster \
        (several servers on one DATABASE_URL)\n  \
        PICLOUD_METRICS_LISTEN   where GET /metrics (Prometheus) listens, e.g. 127.0.0.1:9090; \
        unset, nowhere\n\n\
        PICLOUD_URL              client commands: the server, over the stored login\n  \
        PICLOUD_TOKEN            client commands: the API token, over the stored login\n\n\
        Locked out? `picloud admin create-owner-token --database-url URL` prints a fresh owner token.\n\
        Exit codes of the client commands: 0 success, 1 an error from the server or a script, \
        2 a usage error."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Client commands: print the server's raw JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Run the database migrations, then exit.
    Migrate {
        /// PostgreSQL URL.
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// Offline administration, straight through the store (no server needed).
    #[command(subcommand)]
    Admin(AdminCommand),
    #[command(flatten)]
    Client(client::ClientCommand),
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Print a fresh owner API token on standard output: the way back in
    /// after the owner's tokens are lost. Makes `admin` an owner again if no
    /// active owner is left.
    CreateOwnerToken {
        /// PostgreSQL URL (the in-memory store has nothing to recover).
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// Re-wrap every app's secret key under a new master key (offline). The
    /// current key comes from PICLOUD_MASTER_KEY or PICLOUD_MASTER_KEY_FILE;
    /// then start the server with the new one.
    RotateMasterKey {
        /// PostgreSQL URL.
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        /// A file holding the new key (64 hex characters).
        #[arg(long)]
        new_key_file: std::path::PathBuf,
    },
}

#[derive(Debug, Clone, clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PICLOUD_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// PostgreSQL URL; without it, the in-memory store (nothing persists).
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Milliseconds a connection may take to send a request head (also the
    /// keep-alive idle timeout).
    #[arg(long, env = "PICLOUD_HEADER_TIMEOUT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout_ms: u64,
    /// Milliseconds a request body may take to arrive after the head (then 408).
    #[arg(long, env = "PICLOUD_BODY_TIMEOUT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    body_timeout_ms: u64,
    /// The most connections open at once; more wait in the listen backlog.
    #[arg(long, env = "PICLOUD_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_connections: u32,
    /// Milliseconds a write to a client may make no progress before the
    /// connection closes (a client that stops reading).
    #[arg(long, env = "PICLOUD_WRITE_TIMEOUT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    write_timeout_ms: u64,
    /// Milliseconds requests in flight may take to finish after SIGINT/SIGTERM.
    #[arg(long, env = "PICLOUD_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    shutdown_grace_ms: u64,
    /// The instance's public URL, e.g. `https://picloud.example.com`; with
    /// https the dashboard's session cookie is `Secure`.
    #[arg(long, env = "PICLOUD_PUBLIC_URL")]
    public_url: Option<String>,
    /// IPs and CIDR ranges scripts may reach despite the private-address
    /// rule, comma-separated (e.g. `127.0.0.1/32,10.1.2.0/24`).
    #[arg(long, env = "PICLOUD_EGRESS_ALLOW", default_value = "")]
    egress_allow: String,
    /// Milliseconds before a failed job's first retry; each next one waits
    /// twice as long, at most 10 minutes.
    #[arg(long, env = "PICLOUD_RETRY_BASE_MS", default_value_t = 1_000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    retry_base_ms: u64,
    /// This node's role in a cluster (several servers on one DATABASE_URL):
    /// `all`, `api` (the admin API, sign-in, logs, the dashboard) or
    /// `worker` (/run, /async, custom domains, jobs and schedules). The
    /// in-memory store allows only `all`.
    #[arg(long, env = "PICLOUD_ROLE", default_value = "all", value_parser = parse_role)]
    role: picloud::cluster::NodeRole,
    /// Milliseconds a node answers 503 on /readyz before it stops taking
    /// requests, on SIGTERM: time for a load balancer's health check to
    /// send traffic elsewhere.
    #[arg(long, env = "PICLOUD_DRAIN_DELAY_MS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=600_000))]
    drain_delay_ms: u64,
    /// Where `GET /metrics` (Prometheus) listens, on its own listener, e.g.
    /// `127.0.0.1:9090`; unset or empty, nowhere.
    #[arg(long, env = "PICLOUD_METRICS_LISTEN")]
    metrics_listen: Option<String>,
}

fn parse_role(s: &str) -> Result<picloud::cluster::NodeRole, String> {
    picloud::cluster::NodeRole::parse(s)
        .ok_or_else(|| format!("{s:?} is not a role: expected all, api or worker"))
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tower_http=info,sqlx=warn"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .init();
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let master_key = server::master_key_from_env().map_err(|e| e.to_string())?;
    let metrics_listen = match args.metrics_listen.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(addr) => Some(addr.parse::<SocketAddr>().map_err(|e| {
            format!("--metrics-listen (PICLOUD_METRICS_LISTEN): `{addr}` is not an address: {e}")
        })?),
    };
    let config = ServerConfig {
        master_key,
        egress_allow: args.egress_allow.clone(),
        public_url: args.public_url.clone().filter(|u| !u.is_empty()),
        listen: args.listen,
        database_url: args.database_url.filter(|u| !u.is_empty()),
        bootstrap_token: std::env::var("PICLOUD_BOOTSTRAP_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
        body_timeout: Duration::from_millis(args.body_timeout_ms),
        serve: ServeOptions {
            header_read_timeout: Duration::from_millis(args.header_timeout_ms),
            max_connections: args.max_connections as usize,
            shutdown_grace: Duration::from_millis(args.shutdown_grace_ms),
            write_timeout: Duration::from_millis(args.write_timeout_ms),
        },
        executor: server::executor_config(),
        retry_base: Duration::from_millis(args.retry_base_ms),
        role: args.role,
        drain_delay: Duration::from_millis(args.drain_delay_ms),
        metrics_listen,
        ..ServerConfig::default()
    };
    let running = server::start_with_signal(config, picloud::http::shutdown_signal())
        .await
        .map_err(|e| e.to_string())?;
    if let Bootstrap::CreatedWithGeneratedToken(token) = &running.bootstrap {
        // Printed once, on stdout, never logged.
        println!("Bootstrap owner `admin` created. Its API token (shown once):\n\n    {token}\n");
    }
    running.wait().await.map_err(|e| e.to_string())
}

async fn rotate_master_key(
    database_url: &str,
    new_key_file: &std::path::Path,
) -> Result<(), String> {
    let old = server::master_key_from_env()
        .map_err(|e| e.to_string())?
        .ok_or("set the current master key in PICLOUD_MASTER_KEY or PICLOUD_MASTER_KEY_FILE")?;
    let text = std::fs::read_to_string(new_key_file)
        .map_err(|e| format!("cannot read {}: {e}", new_key_file.display()))?;
    let new = picloud_core::secrets::MasterKey::from_hex(&text)
        .map_err(|e| format!("{}: {e}", new_key_file.display()))?;
    let n = server::rotate_master_key(database_url, &old, &new)
        .await
        .map_err(|e| e.to_string())?;
    eprintln!(
        "{n} app key(s) re-wrapped from master key {} to {}; start the server with the new key",
        old.id(),
        new.id()
    );
    Ok(())
}

fn main() -> ExitCode {
    // The build's reqwest (the CLI's and the egress client's) takes its
    // TLS provider from the process default.
    picloud_core::egress::install_crypto_provider();
    let cli = Cli::parse();
    // The log is the server's; a client command prints only its answers.
    if !matches!(cli.command, Some(Command::Client(_))) {
        init_logging();
    }
    let runtime = match server::runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("picloud: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Some(Command::Migrate { database_url }) => server::migrate(&database_url)
            .await
            .map(|()| tracing::info!("migrations applied"))
            .map_err(|e| e.to_string()),
        Some(Command::Admin(AdminCommand::CreateOwnerToken { database_url })) => {
            server::create_owner_token(&database_url)
                .await
                .map(|(token, owner)| {
                    eprintln!("A new API token for the owner `{owner}` (shown once):");
                    println!("{token}");
                })
                .map_err(|e| e.to_string())
        }
        Some(Command::Admin(AdminCommand::RotateMasterKey {
            database_url,
            new_key_file,
        })) => rotate_master_key(&database_url, &new_key_file).await,
        Some(Command::Serve(args)) => serve(args).await,
        Some(Command::Client(command)) => {
            return match client::run(command, cli.json).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(failure) => {
                    eprintln!("picloud: {}", failure.message);
                    ExitCode::from(failure.code)
                }
            };
        }
        None => serve(cli.serve).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once, on standard error: the log is for the running server.
            eprintln!("picloud: {e}");
            ExitCode::FAILURE
        }
    }
}
