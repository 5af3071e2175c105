//! The KV port's cases: round trips, versions, compare-and-set, counters,
//! listings, expiry, quotas, isolation, and the races that must not lose an
//! update or pass a quota.

use std::collections::HashSet;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::domain::{KvEntry, KvPage, KvQuota, KvUsage, KvWrite};
use crate::ids::AppId;
use crate::ports::KvError;
use crate::stores::Stores;
use crate::testkit::Fixture;

/// The cases of this port, in order.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_kv_cases {
    ($($callback:ident)::+; $($args:tt)*) => {
        $($callback)::+! { $($args)* kv =>
            kv_set_get_round_trip,
            kv_versions_grow_and_never_repeat,
            kv_cas_writes_only_if_absent_or_current,
            kv_incr_counts_and_refuses_non_integers,
            kv_delete_says_whether_a_key_was_there,
            kv_list_pages_by_prefix_in_byte_order,
            kv_expired_keys_are_absent_until_swept,
            kv_quota_counts_keys_and_bytes,
            kv_apps_are_separate,
            kv_goes_with_its_app,
            kv_concurrent_incrs_add_up,
            kv_cas_retry_loops_lose_no_update,
            kv_racing_sets_never_pass_the_quota,
        }
    };
}

/// Room for everything these cases write.
const ROOMY: KvQuota = KvQuota {
    max_keys: 10_000,
    max_bytes: 64 * 1024 * 1024,
};

fn write(key: &str, value: &str, ttl_secs: Option<u64>) -> KvWrite {
    KvWrite {
        key: key.to_owned(),
        value: value.to_owned(),
        ttl_secs,
    }
}

async fn set(stores: &Stores, app: AppId, key: &str, value: &str) -> KvEntry {
    stores
        .kv
        .kv_set(app, write(key, value, None), ROOMY)
        .await
        .unwrap()
}

async fn value(stores: &Stores, app: AppId, key: &str) -> Option<String> {
    stores.kv.kv_get(app, key).await.unwrap().map(|e| e.value)
}

async fn list_all(stores: &Stores, app: AppId, prefix: &str) -> Vec<String> {
    stores
        .kv
        .kv_list(app, prefix, None, 1000)
        .await
        .unwrap()
        .keys
}

/// The usage `entries` add up to.
fn usage_of(entries: &[&KvEntry]) -> KvUsage {
    KvUsage {
        keys: entries.len() as u64,
        bytes: entries.iter().map(|e| e.size_bytes()).sum(),
    }
}

/// A value is stored as JSON text and read back as it was written, with
/// its version and times; a missing key is `None`; a replace changes it.
pub async fn kv_set_get_round_trip(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = fx.app("a").await;
    assert_eq!(stores.kv.kv_get(app.id, "missing").await.unwrap(), None);
    let before = crate::clock::now();
    let json = r#"{"a":[1,2.5,"x ü"],"b":null,"c":{"d":true}}"#;
    let entry = set(&stores, app.id, "doc", json).await;
    let after = crate::clock::now();
    assert_eq!((entry.key.as_str(), entry.value.as_str()), ("doc", json));
    assert_eq!(entry.expires_at, None);
    assert!(
        entry.updated_at >= before - chrono::Duration::seconds(1)
            && entry.updated_at <= after + chrono::Duration::seconds(1),
        "{entry:?}"
    );
    assert_eq!(
        stores.kv.kv_get(app.id, "doc").await.unwrap(),
        Some(entry.clone())
    );
    // A TTL gives an expiry that far from now.
    let timed = stores
        .kv
        .kv_set(app.id, write("timed", "\"soon\"", Some(3600)), ROOMY)
        .await
        .unwrap();
    let at = timed.expires_at.expect("an expiry");
    assert!(
        at >= before + chrono::Duration::seconds(3599)
            && at <= crate::clock::now() + chrono::Duration::seconds(3601),
        "{timed:?}"
    );
    assert_eq!(
        stores.kv.kv_get(app.id, "timed").await.unwrap(),
        Some(timed)
    );
    // A replace changes the value and drops a TTL it is not given.
    let replaced = set(&stores, app.id, "timed", "[]").await;
    assert_eq!((replaced.value.as_str(), replaced.expires_at), ("[]", None));
    assert_eq!(value(&stores, app.id, "timed").await.as_deref(), Some("[]"));
    assert_eq!(value(&stores, app.id, "doc").await.as_deref(), Some(json));
    assert_eq!(
        stores.kv.kv_usage(app.id).await.unwrap(),
        usage_of(&[&entry, &replaced])
    );
}

