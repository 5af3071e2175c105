//! Conformance cases of the invocations port,
//! [`InvocationRepository`](crate::ports::InvocationRepository).

use crate::domain::{InstanceRole, InvocationRecord};
use crate::ports::{
    INVOCATION_BYTES_PER_APP, INVOCATION_BYTES_PER_SCRIPT, INVOCATION_RECORD_MAX_BYTES,
    INVOCATIONS_KEPT, StorageQuota,
};
use crate::stores::Stores;
use crate::testkit::Fixture;

use super::{record, script_name};

/// The cases of this module, in order: `invocations => case, ...`, handed to
/// `$callback` after `$args`. `__conformance_ports!` calls it: the
/// conformance module re-exports exactly these functions, and
/// [`conformance_tests!`](crate::conformance_tests) runs exactly these.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_invocations_cases {
    ($($callback:ident)::+; $($args:tt)*) => {
        $($callback)::+! { $($args)* invocations =>
            invocations_keep_the_newest_within_the_byte_bounds,
            invocations_app_bound_spares_other_apps,
            invocations_recent_newest_first_and_bounded,
            invocations_of_unknown_scripts_are_dropped,
        }
    };
}

/// A record of `bytes` bytes of logs (one line of `fill`), `i` ms from `base`.
fn sized_record(
    script: crate::ids::ScriptId,
    base: chrono::DateTime<chrono::Utc>,
    i: i64,
    bytes: usize,
    fill: char,
) -> InvocationRecord {
    InvocationRecord {
        script_id: script,
        version: 1,
        at: base + chrono::Duration::milliseconds(i),
        status: 200,
        duration_us: 1,
        logs: vec![fill.to_string().repeat(bytes)],
        error: None,
    }
}

fn total_bytes(records: &[InvocationRecord]) -> usize {
    records.iter().map(InvocationRecord::log_bytes).sum()
}

/// A script keeps its newest records while they fit the per-script byte
/// bound; a record over the per-record cap is cut, with a marker, not
/// dropped; `recent(_, 1)` is the newest alone.
pub async fn invocations_keep_the_newest_within_the_byte_bounds(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (app, dev) = (fx.app("a").await, fx.user("dev", InstanceRole::Admin).await);
    let d = stores
        .scripts
        .deploy(
            app.id,
            &script_name("loud"),
            "1".into(),
            dev.id,
            StorageQuota::default(),
        )
        .await
        .unwrap();
    let base = crate::clock::now();
    let size = 600 * 1024;
    let all: Vec<InvocationRecord> = (0..10)
        .map(|i| sized_record(d.script.id, base, i, size, 'a'))
        .collect();
    stores.invocations.append(all[..4].to_vec()).await.unwrap();
    stores.invocations.append(all[4..].to_vec()).await.unwrap();
    let kept = stores.invocations.recent(d.script.id, 1000).await.unwrap();
    let fit = INVOCATION_BYTES_PER_SCRIPT / size;
    let newest: Vec<InvocationRecord> = all.iter().rev().take(fit).cloned().collect();
    assert_eq!(kept, newest, "the {fit} newest, newest first");
    assert!(total_bytes(&kept) <= INVOCATION_BYTES_PER_SCRIPT);
    let one = stores.invocations.recent(d.script.id, 1).await.unwrap();
    assert_eq!(one, [all[9].clone()]);

    // One record over the cap: kept, cut to the cap, its start intact, and
    // it pushes older records out by its cut size only.
    let mut huge = sized_record(d.script.id, base, 20, 3 * INVOCATION_RECORD_MAX_BYTES, 'h');
    huge.error = Some("e".repeat(INVOCATION_RECORD_MAX_BYTES));
    stores.invocations.append(vec![huge]).await.unwrap();
    let kept = stores.invocations.recent(d.script.id, 1000).await.unwrap();
    let newest = &kept[0];
    assert!(newest.log_bytes() <= INVOCATION_RECORD_MAX_BYTES);
    assert!(newest.logs[0].starts_with("hhhh"), "the start is kept");
    let marker = newest.logs.last().expect("a marker line");
    assert!(marker.starts_with("[log truncated"), "{marker}");
    assert!(
        newest
            .error
            .as_deref()
            .is_some_and(|e| e.len() < INVOCATION_RECORD_MAX_BYTES)
    );
    assert!(total_bytes(&kept) <= INVOCATION_BYTES_PER_SCRIPT);
    assert_eq!(kept[1], all[9], "older records follow, newest first");
    assert!(kept.len() >= 2 && kept.len() < fit + 1);
}

