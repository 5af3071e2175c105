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
    /// The error's 1-based line in the script, when known.
    pub line: Option<u32>,
    /// The error's 1-based column in the script, when known.
    pub column: Option<u32>,
    /// What started the run, and for which request.
    pub context: InvocationContext,
}

impl InvocationRecord {
    /// The bytes this record holds for retention: its log lines, its error
    /// text and its context's text (UTF-8). The invocation log's byte
    /// bounds count these.
    pub fn log_bytes(&self) -> usize {
        self.logs.iter().map(String::len).sum::<usize>()
            + self.error.as_ref().map_or(0, String::len)
            + self.context.text_bytes()
    }
}

/// What started a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Trigger {
    /// An HTTP request to the script's endpoint (`/run/{app}/{script}`).
    #[default]
    Http,
    /// An attempt of an async job (`/async/{app}/{script}`).
    Async,
    /// An attempt of a schedule's tick.
    Cron,
    /// An attempt of an event's job.
    Event,
}

impl Trigger {
    /// `http`, `async`, `cron` or `event`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Async => "async",
            Self::Cron => "cron",
            Self::Event => "event",
        }
    }

    /// The trigger named `s` (as [`as_str`](Self::as_str) writes it).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "http" => Some(Self::Http),
            "async" => Some(Self::Async),
            "cron" => Some(Self::Cron),
            "event" => Some(Self::Event),
            _ => None,
        }
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a run was started: the trigger, and for an HTTP request its id,
/// method, path (after the script's name) and query, so that a record can
/// be found from the `x-request-id` a caller saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationContext {
    /// The request's id: the inbound `x-request-id` when there was one, else
    /// a generated one (the response's `x-request-id`), at most
    /// [`REQUEST_ID_MAX_BYTES`](Self::REQUEST_ID_MAX_BYTES). Empty when
    /// there is none.
    pub request_id: String,
    /// What started the run.
    pub trigger: Trigger,
    /// The HTTP method, for an HTTP trigger.
    pub method: Option<String>,
    /// The path the script saw (`request.path`), for an HTTP trigger.
    pub path: Option<String>,
    /// The raw query string (without `?`), when the request had one.
    pub query: Option<String>,
}

impl InvocationContext {
    /// The longest request id kept; a longer inbound one is cut (at a
    /// character boundary).
    pub const REQUEST_ID_MAX_BYTES: usize = 128;

    /// An HTTP request's context; `request_id` is cut to
    /// [`REQUEST_ID_MAX_BYTES`](Self::REQUEST_ID_MAX_BYTES).
    pub fn http(request_id: &str, method: &str, path: &str, query: Option<&str>) -> Self {
        let cut = request_id.floor_char_boundary(Self::REQUEST_ID_MAX_BYTES);
        Self {
            request_id: request_id[..cut].to_owned(),
            trigger: Trigger::Http,
            method: Some(method.to_owned()),
            path: Some(path.to_owned()),
            query: query.filter(|q| !q.is_empty()).map(str::to_owned),
        }
    }

    /// The bytes of text this context holds.
    pub fn text_bytes(&self) -> usize {
        self.request_id.len()
            + [&self.method, &self.path, &self.query]
                .iter()
                .map(|t| t.as_ref().map_or(0, String::len))
                .sum::<usize>()
    }
}
