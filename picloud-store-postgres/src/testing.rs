//! Test support (feature `test-support`): a fresh database per test, from a
//! superuser `DATABASE_URL`. Used by this crate's tests and benches, by the
//! `picloud` end-to-end tests, and usable by anyone testing code on top of
//! the PostgreSQL store.
//!
//! - Without `DATABASE_URL`, tests say loudly on stderr that they were
//!   skipped, unless `CI=true`, where a missing database is a failure.
//! - Each fresh database is named `picloud_test_<pid>_<random>` (letters,
//!   digits and `_` only), created from `template0` and migrated.
//! - Databases cannot be dropped when a test ends (the conformance macro has
//!   no teardown hook), so the first fresh database a process asks for first
//!   drops the leftovers of earlier runs: `picloud_test_*` databases of a
//!   process that is gone. Cargo runs test binaries one at a time, so those
//!   are stale; a live process's databases (a concurrent run) are left alone.

use std::io::Write;
use std::str::FromStr;
use std::sync::Once;
use std::time::Duration;

use crate::PostgresStore;
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::sync::OnceCell;

/// The prefix of every database these tests create.
pub const PREFIX: &str = "picloud_test_";

/// The skip notice.
pub const SKIP: &str = "SKIPPED: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres to run the PostgreSQL tests";

/// The superuser URL from `DATABASE_URL`. `None` (after a loud notice on
/// stderr) when unset; panics when unset and `CI=true`.
pub fn database_url() -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "DATABASE_URL is required in CI (CI=true): the PostgreSQL tests cannot be skipped"
                );
            }
            skip_notice();
            None
        }
    }
}

/// Prints the skip notice, once per test binary, straight to stderr: libtest
/// captures `eprintln!` of passing tests, and a skip must not be silent.
fn skip_notice() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let binary = std::env::args()
            .next()
            .and_then(|a| {
                std::path::Path::new(&a)
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
            })
            .unwrap_or_default();
        let _ = writeln!(std::io::stderr(), "\n*** {SKIP} ({binary}) ***\n");
    });
}

/// A fresh, migrated database and a store on it.
#[derive(Debug)]
pub struct TestDb {
    /// The database's name.
    pub name: String,
    /// Connection options for the database (for extra connections).
    pub options: PgConnectOptions,
    /// The store, on a pool with the default options.
    pub store: PostgresStore,
    admin_url: String,
}

/// A fresh migrated database, or `None` to skip (see [`database_url`]).
pub async fn fresh_db() -> Option<TestDb> {
    let url = database_url()?;
    Some(TestDb::create(&url).await)
}

/// The URL of a fresh migrated database (nothing connected to it), or
/// `None` to skip (see [`database_url`]). For tests that start a server
/// process on their own database.
pub async fn fresh_database_url() -> Option<String> {
    let url = database_url()?;
    let db = TestDb::create(&url).await;
    db.store.pool().close().await;
    Some(with_database(&url, &db.name))
}

/// The URL of a fresh database with nothing in it, not even the schema
/// (several servers started on it at once race to migrate it), or `None`
/// to skip (see [`database_url`]).
pub async fn empty_database_url() -> Option<String> {
    let url = database_url()?;
    CLEANUP.get_or_init(|| drop_stale(&url)).await;
    let name = new_name();
    let mut conn = admin(&url).await;
    sqlx::query(AssertSqlSafe(format!(
        "CREATE DATABASE \"{name}\" TEMPLATE template0"
    )))
    .execute(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("create database {name}: {e}"));
    let _ = conn.close().await;
    Some(with_database(&url, &name))
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// The store of a fresh migrated database, as `Stores`; the conformance
/// suite's factory.
pub async fn fresh_stores() -> Option<picloud_core::Stores> {
    Some(fresh_db().await?.store.into_stores())
}

/// Drops the stale databases of earlier runs, once per process.
static CLEANUP: OnceCell<()> = OnceCell::const_new();

/// A name made of `PREFIX`, this process's id and 12 random hex digits.
fn new_name() -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    let name = format!("{PREFIX}{}_{}", std::process::id(), &random[..12]);
    assert!(is_safe_name(&name), "bad database name {name}");
    name
}

/// Only lowercase letters, digits and `_`: safe to splice into DDL in quotes.
fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The pid part of `picloud_test_<pid>_<random>`.
fn pid_of(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?.split('_').next()?.parse().ok()
}

/// Whether a process with this pid is running here. Where that cannot be
/// known (no `/proc`), only the current process counts as alive.
fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc = std::path::Path::new("/proc");
    proc.join("self").exists() && proc.join(pid.to_string()).exists()
}

/// Opens an admin connection on the `DATABASE_URL` database.
pub async fn admin(url: &str) -> PgConnection {
    PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to DATABASE_URL: {e}"))
}

/// Drops a database, closing any connection still on it.
pub async fn drop_database(admin: &mut PgConnection, name: &str) {
    assert!(is_safe_name(name), "refusing to drop {name:?}");
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(admin)
    .await
    .unwrap_or_else(|e| panic!("drop database {name}: {e}"));
}

async fn drop_stale(url: &str) {
    let mut conn = admin(url).await;
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
            .bind(PREFIX)
            .fetch_all(&mut conn)
            .await
            .expect("list test databases");
    for name in names {
        let stale = pid_of(&name).is_some_and(|pid| !process_alive(pid));
        if stale && is_safe_name(&name) {
            drop_database(&mut conn, &name).await;
        }
    }
    let _ = conn.close().await;
}

impl TestDb {
    /// Creates and migrates a fresh database on the server at `admin_url`.
    pub async fn create(admin_url: &str) -> Self {
        CLEANUP.get_or_init(|| drop_stale(admin_url)).await;
        let name = new_name();
        let mut conn = admin(admin_url).await;
        sqlx::query(AssertSqlSafe(format!(
            "CREATE DATABASE \"{name}\" TEMPLATE template0"
        )))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("create database {name}: {e}"));
        let _ = conn.close().await;

        let options = PgConnectOptions::from_str(admin_url)
            .expect("DATABASE_URL parses")
            .database(&name);
        let store = PostgresStore::connect_with(PostgresStore::pool_options(), options.clone())
            .await
            .unwrap_or_else(|e| panic!("connect to {name}: {e}"));
        store.migrate().await.expect("migrate");
        Self {
            name,
            options,
            store,
            admin_url: admin_url.to_owned(),
        }
    }

    /// Another connection to this database, outside the store's pool.
    pub async fn connection(&self) -> PgConnection {
        PgConnection::connect_with(&self.options)
            .await
            .expect("connect to the test database")
    }

    /// Closes the store's pool and drops the database.
    pub async fn drop(self) {
        self.store.pool().close().await;
        let mut conn = admin(&self.admin_url).await;
        drop_database(&mut conn, &self.name).await;
        let _ = conn.close().await;
    }
}

/// How many proptest cases to run: `PROPTEST_CASES`, or `default`.
pub fn proptest_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A generous bound for operations that must not hang.
pub const NO_HANG: Duration = Duration::from_secs(20);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_get_the_new_database() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
        assert_eq!(pid_of("picloud_test_42_abc"), Some(42));
        assert!(!is_safe_name("bad\"name"));
    }
}
