//! The invocation writer: invocation records written in the background, in
//! batches.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::domain::InvocationRecord;
use crate::ids::ScriptId;
use crate::ports::{
    INVOCATION_BYTES_PER_SCRIPT, INVOCATION_RECORD_MAX_BYTES, INVOCATIONS_KEPT,
    InvocationRepository, fit_record,
};
use crate::stores::Stores;

/// Writes invocation records in the background, in batches. The hot path
/// only enqueues (`try_send`); when the queue is full the record is dropped
/// and counted, never waited for.
///
/// **Bounded in bytes, too.** Each record is cut to
/// [`INVOCATION_RECORD_MAX_BYTES`] before it is queued (see
/// [`fit_record`]). Records larger than [`SMALL_RECORD`](Self::SMALL_RECORD)
/// share a budget of [`QUEUE_BYTES`](Self::QUEUE_BYTES) while queued or being
/// written, beyond which they are dropped (and counted): a flood of huge logs
/// cannot fill the memory, nor crowd out other apps' small records, which
/// are bounded by the count alone. Each append carries at most
/// [`APPEND_BYTES`](Self::APPEND_BYTES).
///
/// **A refused append loses only what the store refuses.** When an append
/// fails, the writer retries its records one script at a time (the smallest
/// groups first), then one record at a time within a group that still fails,
/// so one app's bad records never take another app's with them. It gives up
/// on a batch after [`RETRIES`](Self::RETRIES) extra appends, or after
/// [`RETRIES_IN_A_ROW`](Self::RETRIES_IN_A_ROW) failures in a row with no
/// success (the store is down, not choosy). What is lost is counted in
/// [`failed`](Self::failed).
#[derive(Debug, Clone)]
pub struct InvocationWriter {
    tx: mpsc::Sender<WriterMsg>,
    dropped: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    /// Bytes of large records queued or being written.
    large_bytes: Arc<AtomicUsize>,
}

/// What the writer task receives: a record (with the bytes it holds of the
/// large-record budget, 0 for a small one), or a request to confirm that
/// everything queued before it is in the store.
// Unboxed: a box would be one more allocation per run on the hot path, and
// the queue's 16 Ki slots of ~220 bytes are 3.5 MiB at most.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum WriterMsg {
    Record(InvocationRecord, usize),
    Flush(tokio::sync::oneshot::Sender<()>),
}

impl InvocationWriter {
    /// The most records queued at once.
    pub const QUEUE: usize = 16 * 1024;
    /// The most records taken from the queue for one round of appends.
    pub const BATCH: usize = 4096;
    /// The most bytes ([`InvocationRecord::log_bytes`]) of one append: 8 MiB.
    /// A round's records are split into appends of at most this size.
    pub const APPEND_BYTES: usize = 8 * 1024 * 1024;
    /// Records of at most this many bytes (4 KiB) are bounded by the queue's
    /// count alone.
    pub const SMALL_RECORD: usize = 4 * 1024;
    /// The most bytes of larger records queued or being written at once:
    /// 64 MiB.
    pub const QUEUE_BYTES: usize = 64 * 1024 * 1024;
    /// The most extra appends spent isolating the records a store refused,
    /// per failed append.
    pub const RETRIES: usize = 64;
    /// After this many failed retries in a row, none succeeding, the store
    /// is taken to be down and the rest of the failed append is given up.
    pub const RETRIES_IN_A_ROW: usize = 4;
    /// How long the writer lets records gather after a partial batch. A
    /// record becomes readable after the append in progress when it arrived
    /// (if any), this pause, and its own append; longer while more than
    /// [`BATCH`](Self::BATCH) records wait. [`flush`](Self::flush) skips
    /// the wait.
    pub const PAUSE: Duration = Duration::from_millis(20);

