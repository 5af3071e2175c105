//! The `picloud` binary: a thin CLI over [`picloud::server`].

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use picloud::auth::Bootstrap;
use picloud::server::{self, DEFAULT_LISTEN, ServerConfig};

/// jemalloc, which counts every thread's allocations: each script run's
/// `max_memory_bytes` then holds for every byte it allocates (see
/// `picloud_core::executor::meter`).
#[global_allocator]
static ALLOCATOR: picloud_core::executor::meter::MeteredAllocator =
    picloud_core::executor::meter::MeteredAllocator;

/// PiCloud: upload a Rhai script, get an HTTP endpoint.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
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
}

#[derive(Debug, Clone, clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PICLOUD_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// PostgreSQL URL; without it, the in-memory store (nothing persists).
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
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
    let config = ServerConfig {
        listen: args.listen,
        database_url: args.database_url.filter(|u| !u.is_empty()),
        bootstrap_token: std::env::var("PICLOUD_BOOTSTRAP_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
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

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Migrate { database_url }) => server::migrate(&database_url)
            .await
            .map(|()| tracing::info!("migrations applied"))
            .map_err(|e| e.to_string()),
        Some(Command::Serve(args)) => serve(args).await,
        None => serve(cli.serve).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("picloud: {e}");
            ExitCode::FAILURE
        }
    }
}
