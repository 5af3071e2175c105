//! The invocation log port: recent invocations per script, with their logs.
//!
//! **Retention is bounded in records and in bytes.** A store keeps the newest
//! records of each script while they fit both bounds: at most
//! [`INVOCATIONS_KEPT`] records and [`INVOCATION_BYTES_PER_SCRIPT`] bytes per
//! script, and at most [`INVOCATION_BYTES_PER_APP`] bytes across all the
//! scripts of one app. "The newest while they fit" is a prefix: walking a
//! script's records from the newest, the first one that would overflow a
//! bound is dropped with every older one (no gaps), and likewise for the app,
//! walking all of its scripts' records from the newest. A record's bytes are
//! [`InvocationRecord::log_bytes`]: its log lines and its error text.
//!
//! **One record is capped** at [`INVOCATION_RECORD_MAX_BYTES`]: a larger one
//! is not dropped but cut down by [`fit_record`] (its error to a quarter of
//! the cap, then its log lines), and its log ends with a marker line saying
//! so. A store applies it to every record it is handed, so the bounds hold
//! for any caller; the background writer applies it before queueing, so a
//! script's 16 MiB of output never sits in memory for long.
//!
//! These bounds protect the instance from one tenant: an app that raised its
//! `max_output_bytes` to the maximum holds at most 32 MiB of logs, whatever
//! it prints, and reading a script's newest record never reads the others.
//! The hot path never waits on the log: writes arrive in batches from a
//! background writer (see `picloud_core::scripts::InvocationWriter`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::BoxError;
use crate::domain::InvocationRecord;
use crate::ids::{AppId, ScriptId};

/// How many invocations a store keeps per script, at most.
pub const INVOCATIONS_KEPT: usize = 100;

/// The most bytes (logs and error) one record keeps: 1 MiB. A larger record
/// is cut down to it by [`fit_record`], with a marker, never dropped.
pub const INVOCATION_RECORD_MAX_BYTES: usize = 1024 * 1024;

/// The most bytes of records a store keeps per script: 4 MiB (so at least
/// four records of the largest size).
pub const INVOCATION_BYTES_PER_SCRIPT: usize = 4 * 1024 * 1024;

/// The most bytes of records a store keeps per app, across its scripts:
/// 32 MiB.
pub const INVOCATION_BYTES_PER_APP: usize = 32 * 1024 * 1024;

/// What a cut error text ends with.
const ERROR_CUT: &str = " [error truncated]";

/// Cuts `record` down to at most `max_bytes` of [`log_bytes`]
/// (`max_bytes` ≥ 1 KiB), keeping what comes first: the error is cut to a
/// quarter of `max_bytes`, then the log lines are kept from the first while
/// they fit, the last one cut at a character boundary, and a final line says
/// how much the record held. Returns whether anything was cut.
///
/// [`log_bytes`]: InvocationRecord::log_bytes
pub fn fit_record(record: &mut InvocationRecord, max_bytes: usize) -> bool {
    let held = record.log_bytes();
    if held <= max_bytes {
        return false;
    }
    fit_holding(record, max_bytes, held);
    true
}

/// A copy of `record` cut as [`fit_record`] would cut it, copying only what
/// it keeps: a record of many MiB costs about `max_bytes` to copy.
pub fn fit_record_copy(record: &InvocationRecord, max_bytes: usize) -> InvocationRecord {
    let held = record.log_bytes();
    if held <= max_bytes {
        return record.clone();
    }
    // Enough of the error and the lines to fill `max_bytes` and then some
    // (so the cut below still happens where fit_record's would).
    let prefix = |text: &str, room: usize| text[..text.floor_char_boundary(room)].to_owned();
    let mut room = max_bytes + 1;
    let error = record.error.as_deref().map(|e| prefix(e, room));
    let mut logs = Vec::new();
    for line in &record.logs {
        if room == 0 {
            break;
        }
        let copied = prefix(line, room);
        room -= copied.len().min(room);
        logs.push(copied);
        if line.len() > logs.last().map_or(0, String::len) {
            break;
        }
    }
    let mut copy = InvocationRecord {
        logs,
        error,
        context: record.context.clone(),
        ..*record
    };
    fit_holding(&mut copy, max_bytes, held);
    copy
}

/// [`fit_record`]'s cut of a record that held `held` bytes.
fn fit_holding(record: &mut InvocationRecord, max_bytes: usize, held: usize) {
    let error_cap = max_bytes / 4;
    if let Some(error) = record.error.as_mut()
        && error.len() > error_cap
    {
        cut_at_char(error, error_cap.saturating_sub(ERROR_CUT.len()));
        error.push_str(ERROR_CUT);
    }
    if record.log_bytes() <= max_bytes {
        return;
    }
    let marker = format!(
        "[log truncated: this invocation logged {held} bytes; the invocation log keeps at most \
         {max_bytes} per record]"
    );
    let error_bytes = record.error.as_ref().map_or(0, String::len);
    let room = max_bytes
        .saturating_sub(error_bytes)
        .saturating_sub(record.context.text_bytes())
        .saturating_sub(marker.len());
    let mut used = 0;
    let mut kept = 0;
    for line in &mut record.logs {
        if used + line.len() <= room {
            used += line.len();
            kept += 1;
            continue;
        }
        cut_at_char(line, room - used);
        if !line.is_empty() {
            kept += 1;
        }
        break;
    }
    record.logs.truncate(kept);
    record.logs.push(marker);
}

