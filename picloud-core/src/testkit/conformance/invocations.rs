//! Conformance cases of the invocations port,
//! [`InvocationRepository`](crate::ports::InvocationRepository).

use crate::domain::{InstanceRole, InvocationContext, InvocationRecord, Trigger};
use crate::ports::{
    INVOCATION_BYTES_PER_APP, INVOCATION_BYTES_PER_SCRIPT, INVOCATION_RECORD_MAX_BYTES,
    INVOCATIONS_KEPT, InvocationFilter, StorageQuota,
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
            invocations_keep_their_context_and_error_position,
            invocations_query_an_apps_records_by_script_status_time_and_request,
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
        line: None,
        column: None,
        context: Default::default(),
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

/// Every field of a record reads back as written: the context (trigger,
/// request id, method, path, query) and the error's line and column.
pub async fn invocations_keep_their_context_and_error_position(stores: Stores) {
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
    let mut failed = record(d.script.id, 1);
    failed.context = InvocationContext::http(
        "0b7e-request",
        "PATCH",
        "/a/b%20c/é",
        Some("x=1&y=%C3%A9&x=2"),
    );
    let plain = InvocationRecord {
        line: None,
        column: None,
        context: InvocationContext::default(),
        ..record(d.script.id, 2)
    };
    stores
        .invocations
        .append(vec![failed.clone(), plain.clone()])
        .await
        .unwrap();
    let kept = stores.invocations.recent(d.script.id, 10).await.unwrap();
    assert_eq!(kept, [plain, failed.clone()]);
    assert_eq!((kept[1].line, kept[1].column), (Some(3), Some(7)));
    assert_eq!(kept[1].context.trigger, Trigger::Http);
    assert_eq!(kept[1].context.query.as_deref(), Some("x=1&y=%C3%A9&x=2"));
}

/// `query` reads an app's records across its scripts, newest first, with
/// each filter applied, never another app's; `limit` keeps the newest.
pub async fn invocations_query_an_apps_records_by_script_status_time_and_request(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (app, other) = (fx.app("a").await, fx.app("b").await);
    let dev = fx.user("dev", InstanceRole::Admin).await;
    let deploy = |app: crate::ids::AppId, name: &'static str| {
        let stores = stores.clone();
        async move {
            stores
                .scripts
                .deploy(
                    app,
                    &script_name(name),
                    "1".into(),
                    dev.id,
                    StorageQuota::default(),
                )
                .await
                .unwrap()
                .script
                .id
        }
    };
    let (one, two, theirs) = (
        deploy(app.id, "one").await,
        deploy(app.id, "two").await,
        deploy(other.id, "one").await,
    );
    // record(_, i): i ms after now, 500 for odd i, request id `req-{i}`.
    let mut all = Vec::new();
    for i in 0..6 {
        all.push(record(if i < 3 { one } else { two }, i));
    }
    all.push(record(theirs, 6));
    stores.invocations.append(all.clone()).await.unwrap();
    let ask = |filter: InvocationFilter| {
        let stores = stores.clone();
        async move { stores.invocations.query(app.id, &filter).await.unwrap() }
    };
    let every = ask(InvocationFilter {
        limit: 100,
        ..Default::default()
    })
    .await;
    let expected: Vec<InvocationRecord> = all[..6].iter().rev().cloned().collect();
    assert_eq!(
        every, expected,
        "the app's six, newest first, not the other app's"
    );
    let newest = ask(InvocationFilter {
        limit: 2,
        ..Default::default()
    })
    .await;
    assert_eq!(newest, expected[..2]);
    let of_one = ask(InvocationFilter {
        script: Some(one),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(of_one, all[..3].iter().rev().cloned().collect::<Vec<_>>());
    let failed = ask(InvocationFilter {
        status: Some(500),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(
        failed.iter().map(|r| r.duration_us).collect::<Vec<_>>(),
        [15, 13, 11]
    );
    let since = ask(InvocationFilter {
        since: Some(all[4].at),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(since, [all[5].clone(), all[4].clone()]);
    let by_id = ask(InvocationFilter {
        request_id: Some("req-2".into()),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(by_id, [all[2].clone()]);
    let none = ask(InvocationFilter {
        script: Some(theirs),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert!(none.is_empty(), "another app's script matches nothing");
}