/// Every write (set, cas, incr) gives a version greater than any before it
/// in the app, even for a key deleted and written again, so a cas against
/// a version from before the delete fails.
pub async fn kv_versions_grow_and_never_repeat(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = fx.app("a").await;
    let mut versions = vec![set(&stores, app.id, "k", "1").await.version];
    versions.push(set(&stores, app.id, "k", "1").await.version);
    versions.push(set(&stores, app.id, "other", "1").await.version);
    stores.kv.kv_incr(app.id, "k", 1, ROOMY).await.unwrap();
    versions.push(
        stores
            .kv
            .kv_get(app.id, "k")
            .await
            .unwrap()
            .unwrap()
            .version,
    );
    let before_delete = *versions.last().unwrap();
    let cas = stores
        .kv
        .kv_cas(app.id, Some(before_delete), write("k", "3", None), ROOMY)
        .await
        .unwrap()
        .expect("the current version");
    versions.push(cas.version);
    let old = cas.version;
    assert!(stores.kv.kv_delete(app.id, "k").await.unwrap());
    let again = set(&stores, app.id, "k", "3").await;
    versions.push(again.version);
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "versions grow: {versions:?}"
    );
    // The key came back with the same value, but a new version.
    let e = stores
        .kv
        .kv_cas(app.id, Some(old), write("k", "4", None), ROOMY)
        .await
        .unwrap();
    assert_eq!(e, None, "a version from before the delete is stale");
    assert_eq!(stores.kv.kv_get(app.id, "k").await.unwrap(), Some(again));
}

/// `cas` with `None` writes only an absent key; with `Some(v)` only a key
/// at version `v`. A moved version is `Ok(None)` and changes nothing.
pub async fn kv_cas_writes_only_if_absent_or_current(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = fx.app("a").await;
    let first = stores
        .kv
        .kv_cas(app.id, None, write("k", "\"one\"", None), ROOMY)
        .await
        .unwrap()
        .expect("absent, so written");
    assert_eq!(first.value, "\"one\"");
    let lost = stores
        .kv
        .kv_cas(app.id, None, write("k", "\"two\"", None), ROOMY)
        .await
        .unwrap();
    assert_eq!(lost, None, "present, so not written");
    assert_eq!(
        stores.kv.kv_get(app.id, "k").await.unwrap(),
        Some(first.clone())
    );
    let second = stores
        .kv
        .kv_cas(
            app.id,
            Some(first.version),
            write("k", "\"two\"", Some(3600)),
            ROOMY,
        )
        .await
        .unwrap()
        .expect("current, so written");
    assert_eq!(second.value, "\"two\"");
    assert!(second.version > first.version && second.expires_at.is_some());
    let stale = stores
        .kv
        .kv_cas(
            app.id,
            Some(first.version),
            write("k", "\"three\"", None),
            ROOMY,
        )
        .await
        .unwrap();
    assert_eq!(stale, None, "the version moved");
    assert_eq!(
        stores.kv.kv_get(app.id, "k").await.unwrap(),
        Some(second.clone())
    );
    // A version of an absent key never matches.
    let absent = stores
        .kv
        .kv_cas(
            app.id,
            Some(second.version),
            write("nope", "1", None),
            ROOMY,
        )
        .await
        .unwrap();
    assert_eq!(absent, None);
    assert_eq!(stores.kv.kv_get(app.id, "nope").await.unwrap(), None);
    assert_eq!(
        stores.kv.kv_usage(app.id).await.unwrap(),
        usage_of(&[&second])
    );
}

