//! The change channel (cluster mode): `LISTEN picloud_changes`.
//!
//! The triggers of migration 0014 send a notification in the transaction
//! of every change a node caches; [`PgChangeFeed`] receives them on a
//! connection of its own and turns them into [`FeedEvent`]s. When that
//! connection is lost (a database restart, `pg_terminate_backend`), the
//! notifications sent meanwhile are gone: the feed connects again, listens
//! again, and only then says [`FeedEvent::Resync`], so that the node's
//! re-read misses nothing.
//!
//! Job enqueues are signalled differently ([`JobWake`]): a `NOTIFY`
//! serialises the commits of every transaction that sends one (PostgreSQL
//! takes a database-wide lock for it at commit), which would cap enqueues
//! at the commit rate. So the store sends one `{"k":"jobs"}` after its
//! enqueues committed, at most one per [`JOBS_COALESCE`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use picloud_core::cluster::{Change, ChangeFeed, FeedEvent};
use picloud_core::ids::AppId;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};

/// The channel every node listens on.
pub const CHANNEL: &str = "picloud_changes";

/// The most one node's job notifications are delayed to coalesce them.
pub const JOBS_COALESCE: Duration = Duration::from_millis(10);

/// The longest wait between two attempts to reconnect the listener.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A listener that hears nothing at all for this long (every node's
/// heartbeat pings the channel every 10 s) takes its connection for dead,
/// even if no packet said so (a partition, a lost host), and reconnects.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(35);

/// A connection that lasted less than this before it was lost counts as a
/// failed one: the next reconnect waits (no back-to-back resyncs).
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// The change channel of one node: see the module documentation.
pub struct PgChangeFeed {
    /// A pool of one connection, the listener's own (it never takes one of
    /// the store's).
    pool: PgPool,
    listener: Option<PgListener>,
    backoff: Duration,
    /// When the current connection was made.
    connected_at: std::time::Instant,
}

impl std::fmt::Debug for PgChangeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgChangeFeed")
            .field("connected", &self.listener.is_some())
            .finish_non_exhaustive()
    }
}

impl PgChangeFeed {
    /// Listens on [`CHANNEL`] of the database `store` uses, on a connection
    /// of its own. Fails if the database cannot be reached now; once
    /// started, the feed reconnects by itself.
    pub(crate) async fn connect(store: &PgPool) -> Result<Self, sqlx::Error> {
        let options = (*store.connect_options()).clone();
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(crate::DEFAULT_ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        let listener = listen(&pool).await?;
        Ok(Self {
            pool,
            listener: Some(listener),
            backoff: Duration::from_millis(100),
            connected_at: std::time::Instant::now(),
        })
    }
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

impl PgChangeFeed {
    /// The connection was lost: a connection that did not last waits the
    /// backoff (which grows) before the next attempt; a long-lived one
    /// reconnects at once.
    async fn lost(&mut self) {
        if self.connected_at.elapsed() < STABLE_AFTER {
            tokio::time::sleep(self.backoff).await;
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        } else {
            self.backoff = Duration::from_millis(100);
        }
    }
}

#[async_trait]
impl ChangeFeed for PgChangeFeed {
    async fn next(&mut self) -> Option<FeedEvent> {
        loop {
            let Some(listener) = self.listener.as_mut() else {
                match listen(&self.pool).await {
                    Ok(listener) => {
                        self.listener = Some(listener);
                        self.connected_at = std::time::Instant::now();
                        return Some(FeedEvent::Resync);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "change channel: reconnecting failed; retrying in {:?}", self.backoff);
                        tokio::time::sleep(self.backoff).await;
                        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                }
            };
            let received = tokio::time::timeout(SILENCE_LIMIT, listener.try_recv()).await;
            match received {
                // A ping, or something this version does not know, passes.
                Ok(Ok(Some(n))) => {
                    if let Some(event) = parse(n.payload()) {
                        return Some(event);
                    }
                }
                // Lost, and listening again already (sqlx reconnects
                // eagerly): whatever was sent meanwhile is gone.
                Ok(Ok(None)) => {
                    tracing::warn!("change channel: connection lost and re-established");
                    self.lost().await;
                    self.connected_at = std::time::Instant::now();
                    return Some(FeedEvent::Resync);
                }
                Ok(Err(sqlx::Error::PoolClosed)) => return None,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "change channel: connection lost; reconnecting");
                    self.listener = None;
                    self.lost().await;
                }
                Err(_) => {
                    tracing::warn!(
                        "change channel: nothing heard for {SILENCE_LIMIT:?}, not even a \
                         heartbeat; taking the connection for dead and reconnecting"
                    );
                    self.listener = None;
                    self.lost().await;
                }
            }
        }
    }
}

