//! # picloud-store-postgres
//!
//! PiCloud's PostgreSQL store: one [`PostgresStore`] implements every port of
//! `picloud-core` ([`AppRepository`](picloud_core::ports::AppRepository),
//! [`AdminUserRepository`](picloud_core::ports::AdminUserRepository),
//! [`AppMembersRepository`](picloud_core::ports::AppMembersRepository),
//! [`AuthzRepository`](picloud_core::ports::AuthzRepository),
//! [`TokenRepository`](picloud_core::ports::TokenRepository),
//! [`ScriptRepository`](picloud_core::ports::ScriptRepository),
//! [`InvocationRepository`](picloud_core::ports::InvocationRepository),
//! [`AppSettingsRepository`](picloud_core::ports::AppSettingsRepository), the event
//! engine's, [`KvStore`](picloud_core::ports::KvStore),
//! [`EnvRepository`](picloud_core::ports::EnvRepository) and
//! [`DomainRepository`](picloud_core::ports::DomainRepository)) over one sqlx connection
//! pool, with the schema shipped as embedded migrations ([`MIGRATOR`]).
//!
//! ## Why it looks the way it does
//!
//! - **PostgreSQL is the single source of truth** when several stateless
//!   PiCloud nodes share one database. So every atomic port operation is *one*
//!   SQL statement (`INSERT … ON CONFLICT DO NOTHING RETURNING`,
//!   `UPDATE … RETURNING`, `DELETE`): the database, not the process, decides
//!   races such as two grants of the same membership, and there is no
//!   read-then-write window in which a removed row could come back.
//! - **The memory store is the reference.** This store must be observably
//!   identical to `picloud-store-memory`, which the shared conformance suite
//!   and a differential property test check. Hence lists are ordered with
//!   `COLLATE "C"` (byte order, like Rust's `str` ordering), and timestamps are
//!   bound from the domain values (already truncated to microseconds by
//!   `picloud_core::clock::now`) instead of the database's `now()`.
//! - **Errors are mapped in one place** (the private `error` module): a unique
//!   violation (SQLSTATE 23505) is the port's `Conflict`, a foreign-key
//!   violation (23503) is `NotFound`, and everything else, including a lost
//!   connection and a row that does not decode (an unknown role name, say), is
//!   `Backend`. Nothing here panics on a database failure.
//! - **A dead database is an error, not a hang.** The default pool options
//!   ([`PostgresStore::pool_options`]) bound every connection acquisition by an
//!   acquire timeout.
//! - **A restart heals without a ping per statement.** The pool tests a
//!   connection before use only when it is suspect (idle for
//!   [`TEST_IDLE_AFTER`] or more, or since before a broken connection was
//!   seen), and reads retry once on another connection when theirs turns
//!   out dead (the private `health` module).
//! - **The point reads on every request's path are cheap, and never stale.**
//!   The token (with its user), the app by slug or id, the caller's role and
//!   the user by id go through a small lane of the store's own connections
//!   ([`READ_CONNECTIONS`]; the private `read_lane` module), one round trip
//!   per statement with no pool ping, and concurrent lookups of one kind
//!   share a statement (`… = ANY($1)`; the private `coalesce` module).
//!   Nothing is cached: every lookup is answered by a statement that started
//!   after it was asked for, so a revoked token or a deactivated user is
//!   refused on every node from the next request on.
//!
//! ## Use
//!
//! ```no_run
//! use picloud_store_postgres::PostgresStore;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PostgresStore::connect("postgres://postgres@127.0.0.1:5432/picloud").await?;
//! store.migrate().await?;
//! // Keep a handle for readiness checks; the pool is shared.
//! let ready = store.clone();
//! let stores = store.into_stores();
//! assert!(ready.is_ready().await);
//! # let _ = stores;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod apps;
mod changes;
mod coalesce;
mod domains;
mod env;
mod error;
mod events;
mod headroom;
mod health;
mod kv;
mod members;
mod nodes;
mod read_lane;
mod rows;
mod scripts;
mod settings;
#[cfg(feature = "test-support")]
pub mod testing;
mod tokens;
mod users;