/// `incr` creates an absent key at `by`, adds to an integer, refuses a
/// value that is not a JSON integer (`NotAnInteger`) and a sum past `i64`
/// (`Overflow`) without changing it, and keeps the key's TTL.
pub async fn kv_incr_counts_and_refuses_non_integers(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = fx.app("a").await;
    let incr = |key: &'static str, by: i64| {
        let stores = stores.clone();
        async move { stores.kv.kv_incr(app.id, key, by, ROOMY).await }
    };
    assert_eq!(incr("n", 5).await.unwrap(), 5);
    let created = stores.kv.kv_get(app.id, "n").await.unwrap().unwrap();
    assert_eq!((created.value.as_str(), created.expires_at), ("5", None));
    assert_eq!(incr("n", 10).await.unwrap(), 15);
    assert_eq!(incr("n", -20).await.unwrap(), -5);
    assert_eq!(value(&stores, app.id, "n").await.as_deref(), Some("-5"));
    for bad in ["\"7\"", "1.5", "1e3", "true", "null", "[1]", "{}"] {
        set(&stores, app.id, "bad", bad).await;
        let e = incr("bad", 1).await.unwrap_err();
        assert!(matches!(e, KvError::NotAnInteger), "{bad}: got {e:?}");
        assert_eq!(value(&stores, app.id, "bad").await.as_deref(), Some(bad));
    }
    set(&stores, app.id, "big", &(i64::MAX - 1).to_string()).await;
    assert_eq!(incr("big", 1).await.unwrap(), i64::MAX);
    let e = incr("big", 1).await.unwrap_err();
    assert!(matches!(e, KvError::Overflow), "got {e:?}");
    assert_eq!(
        value(&stores, app.id, "big").await,
        Some(i64::MAX.to_string())
    );
    set(&stores, app.id, "small", &i64::MIN.to_string()).await;
    let e = incr("small", -1).await.unwrap_err();
    assert!(matches!(e, KvError::Overflow), "got {e:?}");
    assert_eq!(
        value(&stores, app.id, "small").await,
        Some(i64::MIN.to_string())
    );
    // An existing key keeps its TTL.
    let timed = stores
        .kv
        .kv_set(app.id, write("timed", "1", Some(3600)), ROOMY)
        .await
        .unwrap();
    assert_eq!(incr("timed", 1).await.unwrap(), 2);
    let after = stores.kv.kv_get(app.id, "timed").await.unwrap().unwrap();
    assert_eq!(after.value, "2");
    assert_eq!(after.expires_at, timed.expires_at);
    assert!(after.version > timed.version);
}

/// `delete` says whether a key was there, and frees its room.
pub async fn kv_delete_says_whether_a_key_was_there(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = fx.app("a").await;
    assert!(!stores.kv.kv_delete(app.id, "k").await.unwrap());
    let kept = set(&stores, app.id, "kept", "1").await;
    set(&stores, app.id, "k", "\"v\"").await;
    assert!(stores.kv.kv_delete(app.id, "k").await.unwrap());
    assert!(!stores.kv.kv_delete(app.id, "k").await.unwrap());
    assert_eq!(stores.kv.kv_get(app.id, "k").await.unwrap(), None);
    assert_eq!(list_all(&stores, app.id, "").await, ["kept"]);
    assert_eq!(
        stores.kv.kv_usage(app.id).await.unwrap(),
        usage_of(&[&kept])
    );
    assert!(!stores.kv.kv_delete(AppId::new(), "k").await.unwrap());
}