/// A notification's payload as a feed event (`None`: not one of ours).
pub fn parse(payload: &str) -> Option<FeedEvent> {
    let v: serde_json::Value = serde_json::from_str(payload).ok()?;
    let app = || -> Option<AppId> {
        v.get("app")?
            .as_str()?
            .parse::<uuid::Uuid>()
            .ok()
            .map(AppId::from)
    };
    let change = match v.get("k")?.as_str()? {
        "script" => Change::Script { app: app()? },
        "app" => Change::App { app: app()? },
        "schedule" => Change::Schedule,
        "subscription" => Change::Subscription,
        "jobs" => Change::Jobs,
        "domain" => Change::Domain,
        "env" => Change::Env { app: app()? },
        "runs" => Change::Runs {
            app: app()?,
            node: v.get("node")?.as_str()?.to_owned(),
            first: v.get("first")?.as_i64()?,
            last: v.get("last")?.as_i64()?,
        },
        _ => return None,
    };
    let lag = v.get("t").and_then(serde_json::Value::as_f64).map(|t| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(t);
        Duration::from_secs_f64((now - t).max(0.0))
    });
    Some(FeedEvent::Change { change, lag })
}

/// The coalesced job notification of one store: see the module
/// documentation.
#[derive(Debug, Default)]
pub(crate) struct JobWake {
    /// A notification is on its way: later enqueues ride on it.
    pending: AtomicBool,
}

impl JobWake {
    /// Jobs were committed: make sure one notification follows, within
    /// [`JOBS_COALESCE`]. Needs a tokio runtime (every store call has one).
    pub(crate) fn poke(self: &Arc<Self>, pool: &PgPool) {
        if self.pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let (wake, pool) = (Arc::clone(self), pool.clone());
        tokio::spawn(async move {
            // Cleared however this task ends (a runtime shutting down drops
            // it mid-sleep): the next enqueue then sends again.
            let clear = Clear(&wake.pending);
            tokio::time::sleep(JOBS_COALESCE).await;
            // Cleared first: an enqueue that commits from now on sends
            // another; every earlier one is visible before this is sent.
            drop(clear);
            for attempt in 0..2 {
                match sqlx::query("SELECT pg_notify($1, '{\"k\":\"jobs\"}')")
                    .bind(CHANNEL)
                    .execute(&pool)
                    .await
                {
                    Ok(_) => break,
                    // The jobs still run: on this node at once, on the
                    // others at their next wake-up or backstop.
                    Err(e) if attempt == 1 => {
                        tracing::warn!(error = %e, "job notification not sent");
                    }
                    Err(_) => {}
                }
            }
        });
    }
}

/// Clears the flag it holds when dropped.
struct Clear<'a>(&'a AtomicBool);

