//! The invocation log port: recent invocations per script, with their logs.
//!
//! Retention is bounded per script: a store keeps at least the newest
//! [`INVOCATIONS_KEPT`] records of each script and may drop older ones. The
//! hot path never waits on it: writes arrive in batches from a background
//! writer (see `picloud_core::scripts::InvocationWriter`).

use async_trait::async_trait;

use super::BoxError;
use crate::domain::InvocationRecord;
use crate::ids::ScriptId;

/// How many invocations a store keeps per script.
pub const INVOCATIONS_KEPT: usize = 100;

/// Errors of [`InvocationLog`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvocationLogError {
    /// The backend failed.
    #[error("invocation log backend error: {0}")]
    Backend(#[source] BoxError),
}

/// Keeps recent invocations.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait InvocationLog: Send + Sync {
    /// Appends a batch of records, then trims each script to
    /// [`INVOCATIONS_KEPT`]. Records of scripts that no longer exist are dropped.
    async fn append(&self, records: Vec<InvocationRecord>) -> Result<(), InvocationLogError>;

    /// The newest `limit` invocations of a script, newest first.
    async fn recent(
        &self,
        script: ScriptId,
        limit: usize,
    ) -> Result<Vec<InvocationRecord>, InvocationLogError>;
}