/// An app's records across its scripts fit the per-app byte bound (its
/// oldest go first), while another app's records in the same batches keep
/// the full count bound.
pub async fn invocations_app_bound_spares_other_apps(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (flood, victim) = (fx.app("flood").await, fx.app("victim").await);
    let dev = fx.user("dev", InstanceRole::Admin).await;
    let mut loud = Vec::new();
    for i in 0..10 {
        let d = stores
            .scripts
            .deploy(
                flood.id,
                &script_name(&format!("loud{i}")),
                "1".into(),
                dev.id,
                StorageQuota::default(),
            )
            .await
            .unwrap();
        loud.push(d.script.id);
    }
    let quiet = stores
        .scripts
        .deploy(
            victim.id,
            &script_name("quiet"),
            "1".into(),
            dev.id,
            StorageQuota::default(),
        )
        .await
        .unwrap()
        .script
        .id;
    let base = crate::clock::now();
    let size = 1000 * 1024; // four of them fit a script's bound
    let mut sent = Vec::new();
    let mut quiet_sent = Vec::new();
    for round in 0..4i64 {
        let mut batch = Vec::new();
        for (i, &script) in loud.iter().enumerate() {
            batch.push(sized_record(
                script,
                base,
                round * 100 + i as i64,
                size,
                'f',
            ));
        }
        for q in 0..30 {
            batch.push(sized_record(quiet, base, round * 100 + 50 + q, 10, 'q'));
        }
        sent.extend(batch[..loud.len()].iter().cloned());
        quiet_sent.extend(batch[loud.len()..].iter().cloned());
        stores.invocations.append(batch).await.unwrap();
    }
    // Expected: walking the flood app's records from the newest, those that
    // fit the app's bound.
    let mut newest_first = sent.clone();
    newest_first.sort_by_key(|r| std::cmp::Reverse(r.at));
    let mut budget = 0;
    let expected: Vec<InvocationRecord> = newest_first
        .into_iter()
        .take_while(|r| {
            budget += r.log_bytes();
            budget <= INVOCATION_BYTES_PER_APP
        })
        .collect();
    assert!(expected.len() < sent.len(), "the test must pass the bound");
    let mut kept = Vec::new();
    for &script in &loud {
        kept.extend(stores.invocations.recent(script, 1000).await.unwrap());
    }
    kept.sort_by_key(|r| std::cmp::Reverse(r.at));
    assert_eq!(kept, expected);
    assert!(total_bytes(&kept) <= INVOCATION_BYTES_PER_APP);
    let quiet_kept = stores.invocations.recent(quiet, 1000).await.unwrap();
    let quiet_newest: Vec<InvocationRecord> = quiet_sent
        .iter()
        .rev()
        .take(INVOCATIONS_KEPT)
        .cloned()
        .collect();
    assert_eq!(
        quiet_kept, quiet_newest,
        "the other app keeps its 100 newest"
    );
}

/// `recent` is newest first, bounded by `limit` and by retention.
pub async fn invocations_recent_newest_first_and_bounded(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (app, dev) = (fx.app("a").await, fx.user("dev", InstanceRole::Admin).await);
    let d = stores
        .scripts
        .deploy(
            app.id,
            &script_name("s"),
            "1".into(),
            dev.id,
            StorageQuota::default(),
        )
        .await
        .unwrap();
    let n = INVOCATIONS_KEPT as i64 + 5;
    let all: Vec<InvocationRecord> = (0..n).map(|i| record(d.script.id, i)).collect();
    // Two batches, as the background writer sends them.
    stores.invocations.append(all[..50].to_vec()).await.unwrap();
    stores.invocations.append(all[50..].to_vec()).await.unwrap();
    let recent = stores.invocations.recent(d.script.id, 3).await.unwrap();
    assert_eq!(
        recent,
        vec![
            all[n as usize - 1].clone(),
            all[n as usize - 2].clone(),
            all[n as usize - 3].clone()
        ]
    );
    let kept = stores.invocations.recent(d.script.id, 1000).await.unwrap();
    assert_eq!(kept.len(), INVOCATIONS_KEPT);
    assert_eq!(kept.last(), Some(&all[5]));
}

/// Records of unknown scripts are dropped, not errors.
pub async fn invocations_of_unknown_scripts_are_dropped(stores: Stores) {
    let ghost = crate::ids::ScriptId::new();
    stores
        .invocations
        .append(vec![record(ghost, 0)])
        .await
        .unwrap();
    assert!(
        stores
            .invocations
            .recent(ghost, 10)
            .await
            .unwrap()
            .is_empty()
    );
}