impl Drop for Clear<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_and_unknown_ones_do_not() {
        let app = uuid::Uuid::new_v4();
        let p = format!(r#"{{"k":"script","app":"{app}","t":1.5}}"#);
        match parse(&p) {
            Some(FeedEvent::Change {
                change: Change::Script { app: a },
                lag: Some(_),
            }) => assert_eq!(a, AppId::from(app)),
            other => panic!("{other:?}"),
        }
        let p = format!(r#"{{"k":"runs","app":"{app}","node":"n1","first":3,"last":7}}"#);
        assert_eq!(
            parse(&p),
            Some(FeedEvent::Change {
                change: Change::Runs {
                    app: AppId::from(app),
                    node: "n1".into(),
                    first: 3,
                    last: 7
                },
                lag: None
            })
        );
        assert_eq!(
            parse(r#"{"k":"jobs"}"#),
            Some(FeedEvent::Change {
                change: Change::Jobs,
                lag: None
            })
        );
        assert_eq!(parse(r#"{"k":"script"}"#), None);
        assert_eq!(parse(r#"{"k":"what"}"#), None);
        assert_eq!(parse("not json"), None);
    }
}

/// The store's job queue as [`Stores`](picloud_core::Stores) hands it
/// out: every call goes to the store, and the calls that queue jobs
/// (enqueue, publish, replay, completions with follow-up work) tell the
/// other nodes, coalesced.
pub(crate) struct NotifyingJobs(pub(crate) crate::PostgresStore);

mod notifying {
    use chrono::{DateTime, Utc};
    use picloud_core::domain::{Event, Job, NewJob, QueueCap, QueueUsage};
    use picloud_core::ids::{AppId, JobId};
    use picloud_core::ports::{Completion, Enqueued, JobFilter, JobQueue, JobQueueError};

    use super::{NotifyingJobs, async_trait};

    impl NotifyingJobs {
        fn after<T>(&self, r: Result<T, JobQueueError>) -> Result<T, JobQueueError> {
            if r.is_ok() {
                self.0.jobs_changed();
            }
            r
        }
    }

    #[async_trait]
    impl JobQueue for NotifyingJobs {
        async fn enqueue(&self, job: NewJob, cap: QueueCap) -> Result<Enqueued, JobQueueError> {
            let r = self.0.enqueue(job, cap).await;
            self.after(r)
        }

        async fn publish(
            &self,
            app: AppId,
            events: Vec<Event>,
            lease_ms: u32,
            cap: QueueCap,
        ) -> Result<u64, JobQueueError> {
            let r = self.0.publish(app, events, lease_ms, cap).await;
            if matches!(r, Ok(n) if n > 0) {
                self.0.jobs_changed();
            }
            r
        }

        async fn claim(&self, limit: usize, per_app: usize) -> Result<Vec<Job>, JobQueueError> {
            self.0.claim(limit, per_app).await
        }

        async fn complete(&self, batch: Vec<Completion>) -> Result<Vec<bool>, JobQueueError> {
            // A failed attempt is retried later, and events queue jobs.
            let follow_up = batch
                .iter()
                .any(|c| !c.record.succeeded || !c.events.is_empty());
            let r = self.0.complete(batch).await;
            if follow_up && r.is_ok() {
                self.0.jobs_changed();
            }
            r
        }

        async fn reclaim_expired(&self) -> Result<u64, JobQueueError> {
            self.0.reclaim_expired().await
        }

        async fn next_due(&self) -> Result<Option<DateTime<Utc>>, JobQueueError> {
            self.0.next_due().await
        }

        async fn get(&self, app: AppId, id: JobId) -> Result<Option<Job>, JobQueueError> {
            self.0.get(app, id).await
        }

        async fn list(&self, app: AppId, filter: JobFilter) -> Result<Vec<Job>, JobQueueError> {
            self.0.list(app, filter).await
        }

        async fn retry(&self, app: AppId, id: JobId) -> Result<Job, JobQueueError> {
            let r = self.0.retry(app, id).await;
            self.after(r)
        }

        async fn cancel(&self, app: AppId, id: JobId) -> Result<Job, JobQueueError> {
            self.0.cancel(app, id).await
        }

        async fn delete(&self, app: AppId, id: JobId) -> Result<bool, JobQueueError> {
            self.0.delete(app, id).await
        }

        async fn usage(&self, app: AppId) -> Result<QueueUsage, JobQueueError> {
            self.0.usage(app).await
        }

        async fn totals(&self) -> Result<QueueUsage, JobQueueError> {
            self.0.totals().await
        }

        async fn prune(&self) -> Result<u64, JobQueueError> {
            self.0.prune().await
        }
    }
}
