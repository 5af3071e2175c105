//! [`InvocationRepository`] for [`MemoryStore`]: the recent invocations of each
//! script, oldest first.
//!
//! Records are kept in start-time order (they are stamped when they start
//! but arrive when they finish), ties broken by arrival, so retention always
//! drops the oldest: each append trims the scripts it touched to
//! [`INVOCATIONS_KEPT`] records and [`INVOCATION_BYTES_PER_SCRIPT`] bytes,
//! then their apps to [`INVOCATION_BYTES_PER_APP`] bytes.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use picloud_core::domain::InvocationRecord;
use picloud_core::ids::{AppId, ScriptId};
use picloud_core::ports::{
    INVOCATION_BYTES_PER_APP, INVOCATION_BYTES_PER_SCRIPT, INVOCATION_RECORD_MAX_BYTES,
    INVOCATIONS_KEPT, InvocationFilter, InvocationRepoError, InvocationRepository, fit_record,
};

use crate::{MemoryStore, State};

/// An invocation record as the log keeps it.
#[derive(Debug, Clone)]
pub(crate) struct KeptRecord {
    /// Its arrival number.
    seq: u64,
    /// Its [`InvocationRecord::log_bytes`].
    bytes: usize,
    record: InvocationRecord,
}

impl KeptRecord {
    /// Its place in "newest first" order: start time, then arrival.
    fn key(&self) -> (i64, u64) {
        (self.record.at.timestamp_micros(), self.seq)
    }
}

impl State {
    /// Drops the oldest records of `script` beyond its bounds: it keeps the
    /// newest while they fit [`INVOCATIONS_KEPT`] and
    /// [`INVOCATION_BYTES_PER_SCRIPT`].
    fn trim_script(&mut self, script: ScriptId) {
        let Some(log) = self.invocations.get_mut(&script) else {
            return;
        };
        let (mut kept, mut bytes) = (0, 0);
        for r in log.iter().rev() {
            if kept == INVOCATIONS_KEPT || bytes + r.bytes > INVOCATION_BYTES_PER_SCRIPT {
                break;
            }
            kept += 1;
            bytes += r.bytes;
        }
        let dropped = log.len() - kept;
        log.drain(..dropped);
    }

    /// Drops the app's oldest records beyond [`INVOCATION_BYTES_PER_APP`]:
    /// walking all its scripts' records from the newest, the first that
    /// overflows goes, with every older one.
    fn trim_app(&mut self, app: AppId) {
        let scripts: Vec<ScriptId> = self.app_scripts(app).map(|st| st.script.id).collect();
        let mut all: Vec<((i64, u64), usize)> = scripts
            .iter()
            .filter_map(|id| self.invocations.get(id))
            .flatten()
            .map(|r| (r.key(), r.bytes))
            .collect();
        if all.iter().map(|r| r.1).sum::<usize>() <= INVOCATION_BYTES_PER_APP {
            return;
        }
        all.sort_unstable_by(|a, b| b.cmp(a));
        let mut bytes = 0;
        let Some(&(first_dropped, _)) = all.iter().find(|r| {
            bytes += r.1;
            bytes > INVOCATION_BYTES_PER_APP
        }) else {
            return;
        };
        for id in scripts {
            if let Some(log) = self.invocations.get_mut(&id) {
                while log.front().is_some_and(|r| r.key() <= first_dropped) {
                    log.pop_front();
                }
            }
        }
    }
}

#[async_trait]
impl InvocationRepository for MemoryStore {
    async fn append(&self, records: Vec<InvocationRecord>) -> Result<(), InvocationRepoError> {
        let mut s = self.write();
        let app_of: HashMap<ScriptId, AppId> = s
            .scripts
            .values()
            .map(|st| (st.script.id, st.script.app_id))
            .collect();
        let mut scripts = BTreeSet::new();
        let mut apps = BTreeSet::new();
        for mut record in records {
            let Some(&app) = app_of.get(&record.script_id) else {
                continue;
            };
            fit_record(&mut record, INVOCATION_RECORD_MAX_BYTES);
            let kept = KeptRecord {
                seq: s.next_record,
                bytes: record.log_bytes(),
                record,
            };
            s.next_record += 1;
            scripts.insert(kept.record.script_id);
            apps.insert(app);
            let log = s.invocations.entry(kept.record.script_id).or_default();
            // Kept in `at` order (records are stamped when they start but
            // arrive when they finish), so retention drops the oldest.
            let at = log.partition_point(|x| x.record.at <= kept.record.at);
            log.insert(at, kept);
        }
        for script in scripts {
            s.trim_script(script);
        }
        for app in apps {
            s.trim_app(app);
        }
        Ok(())
    }

    async fn recent(
        &self,
        script: ScriptId,
        limit: usize,
    ) -> Result<Vec<InvocationRecord>, InvocationRepoError> {
        // Newest first; among equal times, the later arrival first. Only
        // the `limit` records asked for are cloned.
        Ok(self
            .read()
            .invocations
            .get(&script)
            .map(|log| {
                log.iter()
                    .rev()
                    .take(limit)
                    .map(|r| r.record.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn query(
        &self,
        app: AppId,
        filter: &InvocationFilter,
    ) -> Result<Vec<InvocationRecord>, InvocationRepoError> {
        let s = self.read();
        let mut found: Vec<&KeptRecord> = s
            .scripts
            .iter()
            .filter(|((owner, _), st)| {
                *owner == app && filter.script.is_none_or(|id| id == st.script.id)
            })
            .filter_map(|(_, st)| s.invocations.get(&st.script.id))
            .flatten()
            .filter(|kept| {
                let r = &kept.record;
                filter.status.is_none_or(|status| r.status == status)
                    && filter.since.is_none_or(|since| r.at >= since)
                    && filter
                        .request_id
                        .as_ref()
                        .is_none_or(|id| r.context.request_id == *id)
            })
            .collect();
        found.sort_by_key(|k| std::cmp::Reverse((k.record.at, k.seq)));
        Ok(found
            .into_iter()
            .take(filter.limit)
            .map(|kept| kept.record.clone())
            .collect())
    }
}
