//! The script executor: compile a Rhai script once, then run it per HTTP
//! request in a sandbox, with limits, on a bounded and fair worker pool.
//!
//! This is the engine behind "upload a Rhai script, get an HTTP endpoint".
//! It knows nothing of HTTP or storage: the transport turns a request into a
//! [`ScriptRequest`] and a [`ScriptResponse`] back into a response, maps an
//! [`ExecError`] to a status with [`ExecError::kind`], and the script store
//! keeps [`CompiledScript`]s (compiled once per uploaded version).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use picloud_core::executor::{
//!     ExecutorConfig, Limits, RhaiExecutor, ScriptRequest, compile,
//! };
//!
//! let executor = RhaiExecutor::new(ExecutorConfig::default())?;
//! let limits = Limits::default();
//! // At upload: a syntax error here is a 422 with line and column.
//! let script = compile(r#"#{ hello: request.query.name ?? "world" }"#, &limits)?;
//! // Per request:
//! let request = ScriptRequest { method: "GET".into(), path: "/".into(), ..Default::default() };
//! let invocation = executor.execute("my-app", &script, request, &limits).await?;
//! let response = invocation.outcome?; // 200 application/json {"hello":"world"}
//! # let _ = response; Ok(()) }
//! ```
//!
//! - [`limits`]: [`Limits`] and [`LimitKind`].
//! - [`sandbox`]: the engine configuration, [`compile`], and [`Sandbox`] for
//!   running synchronously on the current thread.
//! - [`inline`]: the fast path, runs attempted inline under an
//!   [`InlineBudget`] before they move to the pool.
//! - [`pool`]: [`RhaiExecutor`], the worker pool, and its fairness rules.
//! - [`request`]: [`ScriptRequest`] and [`ScriptResponse`], and the output rules.
//! - [`error`]: [`CompileError`], [`ExecError`], and the suggested statuses.
//! - `meter` (feature `meter`): counting every byte a run allocates.
//! - [`values`]: printing and comparing script data without deep native
//!   recursion.
//! - `webhooks`: the `crypto`, `base64` and `hex` modules, `uuid()` and
//!   `random_bytes(n)`, pure helpers for checking webhook signatures and
//!   calling APIs.

mod bounded;
pub mod error;
pub mod host;
pub mod inline;
pub mod lazy;
#[cfg(feature = "meter")]
#[cfg_attr(docsrs, doc(cfg(feature = "meter")))]
pub mod meter;
pub mod pool;
pub mod request;
pub mod sandbox;
pub mod values;
mod webhooks;

use std::time::Duration;

use async_trait::async_trait;

/// The rhai version the executor is built on, for code that needs the
/// engine's own types (a [`CompiledScript::ast`], a comparison engine).
pub use rhai;

/// The limits are plain data, outside this feature: see [`crate::limits`].
pub use crate::limits::{self, LimitKind, Limits, LimitsError};
pub use error::{CompileError, ExecError, ExecErrorKind};
pub use host::{HostError, HttpCall, HttpReply, KvCall, KvReply, ScriptHost};
pub use inline::InlineBudget;
pub use lazy::LazyExecutor;
pub use pool::{ExecutorConfig, ExecutorStats, RhaiExecutor};
pub use request::{ScriptRequest, ScriptResponse};
pub use sandbox::{
    CompileBudget, CompiledScript, DEFAULT_COMPILE_BUDGET, Sandbox, compile, compile_with,
};

/// One run of a script: what it answered, what it logged, how long it took.
///
/// The outcome is inside, not the `Err` of [`Executor::execute`], so that the
/// logs of a failed run (often the most useful ones) are kept too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The response, or why there is none: [`ExecError::Runtime`] or
    /// [`ExecError::LimitExceeded`].
    pub outcome: Result<ScriptResponse, ExecError>,
    /// `print` lines and `debug` lines (the latter prefixed with
    /// `[debug line N]`), at most [`Limits::max_output_bytes`] in total.
    pub logs: Vec<String>,
    /// Whether output was dropped; the last log line then says so.
    pub truncated_logs: bool,
    /// Time spent running (request conversion, script, response
    /// conversion), not waiting in the queue.
    pub duration: Duration,
    /// The events the run emitted (`emit(topic, payload)`), in order, at
    /// most [`MAX_EMITS_PER_RUN`](crate::domain::MAX_EMITS_PER_RUN). They
    /// take effect only if the run succeeds: the caller writes them then.
    pub emitted: Vec<crate::domain::Event>,
}

/// Runs compiled scripts. [`RhaiExecutor`] is the implementation; the
/// transport holds an `Arc<dyn Executor>` so tests can substitute a mock
/// (`MockExecutor`, feature `mock`).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Executor: Send + Sync {
    /// Runs `script` for `tenant` (the unit of fairness: an app id or slug).
    ///
    /// `Err` means the script did not run: [`ExecError::Overloaded`] (queue
    /// full; returned at once) or [`ExecError::Internal`]. A script's own
    /// failure is `Ok(invocation)` with `invocation.outcome` an `Err`.
    async fn execute(
        &self,
        tenant: &str,
        script: &CompiledScript,
        request: ScriptRequest,
        limits: &Limits,
    ) -> Result<Invocation, ExecError>;

    /// [`execute`](Self::execute) with `host` for the script's `env`,
    /// `kv::…` and `http::…`. The default ignores the host (an executor
    /// without them: `env` is empty and the calls fail); [`RhaiExecutor`]
    /// hands it to the run.
    async fn execute_hosted(
        &self,
        tenant: &str,
        script: &CompiledScript,
        request: ScriptRequest,
        limits: &Limits,
        host: std::sync::Arc<dyn ScriptHost>,
    ) -> Result<Invocation, ExecError> {
        let _ = host;
        self.execute(tenant, script, request, limits).await
    }

    /// The executor's load and which paths its runs took, when it keeps
    /// such counts ([`RhaiExecutor`] does).
    fn stats(&self) -> Option<ExecutorStats> {
        None
    }
}