use std::sync::Arc;
use std::time::Duration;

use picloud_core::Stores;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::PgConnectOptions;

pub use health::TEST_IDLE_AFTER;
pub use read_lane::READ_CONNECTIONS;

/// The sqlx version this store is built on, re-exported so an embedder who
/// builds their own pool ([`PostgresStore::from_pool`]) uses the same types.
pub use sqlx;
pub use sqlx::postgres::{PgPool, PgPoolOptions};

pub use changes::{CHANNEL, JOBS_COALESCE, PgChangeFeed};

/// The embedded schema migrations (`migrations/` in this crate).
///
/// [`PostgresStore::migrate`] runs them; they are public so that other tools
/// (say `#[sqlx::test(migrator = "picloud_store_postgres::MIGRATOR")]`) can
/// apply the very same schema.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The default maximum number of pooled connections.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// The default bound on waiting for a pooled connection, connecting included.
/// An unreachable database fails an operation after at most this long.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Every PiCloud port over one PostgreSQL connection pool, plus up to
/// [`READ_CONNECTIONS`] connections of its own for the point reads on every
/// request's path (see the crate docs).
///
/// Cheap to clone: clones share the pool and those connections. Hand it to
/// services with [`PostgresStore::into_stores`].
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// The connections of the hot point reads (the private `read_lane` module).
    reads: Arc<read_lane::ReadLane>,
    /// The hot point reads, coalesced (the private `coalesce` module).
    lookups: Arc<Lookups>,
    /// The queue-cap estimate of each app (the private `headroom` module).
    headroom: Arc<headroom::Headroom>,
    /// The coalesced notification of job enqueues to the other nodes.
    jobs_wake: Arc<changes::JobWake>,
}

impl PostgresStore {
    /// The pool options [`PostgresStore::connect`] uses: at most
    /// [`DEFAULT_MAX_CONNECTIONS`] connections, an acquire timeout of
    /// [`DEFAULT_ACQUIRE_TIMEOUT`], and a connection tested (pinged) before
    /// use only when it is suspect: idle for [`TEST_IDLE_AFTER`] or more, or
    /// since before a broken connection was seen. A connection the server
    /// closed in a restart is then discarded and replaced rather than handed
    /// to a statement, without a ping before every statement (sqlx's
    /// `test_before_acquire` is off).
    ///
    /// Start from these to tune a pool for [`PostgresStore::connect_with`].
    pub fn pool_options() -> PgPoolOptions {
        PgPoolOptions::new()
            .max_connections(DEFAULT_MAX_CONNECTIONS)
            .acquire_timeout(DEFAULT_ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .before_acquire(health::test_if_suspect)
    }

    /// Connects to the database at `url` (`postgres://user@host:port/db`) with
    /// the default [`pool options`](PostgresStore::pool_options), opening one
    /// connection to check that the database is reachable.
    ///
    /// Fails after at most [`DEFAULT_ACQUIRE_TIMEOUT`] if it is not. Does not
    /// run migrations: call [`PostgresStore::migrate`].
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        let options: PgConnectOptions = url.parse()?;
        Self::connect_with(Self::pool_options(), options).await
    }

    /// [`connect`](Self::connect), with a failure explained for people: it
    /// names the server and the database, says what went wrong in words,
    /// and what to do (for a missing database: create it with `createdb`).
    /// The URL's password never appears.
    pub async fn connect_explained(url: &str) -> Result<Self, String> {
        Self::connect_explained_as(url, None).await
    }

