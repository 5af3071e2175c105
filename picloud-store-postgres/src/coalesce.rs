//! Coalesced point reads: the lookups every request makes (its token, the
//! app it names, the caller's role on it), asked for by many requests at
//! once, answered by one statement per round trip.
//!
//! On a small machine a round trip to PostgreSQL costs far more than the
//! index lookup it carries (the wake-ups of both processes, the loopback
//! stack), so requests per second are round trips per second divided by
//! round trips per request. Nothing is cached here; instead, lookups of one
//! kind that arrive while a statement of that kind is in flight wait for it
//! to finish, and then go together, as one `… WHERE key = ANY($1)`:
//!
//! - **Never stale.** Every lookup is answered by a statement that started
//!   after the lookup was asked for (a batch is taken from the queue only
//!   when its statement is about to be sent), so a write committed before
//!   the lookup, a revoked token or a deactivated user, is always seen, on
//!   every node: exactly as if it had its own statement.
//! - **No added wait.** With nothing in flight, a lookup is sent at once,
//!   alone. Batches form only under load, from lookups that would have
//!   queued for a connection anyway.
//! - **One kind, one statement in flight.** A flusher task per kind sends
//!   the queue's lookups (at most [`MAX_BATCH`] at a time) on the read lane
//!   (with its retry on a broken connection), hands each waiter the rows of
//!   its key, and repeats until the queue is empty. The flusher is a task of
//!   its own, so a request that gives up (its future dropped) cannot strand
//!   the others; a flusher that stops early (its runtime shut down) lets its
//!   lookups go, and they ask again.
//! - **Failures are per batch, decoding per key.** A statement that fails
//!   fails every lookup of its batch (each gets the error); a row that does
//!   not decode into its domain type fails only the lookups of its key,
//!   since the callers decode their own rows.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use sqlx::postgres::PgConnection;
use tokio::sync::oneshot;

use crate::read_lane::{ReadLane, lane_read};

/// The most lookups one statement carries.
pub(crate) const MAX_BATCH: usize = 128;

/// How many times a lookup is queued before it gives up on flushers that
/// stop without answering it.
const ATTEMPTS: usize = 3;

/// The future of a [`Fetch`].
pub(crate) type Rows<'c, R> =
    Pin<Box<dyn Future<Output = Result<Vec<R>, sqlx::Error>> + Send + 'c>>;

/// The statement of a kind: the rows of `keys`, in any order.
pub(crate) type Fetch<K, R> = for<'c> fn(&'c mut PgConnection, &'c [K]) -> Rows<'c, R>;

/// A statement's failure, shared by every lookup of its batch.
#[derive(Debug, Clone)]
pub(crate) struct BatchError(Arc<sqlx::Error>);

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BatchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// What a lookup receives: the rows of its key.
type Answer<R> = Result<Vec<R>, BatchError>;

/// Lookups of one kind waiting for a statement.
struct Queue<K, R> {
    waiting: Vec<(K, oneshot::Sender<Answer<R>>)>,
    /// Whether a flusher task is running for this kind.
    flushing: bool,
}

/// The coalescer of one kind of lookup (see the module docs).
pub(crate) struct Coalescer<K, R> {
    fetch: Fetch<K, R>,
    key_of: fn(&R) -> K,
    lane: Arc<ReadLane>,
    queue: Mutex<Queue<K, R>>,
}

impl<K, R> fmt::Debug for Coalescer<K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coalescer")
            .field(
                "waiting",
                &self
                    .queue
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .waiting
                    .len(),
            )
            .finish_non_exhaustive()
    }
}

impl<K, R> Coalescer<K, R>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    R: Clone + Send + 'static,
{
    /// A coalescer whose statement is `fetch`, whose rows say their key
    /// with `key_of`, on `lane`'s connections.
    pub(crate) fn new(lane: Arc<ReadLane>, fetch: Fetch<K, R>, key_of: fn(&R) -> K) -> Self {
        Self {
            fetch,
            key_of,
            lane,
            queue: Mutex::new(Queue {
                waiting: Vec::new(),
                flushing: false,
            }),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue<K, R>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The rows of `key`, read by a statement that starts after this call.
    ///
    /// Should the flusher stop before answering (a panic, or the runtime it
    /// was spawned on shutting down), the lookup asks again, on a flusher of
    /// its own runtime; after [`ATTEMPTS`] such losses it fails.
    pub(crate) async fn get(self: &Arc<Self>, key: K) -> Result<Vec<R>, BatchError> {
        for _ in 0..ATTEMPTS {
            let (tx, rx) = oneshot::channel();
            let start = {
                let mut queue = self.queue();
                queue.waiting.push((key.clone(), tx));
                !std::mem::replace(&mut queue.flushing, true)
            };
            if start {
                tokio::spawn(Arc::clone(self).flush());
            }
            if let Ok(answer) = rx.await {
                return answer;
            }
        }
        Err(BatchError(Arc::new(sqlx::Error::WorkerCrashed)))
    }

    /// Sends the queue's lookups, a batch per statement, until none waits.
    async fn flush(self: Arc<Self>) {
        let mut running = Running {
            queue: &self.queue,
            done: false,
        };
        loop {
            let batch: Vec<(K, oneshot::Sender<Answer<R>>)> = {
                let mut queue = self.queue();
                if queue.waiting.is_empty() {
                    queue.flushing = false;
                    running.done = true;
                    return;
                }
                let take = queue.waiting.len().min(MAX_BATCH);
                queue.waiting.drain(..take).collect()
            };
            let mut keys: Vec<K> = batch.iter().map(|(k, _)| k.clone()).collect();
            dedup(&mut keys);
            let fetch = self.fetch;
            let result = lane_read!(self.lane, |conn| fetch(conn, &keys));
            match result {
                Ok(rows) => {
                    let mut by_key: HashMap<K, Vec<R>> = HashMap::with_capacity(keys.len());
                    for row in rows {
                        by_key.entry((self.key_of)(&row)).or_default().push(row);
                    }
                    for (key, tx) in batch {
                        let _ = tx.send(Ok(by_key.get(&key).cloned().unwrap_or_default()));
                    }
                }
                Err(e) => {
                    let e = BatchError(Arc::new(e));
                    for (_, tx) in batch {
                        let _ = tx.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}

/// A flusher at work. Should it stop before the queue is empty (a panic, or
/// its runtime shutting down with it), the lookups still queued are let go
/// (their senders dropped, so they ask again) rather than wait for a
/// flusher that will never come, and the next lookup starts a new one.
struct Running<'a, K, R> {
    queue: &'a Mutex<Queue<K, R>>,
    done: bool,
}

impl<K, R> Drop for Running<'_, K, R> {
    fn drop(&mut self) {
        if !self.done {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.waiting.clear();
            queue.flushing = false;
        }
    }
}

/// Removes repeated keys, keeping the first of each.
fn dedup<K: Eq + Hash + Clone>(keys: &mut Vec<K>) {
    let mut seen = std::collections::HashSet::with_capacity(keys.len());
    keys.retain(|k| seen.insert(k.clone()));
}