/// `list` returns the keys with a prefix in byte order, at most `limit`;
/// following the cursor visits every key exactly once, and the last page
/// (even a full one) has no cursor.
pub async fn kv_list_pages_by_prefix_in_byte_order(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = fx.app("a").await;
    let max = '\u{10FFFF}';
    let keys = [
        "b".to_owned(),
        "a/2".to_owned(),
        "A".to_owned(),
        "a".to_owned(),
        "aé".to_owned(),
        "a/10".to_owned(),
        "a~".to_owned(),
        "a/1".to_owned(),
        "a_b".to_owned(),
        format!("p{max}"),
        format!("p{max}x"),
        "q".to_owned(),
        "user:1".to_owned(),
    ];
    for k in &keys {
        set(&stores, app.id, k, "0").await;
    }
    let mut everything: Vec<String> = keys.to_vec();
    everything.sort();
    assert_eq!(list_all(&stores, app.id, "").await, everything);
    assert_eq!(
        list_all(&stores, app.id, "a").await,
        ["a", "a/1", "a/10", "a/2", "a_b", "a~", "aé"]
    );
    assert_eq!(list_all(&stores, app.id, "a/1").await, ["a/1", "a/10"]);
    assert_eq!(
        list_all(&stores, app.id, &format!("p{max}")).await,
        [format!("p{max}"), format!("p{max}x")]
    );
    assert!(list_all(&stores, app.id, "zz").await.is_empty());
    assert!(list_all(&stores, app.id, "B").await.is_empty());
    // The limit, and a cursor only when more keys follow.
    let page = stores.kv.kv_list(app.id, "a", None, 3).await.unwrap();
    assert_eq!(
        page,
        KvPage {
            keys: vec!["a".into(), "a/1".into(), "a/10".into()],
            cursor: Some("a/10".into()),
        }
    );
    let page = stores
        .kv
        .kv_list(app.id, "a", Some("a_b".into()), 2)
        .await
        .unwrap();
    assert_eq!(
        page,
        KvPage {
            keys: vec!["a~".into(), "aé".into()],
            cursor: None,
        },
        "a full last page has no cursor"
    );
    // A cursor before the prefix starts at the prefix.
    let page = stores
        .kv
        .kv_list(app.id, "user:", Some("A".into()), 10)
        .await
        .unwrap();
    assert_eq!((page.keys, page.cursor), (vec!["user:1".to_owned()], None));
    for limit in [1, 2, 3, 5, 13, 100] {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = stores
                .kv
                .kv_list(app.id, "", after.clone(), limit)
                .await
                .unwrap();
            assert!(page.keys.len() <= limit);
            seen.extend(page.keys.iter().cloned());
            match page.cursor {
                Some(c) => {
                    assert_eq!(page.keys.len(), limit, "only a full page has a cursor");
                    assert_eq!(Some(&c), page.keys.last());
                    after = Some(c);
                }
                None => break,
            }
        }
        assert_eq!(seen, everything, "limit {limit}: each key once, in order");
    }
}

