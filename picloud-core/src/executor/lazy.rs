//! [`LazyExecutor`]: a [`RhaiExecutor`] whose worker threads start on the
//! first run, not when the services are built.
//!
//! An embedder who mounts only the admin API (or a test that never runs a
//! script) then pays for no thread at all.

use std::sync::OnceLock;

use async_trait::async_trait;

use super::{
    CompiledScript, ExecError, Executor, ExecutorConfig, ExecutorStats, Invocation, Limits,
    RhaiExecutor, ScriptRequest,
};

/// A [`RhaiExecutor`] built on first use. If its threads cannot be spawned
/// then, that run (and each later one, which tries again) is an
/// [`ExecError::Internal`], never a panic.
pub struct LazyExecutor {
    config: ExecutorConfig,
    executor: OnceLock<RhaiExecutor>,
}

impl LazyExecutor {
    /// An executor that will be built with `config` on its first run.
    pub fn new(config: ExecutorConfig) -> Self {
        Self {
            config,
            executor: OnceLock::new(),
        }
    }

    /// Whether the worker threads have been started.
    pub fn is_started(&self) -> bool {
        self.executor.get().is_some()
    }

    fn get(&self) -> Result<&RhaiExecutor, ExecError> {
        if let Some(executor) = self.executor.get() {
            return Ok(executor);
        }
        // Two first runs at once may both build one; the loser's threads
        // stop when it is dropped.
        let built = RhaiExecutor::new(self.config.clone())
            .map_err(|e| ExecError::Internal(format!("cannot start the script executor: {e}")))?;
        Ok(self.executor.get_or_init(|| built))
    }
}

impl std::fmt::Debug for LazyExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyExecutor")
            .field("started", &self.is_started())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Executor for LazyExecutor {
    async fn execute(
        &self,
        tenant: &str,
        script: &CompiledScript,
        request: ScriptRequest,
        limits: &Limits,
    ) -> Result<Invocation, ExecError> {
        self.get()?.execute(tenant, script, request, limits).await
    }

    async fn execute_hosted(
        &self,
        tenant: &str,
        script: &CompiledScript,
        request: ScriptRequest,
        limits: &Limits,
        host: std::sync::Arc<dyn super::ScriptHost>,
    ) -> Result<Invocation, ExecError> {
        self.get()?
            .execute_hosted(tenant, script, request, limits, Some(host))
            .await
    }

    /// Zero counts until the first run.
    fn stats(&self) -> Option<ExecutorStats> {
        Some(
            self.executor
                .get()
                .map(RhaiExecutor::stats)
                .unwrap_or_default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn threads_start_on_the_first_run_only() {
        let lazy = LazyExecutor::new(ExecutorConfig::default());
        assert!(!lazy.is_started());
        assert_eq!(lazy.stats().unwrap().pool_runs, 0);
        let script = super::super::compile("40 + 2", &Limits::default()).unwrap();
        let run = lazy
            .execute("t", &script, ScriptRequest::default(), &Limits::default())
            .await
            .unwrap();
        assert!(lazy.is_started());
        assert_eq!(run.outcome.unwrap().body, b"42".to_vec());
    }
}