/// Truncates `text` to at most `max` bytes, at a character boundary.
fn cut_at_char(text: &mut String, max: usize) {
    text.truncate(text.floor_char_boundary(max));
}

/// Which of an app's invocations [`InvocationRepository::query`] returns:
/// every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvocationFilter {
    /// Only this script's.
    pub script: Option<ScriptId>,
    /// Only those that answered this HTTP status.
    pub status: Option<u16>,
    /// Only those that started at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only those of this request id (exact).
    pub request_id: Option<String>,
    /// At most this many (the newest).
    pub limit: usize,
}

/// Errors of [`InvocationRepository`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvocationRepoError {
    /// The backend failed.
    #[error("invocation log backend error: {0}")]
    Backend(#[source] BoxError),
}

/// Keeps recent invocations.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait InvocationRepository: Send + Sync {
    /// Appends a batch of records, each first cut down by [`fit_record`] to
    /// [`INVOCATION_RECORD_MAX_BYTES`], then trims each touched script and
    /// app to the retention bounds (see the module documentation). Records
    /// of scripts that no longer exist are dropped. Callers keep batches
    /// small (the writer sends at most 8 MiB at once).
    async fn append(&self, records: Vec<InvocationRecord>) -> Result<(), InvocationRepoError>;

    /// The newest `limit` invocations of a script, newest first. Reads only
    /// those `limit` records, never the whole retained log.
    async fn recent(
        &self,
        script: ScriptId,
        limit: usize,
    ) -> Result<Vec<InvocationRecord>, InvocationRepoError>;

    /// The newest `filter.limit` invocations of the app's scripts that
    /// match `filter`, newest first (by start time; among equal times, the
    /// later arrival first), across its scripts.
    async fn query(
        &self,
        app: AppId,
        filter: &InvocationFilter,
    ) -> Result<Vec<InvocationRecord>, InvocationRepoError>;

    /// The records of the app's scripts that the node `node` wrote after
    /// its record at `after` (positions grow in the order one node writes),
    /// oldest first, at most `limit`, each with its position and its
    /// script's name: how a live tail on one node of a cluster shows the
    /// runs of the others. A store that serves a single node has none to
    /// give (the default).
    async fn written_by(
        &self,
        app: AppId,
        node: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<WrittenRecord>, InvocationRepoError> {
        let _ = (app, node, after, limit);
        Ok(Vec::new())
    }
}

/// A record as [`InvocationRepository::written_by`] gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenRecord {
    /// Its position among the records its node wrote.
    pub position: i64,
    /// Its script's name.
    pub script: String,
    /// The record.
    pub record: InvocationRecord,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(logs: Vec<String>, error: Option<String>) -> InvocationRecord {
        InvocationRecord {
            script_id: ScriptId::new(),
            version: 1,
            at: chrono::DateTime::from_timestamp_micros(0).expect("a valid time"),
            status: 200,
            duration_us: 1,
            logs,
            error,
            line: None,
            column: None,
            context: Default::default(),
        }
    }

    #[test]
    fn the_copy_is_cut_exactly_as_the_record_would_be() {
        let cap = 64 * 1024;
        let cases = [
            record(vec!["a".repeat(1000)], None),
            record(vec!["é".repeat(10_000); 10], Some("ü".repeat(cap))),
            record(vec!["x".repeat(16 << 20)], None),
            record(
                vec!["b".repeat(cap - 10), "c".repeat(100)],
                Some("e".repeat(3)),
            ),
            record(vec!["ab".repeat(cap / 2); 3], Some("z".repeat(cap * 3))),
            record(vec![String::new(); 5000], None),
        ];
        for r in cases {
            let mut cut = r.clone();
            fit_record(&mut cut, cap);
            assert_eq!(fit_record_copy(&r, cap), cut);
        }
    }

    #[test]
    fn a_record_within_the_cap_is_left_alone() {
        let mut r = record(vec!["a".repeat(1000)], Some("e".repeat(20)));
        let before = r.clone();
        assert!(!fit_record(&mut r, 1020));
        assert_eq!(r, before);
    }

    #[test]
    fn a_large_record_is_cut_to_the_cap_with_a_marker() {
        let cap = 64 * 1024;
        // Multi-byte characters, so that cuts must find char boundaries.
        let line = "é".repeat(10_000);
        let mut r = record(vec![line.clone(); 10], Some("ü".repeat(cap)));
        assert!(fit_record(&mut r, cap));
        assert!(r.log_bytes() <= cap, "{} > {cap}", r.log_bytes());
        let error = r.error.as_deref().unwrap();
        assert!(error.len() <= cap / 4 && error.ends_with(ERROR_CUT));
        assert_eq!(r.logs[0], line, "the first lines are kept whole");
        let marker = r.logs.last().unwrap();
        assert!(marker.starts_with("[log truncated"), "{marker}");
        assert!(r.logs.len() < 11);
    }

    #[test]
    fn a_huge_error_alone_is_cut_without_touching_the_logs() {
        let mut r = record(vec!["hi".into()], Some("x".repeat(10_000)));
        assert!(fit_record(&mut r, 4096));
        assert_eq!(r.logs, ["hi"]);
        assert!(r.log_bytes() <= 4096);
    }
}