/// A key set with a TTL of one second is absent once it expired, though
/// not swept yet: `get` and `list` skip it, `delete` finds nothing, `incr`
/// counts it as 0 and `cas` with `None` writes over it. Until swept it still
/// counts in the usage; `next_expiry` names it and `sweep` removes it (at
/// most `limit` at a time) and gives its room back.
pub async fn kv_expired_keys_are_absent_until_swept(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = fx.app("a").await;
    let short = |key: &'static str, value: &'static str| {
        let stores = stores.clone();
        async move {
            stores
                .kv
                .kv_set(app.id, write(key, value, Some(1)), ROOMY)
                .await
                .unwrap()
        }
    };
    let kept = set(&stores, app.id, "kept", "\"here\"").await;
    let gone = short("gone", "1").await;
    let gone2 = short("gone2", "2").await;
    let deleted = short("deleted", "3").await;
    let counter = short("counter", "41").await;
    let casd = short("casd", "5").await;
    let expiries: Vec<_> = [&gone, &gone2, &deleted, &counter, &casd]
        .iter()
        .map(|e| e.expires_at.expect("a TTL"))
        .collect();
    assert_eq!(
        stores.kv.kv_next_expiry().await.unwrap(),
        expiries.iter().min().copied()
    );
    assert_eq!(
        stores.kv.kv_get(app.id, "gone").await.unwrap(),
        Some(gone.clone())
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;

    assert_eq!(stores.kv.kv_get(app.id, "gone").await.unwrap(), None);
    assert_eq!(list_all(&stores, app.id, "").await, ["kept"]);
    assert!(!stores.kv.kv_delete(app.id, "deleted").await.unwrap());
    assert_eq!(
        stores
            .kv
            .kv_incr(app.id, "counter", 1, ROOMY)
            .await
            .unwrap(),
        1
    );
    let counter = stores.kv.kv_get(app.id, "counter").await.unwrap().unwrap();
    assert_eq!(counter.expires_at, None, "created afresh, without a TTL");
    let casd = stores
        .kv
        .kv_cas(app.id, None, write("casd", "6", None), ROOMY)
        .await
        .unwrap()
        .expect("an expired key is absent");
    assert_eq!(
        list_all(&stores, app.id, "").await,
        ["casd", "counter", "kept"]
    );
    // Not swept yet: the two expired keys still count.
    assert_eq!(
        stores.kv.kv_usage(app.id).await.unwrap(),
        usage_of(&[&kept, &counter, &casd, &gone, &gone2])
    );
    let next = stores
        .kv
        .kv_next_expiry()
        .await
        .unwrap()
        .expect("unswept keys");
    assert_eq!(next, gone.expires_at.min(gone2.expires_at).unwrap());
    assert!(next <= crate::clock::now());
    assert_eq!(stores.kv.kv_sweep(1).await.unwrap(), 1);
    assert_eq!(stores.kv.kv_sweep(100).await.unwrap(), 1);
    assert_eq!(stores.kv.kv_sweep(100).await.unwrap(), 0);
    assert_eq!(stores.kv.kv_next_expiry().await.unwrap(), None);
    assert_eq!(
        stores.kv.kv_usage(app.id).await.unwrap(),
        usage_of(&[&kept, &counter, &casd])
    );
    assert_eq!(
        list_all(&stores, app.id, "").await,
        ["casd", "counter", "kept"]
    );
}

/// A write that would pass the quota in keys or in bytes (key and value)
/// is `QuotaExceeded` with the usage before it, and changes nothing; a
/// replace counts only the difference, a delete frees room, and a write
/// that does not grow the usage passes even above a lowered quota.
pub async fn kv_quota_counts_keys_and_bytes(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = fx.app("a").await;
    let quota = KvQuota {
        max_keys: 3,
        max_bytes: 30,
    };
    let try_set = |key: &'static str, value: &'static str, quota: KvQuota| {
        let stores = stores.clone();
        async move {
            stores
                .kv
                .kv_set(app.id, write(key, value, None), quota)
                .await
        }
    };
    let refused = |r: Result<KvEntry, KvError>, held: KvUsage| match r {
        Err(KvError::QuotaExceeded(u)) => assert_eq!(u, held),
        other => panic!("expected QuotaExceeded({held:?}), got {other:?}"),
    };
    // Each entry below is 2 bytes of key and 8 of value: 10 bytes.
    try_set("k1", "12345678", quota).await.unwrap();
    try_set("k2", "12345678", quota).await.unwrap();
    let held = KvUsage { keys: 2, bytes: 20 };
    assert_eq!(stores.kv.kv_usage(app.id).await.unwrap(), held);
    refused(try_set("k3", "123456789", quota).await, held);
    assert_eq!(stores.kv.kv_get(app.id, "k3").await.unwrap(), None);
    assert_eq!(stores.kv.kv_usage(app.id).await.unwrap(), held);
    try_set("k3", "12345678", quota).await.unwrap();
    let full = KvUsage { keys: 3, bytes: 30 };
    assert_eq!(stores.kv.kv_usage(app.id).await.unwrap(), full);
    refused(try_set("k4", "1", quota).await, full);
    // A replace counts the difference only.
    try_set("k1", "87654321", quota).await.unwrap();
    refused(try_set("k1", "123456789", quota).await, full);
    assert_eq!(
        value(&stores, app.id, "k1").await.as_deref(),
        Some("87654321")
    );
    try_set("k1", "1", quota).await.unwrap();
    let roomier = KvUsage { keys: 3, bytes: 23 };
    assert_eq!(stores.kv.kv_usage(app.id).await.unwrap(), roomier);
    // Every write checks the quota: cas and incr too.
    let e = stores
        .kv
        .kv_cas(app.id, None, write("k4", "1", None), quota)
        .await
        .unwrap_err();
    assert!(
        matches!(e, KvError::QuotaExceeded(u) if u == roomier),
        "{e:?}"
    );
    let e = stores.kv.kv_incr(app.id, "k4", 1, quota).await.unwrap_err();
    assert!(
        matches!(e, KvError::QuotaExceeded(u) if u == roomier),
        "{e:?}"
    );
    assert_eq!(stores.kv.kv_get(app.id, "k4").await.unwrap(), None);
    try_set("k2", "9999999", quota).await.unwrap(); // 9 bytes: 22 in all
    let e = stores
        .kv
        .kv_incr(
            app.id,
            "k2",
            1,
            KvQuota {
                max_keys: 3,
                max_bytes: 22,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, KvError::QuotaExceeded(_)), "{e:?}");
    assert_eq!(
        value(&stores, app.id, "k2").await.as_deref(),
        Some("9999999")
    );
    assert_eq!(
        stores.kv.kv_incr(app.id, "k2", 1, quota).await.unwrap(),
        10_000_000
    );
    // A delete frees room.
    assert!(stores.kv.kv_delete(app.id, "k3").await.unwrap());
    try_set("k4", "12345678", quota).await.unwrap();
    assert_eq!(
        stores.kv.kv_usage(app.id).await.unwrap(),
        KvUsage {
            keys: 3,
            bytes: 3 + 10 + 10
        }
    );
    // Above a lowered quota, a write that does not grow still passes.
    let lowered = KvQuota {
        max_keys: 1,
        max_bytes: 5,
    };
    try_set("k4", "87654321", lowered).await.unwrap();
    try_set("k4", "1234", lowered).await.unwrap();
    let now = KvUsage {
        keys: 3,
        bytes: 3 + 10 + 6,
    };
    refused(try_set("k4", "12345", lowered).await, now);
    refused(try_set("k5", "1", lowered).await, now);
}

/// Two apps never see or change each other's keys.
pub async fn kv_apps_are_separate(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (a, b) = (fx.app("a").await, fx.app("b").await);
    let in_a = set(&stores, a.id, "k", "\"a\"").await;
    let in_b = set(&stores, b.id, "k", "\"bb\"").await;
    set(&stores, a.id, "only-a", "1").await;
    assert_eq!(value(&stores, a.id, "k").await.as_deref(), Some("\"a\""));
    assert_eq!(value(&stores, b.id, "k").await.as_deref(), Some("\"bb\""));
    assert_eq!(stores.kv.kv_get(b.id, "only-a").await.unwrap(), None);
    assert_eq!(list_all(&stores, a.id, "").await, ["k", "only-a"]);
    assert_eq!(list_all(&stores, b.id, "").await, ["k"]);
    assert_eq!(
        stores.kv.kv_incr(b.id, "only-a", 1, ROOMY).await.unwrap(),
        1
    );
    assert_eq!(value(&stores, a.id, "only-a").await.as_deref(), Some("1"));
    // A version of one app's key means nothing for the other's.
    let cas = stores
        .kv
        .kv_cas(b.id, Some(in_a.version), write("k", "0", None), ROOMY)
        .await
        .unwrap();
    assert_eq!(cas, None);
    assert!(stores.kv.kv_delete(a.id, "k").await.unwrap());
    assert_eq!(
        stores.kv.kv_get(b.id, "k").await.unwrap(),
        Some(in_b.clone())
    );
    // Each app's quota counts its own keys.
    let one = KvQuota {
        max_keys: 1,
        max_bytes: 1000,
    };
    stores
        .kv
        .kv_set(a.id, write("k", "2", None), ROOMY)
        .await
        .unwrap();
    assert_eq!(stores.kv.kv_usage(a.id).await.unwrap().keys, 2);
    assert_eq!(stores.kv.kv_usage(b.id).await.unwrap().keys, 2);
    let fresh = fx.app("c").await;
    stores
        .kv
        .kv_set(fresh.id, write("k", "2", None), one)
        .await
        .unwrap();
    assert_eq!(stores.kv.kv_usage(fresh.id).await.unwrap().keys, 1);
}

/// Deleting an app deletes its keys (and their expiries); a write for an
/// unknown or deleted app is `AppNotFound`, and reads of one find nothing.
pub async fn kv_goes_with_its_app(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (a, b) = (fx.app("a").await, fx.app("b").await);
    set(&stores, a.id, "k", "1").await;
    stores
        .kv
        .kv_set(a.id, write("timed", "1", Some(3600)), ROOMY)
        .await
        .unwrap();
    let kept = set(&stores, b.id, "k", "2").await;
    stores.apps.delete(a.id).await.unwrap();
    assert_eq!(stores.kv.kv_get(a.id, "k").await.unwrap(), None);
    assert!(list_all(&stores, a.id, "").await.is_empty());
    assert_eq!(stores.kv.kv_usage(a.id).await.unwrap(), KvUsage::default());
    assert_eq!(stores.kv.kv_next_expiry().await.unwrap(), None);
    assert_eq!(stores.kv.kv_get(b.id, "k").await.unwrap(), Some(kept));
    for app in [a.id, AppId::new()] {
        let e = stores
            .kv
            .kv_set(app, write("k", "1", None), ROOMY)
            .await
            .unwrap_err();
        assert!(matches!(e, KvError::AppNotFound), "got {e:?}");
        let e = stores
            .kv
            .kv_cas(app, None, write("k", "1", None), ROOMY)
            .await
            .unwrap_err();
        assert!(matches!(e, KvError::AppNotFound), "got {e:?}");
        let e = stores.kv.kv_incr(app, "k", 1, ROOMY).await.unwrap_err();
        assert!(matches!(e, KvError::AppNotFound), "got {e:?}");
        assert!(!stores.kv.kv_delete(app, "k").await.unwrap());
        assert_eq!(stores.kv.kv_get(app, "k").await.unwrap(), None);
        assert_eq!(stores.kv.kv_usage(app).await.unwrap(), KvUsage::default());
    }
}

/// 32 concurrent `incr`s of one key: the total is exact, and each call saw
/// a different value.
pub async fn kv_concurrent_incrs_add_up(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = fx.app("a").await;
    let mut tasks = JoinSet::new();
    for _ in 0..32 {
        let stores = stores.clone();
        tasks.spawn(async move { stores.kv.kv_incr(app.id, "n", 1, ROOMY).await });
    }
    let mut seen = HashSet::new();
    while let Some(r) = tasks.join_next().await {
        seen.insert(r.expect("task").expect("incr"));
    }
    assert_eq!(seen, (1..=32).collect::<HashSet<i64>>());
    assert_eq!(value(&stores, app.id, "n").await.as_deref(), Some("32"));
}

/// 32 tasks each add one to a counter with a read-then-cas loop: no update
/// is lost.
pub async fn kv_cas_retry_loops_lose_no_update(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = fx.app("a").await;
    set(&stores, app.id, "n", "0").await;
    let mut tasks = JoinSet::new();
    for _ in 0..32 {
        let stores = stores.clone();
        tasks.spawn(async move {
            loop {
                let current = stores.kv.kv_get(app.id, "n").await.unwrap().unwrap();
                let n: i64 = current.value.parse().unwrap();
                let next = write("n", &(n + 1).to_string(), None);
                if let Some(e) = stores
                    .kv
                    .kv_cas(app.id, Some(current.version), next, ROOMY)
                    .await
                    .unwrap()
                {
                    break e.version;
                }
                tokio::task::yield_now().await;
            }
        });
    }
    let mut versions = HashSet::new();
    while let Some(r) = tasks.join_next().await {
        versions.insert(r.expect("task"));
    }
    assert_eq!(versions.len(), 32, "each success wrote its own version");
    assert_eq!(value(&stores, app.id, "n").await.as_deref(), Some("32"));
}

/// 32 racing sets of new keys at the edge of the quota: exactly as many
/// pass as fit, in keys and in bytes, and the usage says so.
pub async fn kv_racing_sets_never_pass_the_quota(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    for (name, quota, fit) in [
        (
            "keys",
            KvQuota {
                max_keys: 7,
                max_bytes: 1 << 20,
            },
            7,
        ),
        (
            "bytes",
            KvQuota {
                max_keys: 1000,
                max_bytes: 55,
            },
            5,
        ),
    ] {
        let app = fx.app(name).await;
        let mut tasks = JoinSet::new();
        for i in 0..32 {
            let stores = stores.clone();
            // Every entry is 10 bytes: a 4-byte key and a 6-byte value.
            let w = write(&format!("k{i:03}"), "\"abcd\"", None);
            tasks.spawn(async move { stores.kv.kv_set(app.id, w, quota).await });
        }
        let mut passed = 0;
        while let Some(r) = tasks.join_next().await {
            match r.expect("task") {
                Ok(_) => passed += 1,
                Err(KvError::QuotaExceeded(_)) => {}
                Err(e) => panic!("{name}: got {e:?}"),
            }
        }
        assert_eq!(passed, fit, "{name}");
        assert_eq!(
            stores.kv.kv_usage(app.id).await.unwrap(),
            KvUsage {
                keys: fit,
                bytes: fit * 10
            },
            "{name}"
        );
        assert_eq!(
            list_all(&stores, app.id, "").await.len() as u64,
            fit,
            "{name}"
        );
    }
}