    /// [`connect_explained`](Self::connect_explained), with every
    /// connection's `application_name` set to `name` when given: a cluster
    /// node names its connections after itself, which is how its
    /// invocation records say which node wrote them.
    pub async fn connect_explained_as(url: &str, name: Option<&str>) -> Result<Self, String> {
        let mut options: PgConnectOptions = url.parse().map_err(|e: sqlx::Error| {
            format!("DATABASE_URL is not a valid PostgreSQL URL ({e}); expected postgres://USER@HOST:PORT/DATABASE")
        })?;
        if let Some(name) = name {
            options = options.application_name(name);
        }
        // One plain connection first: the pool reports a refused or failed
        // connection only as "timed out", and the cause is what people need.
        let probe = tokio::time::timeout(
            DEFAULT_ACQUIRE_TIMEOUT,
            <sqlx::PgConnection as sqlx::Connection>::connect_with(&options),
        )
        .await;
        match probe {
            Ok(Ok(conn)) => {
                let _ = sqlx::Connection::close(conn).await;
            }
            Ok(Err(e)) => return Err(explain_connect_error(&options, &e)),
            Err(_) => return Err(explain_connect_error(&options, &sqlx::Error::PoolTimedOut)),
        }
        Self::connect_with(Self::pool_options(), options.clone())
            .await
            .map_err(|e| explain_connect_error(&options, &e))
    }

    /// Connects with explicit pool and connection options, opening one
    /// connection to check that the database is reachable.
    pub async fn connect_with(
        pool_options: PgPoolOptions,
        connect_options: PgConnectOptions,
    ) -> Result<Self, sqlx::Error> {
        let pool = pool_options.connect_with(connect_options).await?;
        Ok(Self::from_pool(pool))
    }

    /// Wraps an existing pool (its options are the caller's choice; a lazy
    /// pool is fine). The store's read connections follow the pool: its
    /// connect options, acquire timeout, idle timeout and maximum lifetime,
    /// and closing it closes them.
    pub fn from_pool(pool: PgPool) -> Self {
        let reads = Arc::new(read_lane::ReadLane::new(pool.clone()));
        Self {
            lookups: Arc::new(Lookups::new(&reads)),
            reads,
            pool,
            headroom: Arc::default(),
            jobs_wake: Arc::default(),
        }
    }

    /// Applies the embedded [`MIGRATOR`] migrations that are not applied yet.
    ///
    /// Safe to run from several nodes at once: sqlx serializes migrators with
    /// an advisory lock.
    pub async fn migrate(&self) -> Result<(), MigrateError> {
        MIGRATOR.run(&self.pool).await
    }

    /// The change channel (cluster mode), on a connection of its own:
    /// every change a node caches, as the triggers of migration 0014 send
    /// them, and a [`FeedEvent::Resync`](picloud_core::cluster::FeedEvent)
    /// after each reconnect. Fails if the database cannot be reached now.
    pub async fn changes(&self) -> Result<PgChangeFeed, sqlx::Error> {
        PgChangeFeed::connect(&self.pool).await
    }

    /// Jobs were committed: the other nodes hear of it within
    /// [`JOBS_COALESCE`].
    pub(crate) fn jobs_changed(&self) {
        self.jobs_wake.poke(&self.pool);
    }

    /// The underlying pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// This store as a [`Stores`] bundle: one shared instance, one view per
    /// port. Clone the store first to keep a handle for
    /// [`PostgresStore::is_ready`].
    pub fn into_stores(self) -> Stores {
        let mut stores = Stores::from_shared(Arc::new(self.clone()));
        // Enqueues also tell the other nodes (cluster mode).
        stores.jobs = Arc::new(changes::NotifyingJobs(self));
        stores
    }

    /// Runs a trivial query (`SELECT 1`) on one of the store's read
    /// connections (retried once on a new connection if a resting one was
    /// dead). Fails (within the pool's acquire timeout, when the database
    /// cannot be reached) if the database does not answer, or the pool was
    /// closed.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        read_lane::lane_read!(self.reads, |conn| sqlx::query_scalar::<_, i32>("SELECT 1")
            .fetch_one(conn))
        .map(drop)
    }

    /// Whether the database answers right now: [`PostgresStore::ping`] as a
    /// bool, for a `/readyz` endpoint.
    pub async fn is_ready(&self) -> bool {
        self.ping().await.is_ok()
    }
}

