//! The read lane: a few connections of the store's own for the point reads
//! every request makes (the token behind a bearer, the app a path names, the
//! caller's role on it; coalesced by `coalesce.rs`) and the readiness ping,
//! one round trip per statement.
//!
//! Through the sqlx pool, a statement costs more than its own round trip: the
//! pool pings every connection it takes back (on release, unconditionally in
//! sqlx 0.9), and, with `test_before_acquire`, every connection it hands out.
//! An authenticated `GET` of an app is two statements, so it was six round
//! trips, and the pings were most of its cost. The lane keeps its own idle
//! connections instead, and hands one back to its stack when the statement
//! is done, without a ping:
//!
//! - **Bounded.** At most [`READ_CONNECTIONS`] connections, on top of the
//!   pool's; waiting for one, connecting included, is bounded by the pool's
//!   acquire timeout, and a closed pool closes the lane too. Connections are
//!   opened on demand with the pool's connect options (not its
//!   `after_connect` hook), reused most recent first, and dropped past the
//!   pool's idle timeout or maximum lifetime.
//! - **Self-healing.** A statement that fails on a
//!   [broken](crate::health::is_broken) connection that had been idle in
//!   the lane runs once more on a new connection, and the lane's other idle
//!   connections are dropped (a restart ends them all). Only reads use the
//!   lane, so running one twice is harmless. A failure on a new connection
//!   is the answer: the database is unreachable, not a connection stale.
//! - **Cancel-safe.** A connection whose statement did not finish (its
//!   future dropped mid-flight) or broke is closed, never reused.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnection, PgPool};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::health::{is_broken, note_broken};

/// The most connections the read lane of one store opens, on top of its
/// pool's.
pub const READ_CONNECTIONS: u32 = 4;

/// A connection resting in the lane.
struct Idle {
    conn: PgConnection,
    opened: Instant,
    since: Instant,
}

/// The lane of one store (see the module docs).
pub(crate) struct ReadLane {
    /// The pool whose options and closed state the lane follows.
    pool: PgPool,
    /// Resting connections, the most recently used last.
    idle: Mutex<Vec<Idle>>,
    /// One permit per connection, resting or in use.
    permits: Semaphore,
}

impl fmt::Debug for ReadLane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadLane")
            .field("idle", &self.idle().len())
            .field("available", &self.permits.available_permits())
            .finish()
    }
}

/// Runs one read-only statement on the read lane `$lane` (a [`ReadLane`],
/// or anything that dereferences to one): `$statement` is an expression of
/// the connection `$conn` (a `&mut PgConnection`) whose `.await` gives a
/// `Result<_, sqlx::Error>`. Runs it once, and once more on a new connection
/// if the connection it had rested in the lane and turned out to be broken.
///
/// A macro rather than a function taking a closure: a closure borrowing the
/// caller's arguments would have to be generic over the connection's
/// lifetime, and the future of an `async_trait` method must be `Send`, which
/// rustc cannot yet prove through such a higher-ranked closure.
macro_rules! lane_read {
    ($lane:expr, |$conn:ident| $statement:expr) => {{
        let mut reuse = true;
        loop {
            let mut lease = match $lane.lease(reuse).await {
                Ok(lease) => lease,
                Err(e) => break Err(e),
            };
            let result = {
                let $conn = lease.conn();
                $statement.await
            };
            match lease.settle(result) {
                $crate::read_lane::Outcome::Done(result) => break result,
                $crate::read_lane::Outcome::Retry => reuse = false,
            }
        }
    }};
}
pub(crate) use lane_read;

/// What a statement on a [`Lease`] came to.
pub(crate) enum Outcome<T> {
    /// The answer (the statement's result).
    Done(Result<T, sqlx::Error>),
    /// Run it again, on a new connection: a resting one was dead.
    Retry,
}

/// A connection taken from the lane. Dropped, it closes the connection;
/// [`Lease::settle`] returns it to the lane unless it broke.
pub(crate) struct Lease<'a> {
    lane: &'a ReadLane,
    conn: PgConnection,
    opened: Instant,
    /// Whether it had rested in the lane (else it was opened for this read).
    reused: bool,
    _permit: SemaphorePermit<'a>,
}

impl Lease<'_> {
    /// The connection, for one statement.
    pub(crate) fn conn(&mut self) -> &mut PgConnection {
        &mut self.conn
    }

    /// Ends the lease with the statement's `result`. A broken connection is
    /// closed, noted, and its resting siblings closed too (what ended it most
    /// likely ended them); the statement is retried if the connection had
    /// rested in the lane, else the failure is the answer (the database is
    /// unreachable, not a connection stale). Any other outcome, a database
    /// error included (the server answered), returns the connection to the
    /// lane.
    pub(crate) fn settle<T>(self, result: Result<T, sqlx::Error>) -> Outcome<T> {
        match result {
            Err(e) if is_broken(&e) => {
                note_broken();
                let (lane, reused) = (self.lane, self.reused);
                drop(self);
                lane.idle().clear();
                if reused {
                    Outcome::Retry
                } else {
                    Outcome::Done(Err(e))
                }
            }
            result => {
                self.finish();
                Outcome::Done(result)
            }
        }
    }

    /// Returns the connection to the lane, ready for the next read.
    fn finish(self) {
        let Lease {
            lane, conn, opened, ..
        } = self;
        let mut idle = lane.idle();
        // A retry may open a connection while others rest: keep the bound.
        if idle.len() < READ_CONNECTIONS as usize {
            idle.push(Idle {
                conn,
                opened,
                since: Instant::now(),
            });
        }
    }
}

impl ReadLane {
    /// A lane for the database `pool` connects to. Opens nothing yet.
    pub(crate) fn new(pool: PgPool) -> Self {
        Self {
            pool,
            idle: Mutex::default(),
            permits: Semaphore::new(READ_CONNECTIONS as usize),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection: a resting one if `reuse` and one is fit, else a new one.
    /// Waiting and connecting are bounded by the pool's acquire timeout.
    pub(crate) async fn lease(&self, reuse: bool) -> Result<Lease<'_>, sqlx::Error> {
        if self.pool.is_closed() {
            self.idle().clear();
            return Err(sqlx::Error::PoolClosed);
        }
        let options = self.pool.options();
        let deadline = tokio::time::Instant::now() + options.get_acquire_timeout();
        let permit = tokio::time::timeout_at(deadline, self.permits.acquire())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        if reuse && let Some(idle) = self.take_fit() {
            return Ok(Lease {
                lane: self,
                conn: idle.conn,
                opened: idle.opened,
                reused: true,
                _permit: permit,
            });
        }
        let connect_options = self.pool.connect_options();
        let conn = tokio::time::timeout_at(
            deadline,
            <PgConnection as sqlx::Connection>::connect_with(&connect_options),
        )
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)??;
        Ok(Lease {
            lane: self,
            conn,
            opened: Instant::now(),
            reused: false,
            _permit: permit,
        })
    }

    /// The most recently rested connection within the pool's idle timeout
    /// and maximum lifetime; older ones on the way are closed.
    fn take_fit(&self) -> Option<Idle> {
        let options = self.pool.options();
        let too_old =
            |limit: Option<Duration>, since: Instant| limit.is_some_and(|l| since.elapsed() >= l);
        let mut idle = self.idle();
        while let Some(candidate) = idle.pop() {
            if too_old(options.get_idle_timeout(), candidate.since)
                || too_old(options.get_max_lifetime(), candidate.opened)
            {
                continue;
            }
            return Some(candidate);
        }
        None
    }
}
