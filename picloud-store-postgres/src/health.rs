//! Dead connections, found without a round trip per statement.
//!
//! sqlx can ping every pooled connection before handing it out
//! (`test_before_acquire`). That heals a pool after a database restart, but
//! it costs a round trip on every statement, which doubles the latency of a
//! short indexed read. This store pays for a test only when a connection is
//! suspect:
//!
//! - **A failure that means the connection is gone** ([`is_broken`]: an I/O
//!   error, SQLSTATE class 08, or the server ending the session, 57P01 to
//!   57P03) is noted ([`note_broken`]) wherever the store sees one: the error
//!   mapping (`error.rs`), the pool's test, and the retrying reads.
//! - **The pool tests a connection before use** ([`test_if_suspect`]) only if
//!   it sat idle for at least [`TEST_IDLE_AFTER`], or since before the last
//!   noted break. A restart takes seconds, so every connection that was idle
//!   through it is tested; and once one dead connection has been seen, the
//!   others that were idle at that moment are tested too, so the pool drops
//!   its dead connections on the next acquisitions instead of handing them
//!   out one failure at a time. A test that fails is itself a noted break.
//! - **Reads retry once** on another connection ([`pool_read!`], and the
//!   read lane's `lane_read!`). A write never retries: a connection that
//!   breaks after the statement was sent does not say whether it committed.
//!   So a write can fail once, if it is the very first statement to meet a
//!   connection the server ended less than [`TEST_IDLE_AFTER`] ago with
//!   nothing noticing yet; a pinged connection could die between the ping
//!   and the statement just the same.
//!
//! The last break is process-wide: a break seen by one store makes the
//! other stores of the process test their connections idle since then too,
//! which costs one ping each at most.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnectionMetadata;
use sqlx::postgres::PgConnection;

/// How long a pooled connection may sit idle before it is tested (pinged)
/// before use. A database restart lasts longer than this, so a connection
/// idle through one is tested; a busy pool never waits this long.
pub const TEST_IDLE_AFTER: Duration = Duration::from_secs(1);

/// Whether `e` means the connection it happened on is gone: the socket
/// failed or closed, the server reported a connection exception (SQLSTATE
/// class 08), or it ended the session (57P01 admin shutdown, as
/// `pg_terminate_backend` and a fast shutdown do; 57P02 crash shutdown;
/// 57P03 cannot connect now).
pub(crate) fn is_broken(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) => true,
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

/// The instant every "last break" is counted from.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Nanoseconds from [`origin`] to the last noted break, plus one; 0 while
/// none was noted.
static LAST_BREAK: AtomicU64 = AtomicU64::new(0);

/// Notes that a connection was found broken now: every pooled connection
/// idle since before this instant is tested before its next use.
pub(crate) fn note_broken() {
    let since_origin = u64::try_from(origin().elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
    LAST_BREAK.fetch_max(since_origin + 1, Ordering::Relaxed);
}

/// Whether a connection idle for `idle_for` should be tested before use:
/// idle for [`TEST_IDLE_AFTER`] or more, or since before the last noted
/// break.
pub(crate) fn is_suspect(idle_for: Duration) -> bool {
    if idle_for >= TEST_IDLE_AFTER {
        return true;
    }
    let last = LAST_BREAK.load(Ordering::Relaxed);
    if last == 0 {
        return false;
    }
    let broke_at = origin() + Duration::from_nanos(last - 1);
    Instant::now()
        .checked_sub(idle_for)
        .is_none_or(|idle_since| idle_since <= broke_at)
}

/// Runs one read-only statement on a pooled connection of `$store` (a
/// [`PostgresStore`](crate::PostgresStore)), like `lane_read!` does on the
/// read lane: `$statement` is an expression of the connection `$conn` (a
/// `&mut PgConnection`) whose `.await` gives a `Result<_, sqlx::Error>`. If
/// the connection turns out [broken](is_broken), the break is noted, so the
/// pool tests the connections idle since then, and the statement runs once
/// more on the connection the pool hands out next.
macro_rules! pool_read {
    ($store:expr, |$conn:ident| $statement:expr) => {{
        let mut retried = false;
        loop {
            let mut pooled = match $store.pool.acquire().await {
                Ok(pooled) => pooled,
                Err(e) => break Err(e),
            };
            let result = {
                let $conn = &mut *pooled;
                $statement.await
            };
            match result {
                Err(e) if !retried && $crate::health::is_broken(&e) => {
                    $crate::health::note_broken();
                    // The pool pings it on its way back, and closes it.
                    drop(pooled);
                    retried = true;
                }
                result => break result,
            }
        }
    }};
}
pub(crate) use pool_read;

/// The future a [`PgPoolOptions::before_acquire`](sqlx::pool::PoolOptions::before_acquire)
/// hook returns.
type HookFuture<'c> = Pin<Box<dyn Future<Output = Result<bool, sqlx::Error>> + Send + 'c>>;

/// The pool's `before_acquire` hook: pings a [suspect](is_suspect)
/// connection, and only those. A failed ping is a noted break, and makes
/// the pool close that connection and take another (or open one).
pub(crate) fn test_if_suspect(
    conn: &mut PgConnection,
    meta: PoolConnectionMetadata,
) -> HookFuture<'_> {
    Box::pin(async move {
        if is_suspect(meta.idle_for)
            && let Err(e) = sqlx::Connection::ping(conn).await
        {
            note_broken();
            return Err(e);
        }
        Ok(true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_sockets_and_ended_sessions_are_broken_connections() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        assert!(is_broken(&io));
        assert!(!is_broken(&sqlx::Error::RowNotFound));
        assert!(!is_broken(&sqlx::Error::PoolTimedOut));
        assert!(!is_broken(&sqlx::Error::PoolClosed));
    }

    #[test]
    fn long_idle_connections_and_those_idle_through_a_break_are_suspect() {
        assert!(is_suspect(TEST_IDLE_AFTER));
        assert!(is_suspect(Duration::from_secs(3600)));
        // Idle for 100 ms, and a break noted just now: it was idle through it.
        note_broken();
        assert!(is_suspect(Duration::from_millis(100)));
        // Idle since after the break: not suspect.
        std::thread::sleep(Duration::from_millis(20));
        assert!(!is_suspect(Duration::from_millis(5)));
    }
}
