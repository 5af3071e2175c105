//! [`RunHost`]: the [`ScriptHost`] of one run of an app's script: its
//! environment (opened by the [`EnvService`](crate::env::EnvService)), its
//! KV state through the [`KvStore`] port, and outbound HTTP through the
//! instance's [`OutboundHttp`], if it has one.
//!
//! The executor calls `kv` and `http` on a pool worker thread; they block
//! that thread on the async store or client (`Handle::block_on`), bounded
//! by the run's deadline.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use crate::domain::{KvQuota, KvUsage};
use crate::env::RunEnv;
use crate::executor::{HostError, HttpCall, HttpReply, KvCall, KvReply, ScriptHost};
use crate::ids::AppId;
use crate::ports::{KvError, KvStore};

/// Outbound HTTP for scripts: the instance's egress policy and client
/// (`picloud_core::egress::Egress` with feature `egress`). Refusals and
/// failures are [`HostError::Failed`] with a message for the script; the
/// deadline passing is [`HostError::Timeout`].
#[async_trait]
pub trait OutboundHttp: Send + Sync {
    /// Sends `call` for the app `app`, done by `deadline`, to a host of
    /// `hosts` if the app has such an allowlist.
    async fn send(
        &self,
        app: AppId,
        hosts: Option<&[String]>,
        call: HttpCall,
        deadline: tokio::time::Instant,
    ) -> Result<HttpReply, HostError>;
}

/// Scripts' KV calls in flight at once on a node, all apps together: each
/// holds a store connection (on PostgreSQL, while it waits for its app's
/// lock), and the store's pool (10 connections by default) also serves
/// authentication, the admin API and the invocation log. A call waits for
/// a permit within its run's deadline.
pub const KV_CALLS_AT_ONCE: usize = 5;

/// The host of one run.
pub struct RunHost {
    pub(crate) app: AppId,
    pub(crate) quota: KvQuota,
    pub(crate) kv: Arc<dyn KvStore>,
    pub(crate) env: Arc<RunEnv>,
    pub(crate) outbound: Option<Arc<dyn OutboundHttp>>,
    /// The app's allowlist of outbound hosts, if it has one.
    pub(crate) hosts: Option<Arc<[String]>>,
    pub(crate) handle: tokio::runtime::Handle,
    /// The node's permits for scripts' KV calls (see [`KV_CALLS_AT_ONCE`]).
    pub(crate) kv_calls: Arc<tokio::sync::Semaphore>,
    /// Set when a KV write changed the app's keys (the sweeper may need to
    /// wake for a new TTL).
    pub(crate) on_ttl: Option<Arc<tokio::sync::Notify>>,
}

impl std::fmt::Debug for RunHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunHost")
            .field("app", &self.app)
            .finish_non_exhaustive()
    }
}

fn kv_message(e: KvError) -> HostError {
    match e {
        KvError::QuotaExceeded(KvUsage { keys, bytes }) => HostError::Failed(format!(
            "the app's KV quota is full ({keys} keys, {bytes} bytes held; see kv_max_keys and kv_max_bytes in its limits)"
        )),
        KvError::NotAnInteger => HostError::Failed("the value is not an integer".into()),
        KvError::Overflow => HostError::Failed("the value would overflow".into()),
        KvError::AppNotFound => HostError::Failed("the app no longer exists".into()),
        other => {
            tracing::warn!(error = %other, "a script's KV call failed");
            HostError::Failed("the KV store failed (the cause is in the server's log)".into())
        }
    }
}

impl RunHost {
    fn block_on<T>(
        &self,
        deadline: Instant,
        work: impl std::future::Future<Output = Result<T, HostError>>,
    ) -> Result<T, HostError> {
        let deadline = tokio::time::Instant::from_std(deadline);
        self.handle.block_on(async move {
            match tokio::time::timeout_at(deadline, work).await {
                Ok(done) => done,
                Err(_) => Err(HostError::Timeout),
            }
        })
    }
}

impl ScriptHost for RunHost {
    fn env(&self) -> rhai::Map {
        self.env.map.clone()
    }

    fn kv(&self, call: KvCall, deadline: Instant) -> Result<KvReply, HostError> {
        let (kv, app, quota) = (&self.kv, self.app, self.quota);
        let ttl =
            matches!(&call, KvCall::Set(w) | KvCall::Cas { write: w, .. } if w.ttl_secs.is_some());
        let permits = Arc::clone(&self.kv_calls);
        let reply = self.block_on(deadline, async move {
            let _permit = permits
                .acquire_owned()
                .await
                .map_err(|_| HostError::Failed("the server is shutting down".into()))?;
            let reply = match call {
                KvCall::Get { key } => {
                    KvReply::Entry(kv.kv_get(app, &key).await.map_err(kv_message)?)
                }
                KvCall::Set(write) => KvReply::Entry(Some(
                    kv.kv_set(app, write, quota).await.map_err(kv_message)?,
                )),
                KvCall::Cas { expected, write } => {
                    match kv
                        .kv_cas(app, expected, write, quota)
                        .await
                        .map_err(kv_message)?
                    {
                        Some(entry) => KvReply::Entry(Some(entry)),
                        None => KvReply::Moved,
                    }
                }
                KvCall::Incr { key, by } => {
                    KvReply::Int(kv.kv_incr(app, &key, by, quota).await.map_err(kv_message)?)
                }
                KvCall::Delete { key } => {
                    KvReply::Deleted(kv.kv_delete(app, &key).await.map_err(kv_message)?)
                }
                KvCall::List {
                    prefix,
                    cursor,
                    limit,
                } => KvReply::Page(
                    kv.kv_list(app, &prefix, cursor, limit)
                        .await
                        .map_err(kv_message)?,
                ),
            };
            Ok(reply)
        })?;
        if ttl && let Some(signal) = &self.on_ttl {
            signal.notify_one();
        }
        Ok(reply)
    }

    fn http(&self, call: HttpCall, deadline: Instant) -> Result<HttpReply, HostError> {
        let Some(outbound) = &self.outbound else {
            return Err(HostError::Failed(
                "outbound HTTP is not enabled on this server".into(),
            ));
        };
        let app = self.app;
        let at = tokio::time::Instant::from_std(deadline);
        let hosts = self.hosts.as_deref();
        self.block_on(deadline, outbound.send(app, hosts, call, at))
    }
}

/// Outbound HTTP through the instance's [`Egress`](crate::egress::Egress)
/// (its address rule, `PICLOUD_EGRESS_ALLOW`, its resolver), for every
/// app alike.
#[cfg(feature = "egress")]
#[async_trait]
impl OutboundHttp for crate::egress::Egress {
    async fn send(
        &self,
        _app: AppId,
        hosts: Option<&[String]>,
        call: HttpCall,
        deadline: tokio::time::Instant,
    ) -> Result<HttpReply, HostError> {
        use crate::egress::{EgressError, OutboundRequest};
        let request = OutboundRequest {
            method: call.method,
            url: call.url,
            headers: call.headers,
            body: call.body,
            max_response_bytes: Some(call.max_body_bytes),
        };
        match crate::egress::Egress::send(self, request, deadline, hosts).await {
            Ok(response) => Ok(HttpReply {
                status: response.status,
                headers: response.headers.into_iter().collect(),
                body: response.body,
                truncated: response.truncated,
            }),
            Err(EgressError::Timeout) => Err(HostError::Timeout),
            Err(e) => Err(HostError::Failed(e.to_string())),
        }
    }
}