    /// Starts the writer task on the current tokio runtime.
    pub fn start(stores: &Stores) -> Self {
        let (tx, mut rx) = mpsc::channel::<WriterMsg>(Self::QUEUE);
        let log = Arc::clone(&stores.invocations);
        let failed = Arc::new(AtomicU64::new(0));
        let failed_count = Arc::clone(&failed);
        let large_bytes = Arc::new(AtomicUsize::new(0));
        let large_held = Arc::clone(&large_bytes);
        tokio::spawn(async move {
            let mut msgs = Vec::with_capacity(Self::BATCH);
            // Sleeps in `recv_many` while idle: no polling. Under load, it
            // pauses after each partial batch so that records pile up: the
            // hot path's `try_send` then wakes nobody, and the store sees a
            // few large batches a second instead of one per request.
            while rx.recv_many(&mut msgs, Self::BATCH).await > 0 {
                let full = msgs.len() == Self::BATCH;
                let mut batch = Vec::with_capacity(msgs.len());
                let mut waiters = Vec::new();
                let mut held = 0;
                for msg in msgs.drain(..) {
                    match msg {
                        WriterMsg::Record(r, bytes) => {
                            held += bytes;
                            batch.push(r);
                        }
                        WriterMsg::Flush(done) => waiters.push(done),
                    }
                }
                // The store keeps only the newest records of each script
                // that fit its bounds: the older ones of a large batch would
                // be trimmed at once, so they are not written at all.
                keep_newest_per_script(&mut batch, INVOCATIONS_KEPT, INVOCATION_BYTES_PER_SCRIPT);
                for chunk in split_by_bytes(batch, Self::APPEND_BYTES) {
                    let lost = append_isolating(log.as_ref(), chunk).await;
                    failed_count.fetch_add(lost, Ordering::Relaxed);
                }
                large_held.fetch_sub(held, Ordering::Relaxed);
                let flushed = !waiters.is_empty();
                for done in waiters {
                    let _ = done.send(());
                }
                if !full && !flushed {
                    tokio::time::sleep(Self::PAUSE).await;
                }
            }
        });
        Self {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            failed,
            large_bytes,
        }
    }