/// The point reads on every request's path, each coalesced on the read
/// lane: one [`Coalescer`](coalesce::Coalescer) per statement.
#[derive(Debug)]
struct Lookups {
    /// `TokenRepository::find_by_hash`: a token and its user, by hash.
    tokens: Arc<coalesce::Coalescer<String, tokens::TokenWithUserRow>>,
    /// `AppRepository::find_by_slug`.
    apps_by_slug: Arc<coalesce::Coalescer<String, rows::AppRow>>,
    /// `AppRepository::get`.
    apps_by_id: Arc<coalesce::Coalescer<uuid::Uuid, rows::AppRow>>,
    /// `AuthzRepository::app_role`, by (app, user).
    roles: Arc<coalesce::Coalescer<(uuid::Uuid, uuid::Uuid), members::RoleRow>>,
    /// `AdminUserRepository::get`.
    users: Arc<coalesce::Coalescer<uuid::Uuid, rows::UserRow>>,
}

impl Lookups {
    fn new(lane: &Arc<read_lane::ReadLane>) -> Self {
        use coalesce::Coalescer;
        let lane = || Arc::clone(lane);
        Self {
            tokens: Arc::new(Coalescer::new(
                lane(),
                tokens::by_hashes,
                tokens::TokenWithUserRow::hash_of,
            )),
            apps_by_slug: Arc::new(Coalescer::new(
                lane(),
                apps::by_slugs,
                rows::AppRow::slug_of,
            )),
            apps_by_id: Arc::new(Coalescer::new(lane(), apps::by_ids, rows::AppRow::id_of)),
            roles: Arc::new(Coalescer::new(
                lane(),
                members::roles_of,
                members::RoleRow::key_of,
            )),
            users: Arc::new(Coalescer::new(lane(), users::by_ids, rows::UserRow::id_of)),
        }
    }
}

/// A connection failure in words: where, what, and what to do.
fn explain_connect_error(options: &PgConnectOptions, e: &sqlx::Error) -> String {
    let server = match options.get_socket() {
        Some(socket) => format!("the socket {}", socket.display()),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    };
    let user = options.get_username();
    let database = options.get_database().unwrap_or(user);
    let code = e
        .as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned());
    match (code.as_deref(), e) {
        (Some("3D000"), _) => format!(
            "PostgreSQL at {server} has no database \"{database}\": create it with \
             `createdb -h {} -p {} -U {user} {database}`, or point DATABASE_URL at one that exists",
            options.get_host(),
            options.get_port()
        ),
        (Some("28P01" | "28000"), _) => format!(
            "PostgreSQL at {server} refused user \"{user}\" for database \"{database}\": \
             check the user name and password in DATABASE_URL (and pg_hba.conf)"
        ),
        (Some(code), sqlx::Error::Database(d)) => format!(
            "PostgreSQL at {server} refused the connection to \"{database}\": {} (SQLSTATE {code})",
            d.message()
        ),
        (_, sqlx::Error::Io(io)) => format!(
            "cannot reach PostgreSQL at {server}: {io}; is it running, and is DATABASE_URL's host and port right?"
        ),
        (_, sqlx::Error::PoolTimedOut) => format!(
            "PostgreSQL at {server} did not accept a connection in time (database \"{database}\"); \
             is it running and reachable?"
        ),
        (_, sqlx::Error::Tls(tls)) => {
            format!("TLS with PostgreSQL at {server} failed: {tls}; check sslmode in DATABASE_URL")
        }
        (_, other) => {
            format!("cannot connect to PostgreSQL at {server} (database \"{database}\"): {other}")
        }
    }
}
