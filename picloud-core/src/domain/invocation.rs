//! Invocation records.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::ScriptId;

/// One invocation of a script, as the invocation log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationRecord {
    /// The script.
    pub script_id: ScriptId,
    /// The version that ran.
    pub version: u32,
    /// When it started.
    pub at: DateTime<Utc>,
    /// The HTTP status it answered with.
    pub status: u16,
    /// How long it took, in microseconds.
    pub duration_us: u64,
    /// What it printed (`print` and `debug`), bounded.
    pub logs: Vec<String>,
    /// The error, if it failed.
    pub error: Option<String>,
}

impl InvocationRecord {
    /// The bytes this record holds for retention: its log lines and its
    /// error text (UTF-8). The invocation log's byte bounds count these.
    pub fn log_bytes(&self) -> usize {
        self.logs.iter().map(String::len).sum::<usize>()
            + self.error.as_ref().map_or(0, String::len)
    }
}