    /// Queues a record, cut to [`INVOCATION_RECORD_MAX_BYTES`] first; drops
    /// it if the queue is full, or if it is large and the large records'
    /// byte budget is spent.
    pub fn record(&self, mut record: InvocationRecord) {
        fit_record(&mut record, INVOCATION_RECORD_MAX_BYTES);
        let bytes = record.log_bytes();
        let held = if bytes > Self::SMALL_RECORD { bytes } else { 0 };
        if held > 0 {
            let before = self.large_bytes.fetch_add(held, Ordering::Relaxed);
            if before + held > Self::QUEUE_BYTES {
                self.large_bytes.fetch_sub(held, Ordering::Relaxed);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        if self.tx.try_send(WriterMsg::Record(record, held)).is_err() {
            self.large_bytes.fetch_sub(held, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many records were dropped because the queue was full (or, for
    /// large records, its byte budget spent).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// How many records were lost because the store refused them, even one
    /// script or one record at a time (each failure is also reported on
    /// stderr).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Waits until every record queued before this call has been handed to
    /// the store: appended, or left out because retention would drop it at
    /// once (older than a script's newest kept records), or counted in
    /// [`failed`](Self::failed) if the store refused it. For graceful
    /// shutdown, and for tests that read the log right after an invocation.
    pub async fn flush(&self) {
        let (done, flushed) = tokio::sync::oneshot::channel();
        if self.tx.send(WriterMsg::Flush(done)).await.is_ok() {
            // An error here means the writer task is gone: nothing to wait for.
            let _ = flushed.await;
        }
    }
}

/// Keeps, of each script's records in `batch`, only the newest (by start
/// time, then arrival) while they fit `kept` records and `bytes` bytes, the
/// store's retention rule; in their original order.
fn keep_newest_per_script(batch: &mut Vec<InvocationRecord>, kept: usize, bytes: usize) {
    if batch.len() <= kept && batch.iter().map(InvocationRecord::log_bytes).sum::<usize>() <= bytes
    {
        return;
    }
    let mut newest_first: Vec<usize> = (0..batch.len()).collect();
    newest_first.sort_unstable_by(|&a, &b| batch[b].at.cmp(&batch[a].at).then(b.cmp(&a)));
    // Per script: records and bytes kept so far, and whether one overflowed
    // (then every older one goes too).
    let mut seen: HashMap<ScriptId, (usize, usize, bool)> = HashMap::new();
    let mut keep = vec![false; batch.len()];
    for i in newest_first {
        let (n, b, full) = seen.entry(batch[i].script_id).or_default();
        let size = batch[i].log_bytes();
        if !*full && *n < kept && *b + size <= bytes {
            *n += 1;
            *b += size;
            keep[i] = true;
        } else {
            *full = true;
        }
    }
    let mut flags = keep.into_iter();
    batch.retain(|_| flags.next().unwrap_or(false));
}

/// Splits `batch` into consecutive runs of at most `max_bytes` each (a
/// record larger than that is a run of its own).
fn split_by_bytes(batch: Vec<InvocationRecord>, max_bytes: usize) -> Vec<Vec<InvocationRecord>> {
    let mut runs = Vec::new();
    let mut run = Vec::new();
    let mut run_bytes = 0;
    for r in batch {
        let size = r.log_bytes();
        if !run.is_empty() && run_bytes + size > max_bytes {
            runs.push(std::mem::take(&mut run));
            run_bytes = 0;
        }
        run_bytes += size;
        run.push(r);
    }
    if !run.is_empty() {
        runs.push(run);
    }
    runs
}

/// Appends `records`; if the store refuses them, retries one script at a
/// time (smallest first), then one record at a time, within the budget of
/// [`InvocationWriter::RETRIES`]. Returns how many records were lost.
async fn append_isolating(log: &dyn InvocationRepository, records: Vec<InvocationRecord>) -> u64 {
    if records.is_empty() {
        return 0;
    }
    let total = records.len() as u64;
    let Err(e) = log.append(records.clone()).await else {
        return 0;
    };
    tracing::warn!(error = %e, "failed to write invocation records");
    if total == 1 {
        return 1;
    }
    let mut groups: Vec<Vec<InvocationRecord>> = Vec::new();
    let mut group_of: HashMap<ScriptId, usize> = HashMap::new();
    for r in records {
        let g = *group_of.entry(r.script_id).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(r);
    }
    groups.sort_by_cached_key(|g| g.iter().map(InvocationRecord::log_bytes).sum::<usize>());
    // Whole groups first; the records of groups that fail, one by one.
    let mut tries: Vec<Vec<InvocationRecord>> = Vec::new();
    let mut stored = 0u64;
    let mut retries = 0;
    let mut failed_in_a_row = 0;
    let mut any_success = false;
    let mut pending: std::collections::VecDeque<(Vec<InvocationRecord>, bool)> =
        groups.into_iter().map(|g| (g, true)).collect();
    while let Some((group, splittable)) = pending.pop_front() {
        let give_up = retries >= InvocationWriter::RETRIES
            || (!any_success && failed_in_a_row >= InvocationWriter::RETRIES_IN_A_ROW);
        if give_up {
            break;
        }
        retries += 1;
        let n = group.len() as u64;
        let copy = if splittable && n > 1 {
            Some(group.clone())
        } else {
            None
        };
        match log.append(group).await {
            Ok(()) => {
                stored += n;
                any_success = true;
                failed_in_a_row = 0;
            }
            Err(e) => {
                tracing::warn!(error = %e, "failed to write invocation records");
                failed_in_a_row += 1;
                if let Some(group) = copy {
                    tries.extend(group.into_iter().map(|r| vec![r]));
                }
            }
        }
        if pending.is_empty() {
            pending.extend(tries.drain(..).map(|r| (r, false)));
        }
    }
    total - stored
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::InvocationRepoError;

    fn record(script: ScriptId, at_us: i64, version: u32) -> InvocationRecord {
        InvocationRecord {
            script_id: script,
            version,
            at: chrono::DateTime::from_timestamp_micros(at_us).expect("a valid time"),
            status: 200,
            duration_us: 1,
            logs: Vec::new(),
            error: None,
            line: None,
            column: None,
            context: Default::default(),
        }
    }

    #[test]
    fn a_large_batch_keeps_the_newest_records_of_each_script() {
        let (busy, quiet) = (ScriptId::new(), ScriptId::new());
        // Arrival order is not start-time order (records arrive when their
        // run finishes): start times are a permutation of 0..300.
        let starts: Vec<i64> = (0..300).map(|i| (i * 7) % 300).collect();
        let mut batch: Vec<_> = starts
            .iter()
            .zip(0..)
            .map(|(&at, n)| record(busy, at, n))
            .collect();
        batch.extend((0..5).map(|n| record(quiet, 0, n)));
        // Two records of one start time: the later arrival is the newer.
        let tie_a = ScriptId::new();
        batch.push(record(tie_a, 5, 1));
        batch.push(record(tie_a, 5, 2));
        keep_newest_per_script(&mut batch, 100, usize::MAX);

        let busy_kept: Vec<&InvocationRecord> =
            batch.iter().filter(|r| r.script_id == busy).collect();
        assert_eq!(busy_kept.len(), 100);
        let min_kept = busy_kept.iter().map(|r| r.at.timestamp_micros()).min();
        assert_eq!(min_kept, Some(200), "exactly the 100 newest");
        let arrival: Vec<u32> = busy_kept.iter().map(|r| r.version).collect();
        assert!(arrival.is_sorted(), "the original order is kept");
        assert_eq!(batch.iter().filter(|r| r.script_id == quiet).count(), 5);
        assert_eq!(batch.iter().filter(|r| r.script_id == tie_a).count(), 2);

        let mut ties = vec![record(tie_a, 5, 1), record(tie_a, 5, 2)];
        keep_newest_per_script(&mut ties, 1, usize::MAX);
        assert_eq!(ties.len(), 1);
        assert_eq!(ties[0].version, 2, "the later arrival wins a tie");
    }

    fn with_logs(mut r: InvocationRecord, bytes: usize) -> InvocationRecord {
        r.logs = vec!["x".repeat(bytes)];
        r
    }

    #[test]
    fn the_pre_trim_keeps_the_newest_that_fit_the_byte_bound() {
        let (loud, quiet) = (ScriptId::new(), ScriptId::new());
        let mut batch: Vec<_> = (0..10)
            .map(|i| with_logs(record(loud, i, u32::try_from(i).unwrap()), 300))
            .collect();
        // An older small record after a newer one overflowed: still dropped
        // (the bound keeps a prefix, no gaps).
        batch.push(with_logs(record(loud, -1, 99), 1));
        batch.push(with_logs(record(quiet, 0, 0), 5000));
        keep_newest_per_script(&mut batch, 100, 1000);
        let kept: Vec<u32> = batch
            .iter()
            .filter(|r| r.script_id == loud)
            .map(|r| r.version)
            .collect();
        assert_eq!(kept, [7, 8, 9]);
        assert!(
            batch.iter().all(|r| r.script_id != quiet),
            "a record over the bound alone is not kept"
        );
    }

    #[test]
    fn batches_are_split_by_bytes() {
        let s = ScriptId::new();
        let batch: Vec<_> = (0..10).map(|i| with_logs(record(s, i, 1), 400)).collect();
        let runs = split_by_bytes(batch, 1000);
        let sizes: Vec<usize> = runs.iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 2, 2, 2, 2]);
        let big = vec![
            with_logs(record(s, 0, 1), 5000),
            with_logs(record(s, 1, 1), 1),
        ];
        assert_eq!(split_by_bytes(big, 1000).len(), 2);
    }

    /// A log that refuses every record whose first log line is "poison", and
    /// whole batches holding one, as a database refuses a statement.
    #[derive(Default)]
    struct Choosy {
        stored: std::sync::Mutex<Vec<InvocationRecord>>,
        down: bool,
        calls: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl InvocationRepository for Choosy {
        async fn append(&self, records: Vec<InvocationRecord>) -> Result<(), InvocationRepoError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if self.down
                || records
                    .iter()
                    .any(|r| r.logs.first().is_some_and(|l| l == "poison"))
            {
                return Err(InvocationRepoError::Backend("refused".into()));
            }
            self.stored.lock().unwrap().extend(records);
            Ok(())
        }

        async fn recent(
            &self,
            _: ScriptId,
            _: usize,
        ) -> Result<Vec<InvocationRecord>, InvocationRepoError> {
            Ok(Vec::new())
        }

        async fn query(
            &self,
            _: crate::ids::AppId,
            _: &crate::ports::InvocationFilter,
        ) -> Result<Vec<InvocationRecord>, InvocationRepoError> {
            Ok(Vec::new())
        }
    }

    #[tokio::test]
    async fn a_refused_append_loses_only_the_refused_records() {
        let (bad, good_a, good_b) = (ScriptId::new(), ScriptId::new(), ScriptId::new());
        let mut batch = Vec::new();
        for i in 0..5 {
            batch.push(record(good_a, i, 1));
            batch.push(record(bad, i, 1));
            batch.push(record(good_b, i, 1));
        }
        // The bad script's records are fine but one.
        batch[4].logs = vec!["poison".into()];
        let log = Choosy::default();
        let lost = append_isolating(&log, batch).await;
        assert_eq!(lost, 1, "only the poisoned record");
        let stored = log.stored.lock().unwrap();
        assert_eq!(stored.len(), 14);
        assert_eq!(stored.iter().filter(|r| r.script_id == good_a).count(), 5);
        assert_eq!(stored.iter().filter(|r| r.script_id == good_b).count(), 5);
    }

    #[tokio::test]
    async fn a_store_that_is_down_is_not_retried_for_ever() {
        let batch: Vec<_> = (0..500).map(|i| record(ScriptId::new(), i, 1)).collect();
        let log = Choosy {
            down: true,
            ..Choosy::default()
        };
        assert_eq!(append_isolating(&log, batch).await, 500);
        let calls = log.calls.load(Ordering::Relaxed);
        assert_eq!(calls, 1 + InvocationWriter::RETRIES_IN_A_ROW);
    }

    #[test]
    fn a_small_batch_is_left_alone() {
        let s = ScriptId::new();
        let mut batch: Vec<_> = (0..10)
            .map(|i| record(s, 10 - i, u32::try_from(i).unwrap()))
            .collect();
        let before = batch.clone();
        keep_newest_per_script(&mut batch, 100, usize::MAX);
        assert_eq!(batch, before);
    }
}
