//! Conformance cases of the scripts port,
//! [`ScriptRepository`](crate::ports::ScriptRepository).

use std::sync::Arc;

use tokio::task::JoinSet;

use crate::domain::{InstanceRole, Visibility};
use crate::ids::AppId;
use crate::ports::{QuotaExceeded, ScriptRepoError, StorageQuota};
use crate::stores::Stores;
use crate::testkit::Fixture;

use super::{record, script_name};

/// The cases of this module, in order: `scripts => case, ...`, handed to
/// `$callback` after `$args`. `__conformance_ports!` calls it: the
/// conformance module re-exports exactly these functions, and
/// [`conformance_tests!`](crate::conformance_tests) runs exactly these.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_scripts_cases {
    ($($callback:ident)::+; $($args:tt)*) => {
        $($callback)::+! { $($args)* scripts =>
            scripts_deploy_creates_then_appends_versions,
            scripts_deploy_needs_an_existing_app,
            scripts_rollback_sets_live_and_keeps_every_version,
            scripts_list_by_name_within_the_app,
            scripts_all_live_returns_the_live_versions,
            scripts_concurrent_deploys_get_distinct_versions,
            scripts_go_with_their_app,
            scripts_quota_refuses_the_deploy_that_would_pass_it,
            scripts_concurrent_deploys_never_pass_the_quota,
            scripts_delete_frees_the_quota_and_is_idempotent,
            scripts_visibility_is_set_kept_and_read_back,
        }
    };
}

/// The first deploy creates version 1; each next one appends and goes live.
pub async fn scripts_deploy_creates_then_appends_versions(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (app, dev) = (fx.app("a").await, fx.user("dev", InstanceRole::Admin).await);
    let hello = script_name("hello");
    let first = stores
        .scripts
        .deploy(
            app.id,
            &hello,
            "\"v1\"".into(),
            dev.id,
            StorageQuota::default(),
        )
        .await
        .unwrap();
    assert!(first.created);
    assert_eq!((first.version.version, first.script.live_version), (1, 1));
    assert_eq!(first.version.created_by, dev.id);
    let second = stores
        .scripts
        .deploy(
            app.id,
            &hello,
            "\"v2\"".into(),
            dev.id,
            StorageQuota::default(),
        )
        .await
        .unwrap();
    assert!(!second.created);
    assert_eq!(second.script.id, first.script.id);
    assert_eq!(
        (second.script.live_version, second.script.latest_version),
        (2, 2)
    );
    let versions = stores.scripts.versions(app.id, &hello).await.unwrap();
    let listed: Vec<(u32, u64)> = versions.iter().map(|v| (v.version, v.size_bytes)).collect();
    assert_eq!(listed, [(1, 4), (2, 4)]);
    assert_eq!(versions[1].created_by, dev.id);
    let v1 = stores.scripts.version(app.id, &hello, 1).await.unwrap();
    assert_eq!(v1.map(|v| v.source).as_deref(), Some("\"v1\""));
    assert_eq!(
        stores.scripts.get(app.id, &hello).await.unwrap(),
        Some(second.script)
    );
    assert_eq!(
        stores
            .scripts
            .get(app.id, &script_name("nope"))
            .await
            .unwrap(),
        None
    );
    assert!(
        stores
            .scripts
            .versions(app.id, &script_name("nope"))
            .await
            .unwrap()
            .is_empty()
    );
}

/// Deploying to an unknown app is `NotFound`.
pub async fn scripts_deploy_needs_an_existing_app(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let dev = fx.user("dev", InstanceRole::Admin).await;
    let e = stores
        .scripts
        .deploy(
            AppId::new(),
            &script_name("x"),
            "1".into(),
            dev.id,
            StorageQuota::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ScriptRepoError::NotFound), "got {e:?}");
}

/// A rollback makes an old version live; every version stays readable, and
/// the next deploy appends after the newest.
pub async fn scripts_rollback_sets_live_and_keeps_every_version(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (app, dev) = (fx.app("a").await, fx.user("dev", InstanceRole::Admin).await);
    let n = script_name("api");
    for src in ["1", "2", "3"] {
        stores
            .scripts
            .deploy(app.id, &n, src.into(), dev.id, StorageQuota::default())
            .await
            .unwrap();
    }
    let back = stores.scripts.set_live(app.id, &n, 1).await.unwrap();
    assert_eq!((back.live_version, back.latest_version), (1, 3));
    assert_eq!(
        stores
            .scripts
            .version(app.id, &n, 3)
            .await
            .unwrap()
            .unwrap()
            .source,
        "3"
    );
    assert_eq!(stores.scripts.version(app.id, &n, 4).await.unwrap(), None);
    let e = stores.scripts.set_live(app.id, &n, 9).await.unwrap_err();
    assert!(matches!(e, ScriptRepoError::NotFound), "got {e:?}");
    let e = stores
        .scripts
        .set_live(app.id, &script_name("ghost"), 1)
        .await
        .unwrap_err();
    assert!(matches!(e, ScriptRepoError::NotFound), "got {e:?}");
    let next = stores
        .scripts
        .deploy(app.id, &n, "4".into(), dev.id, StorageQuota::default())
        .await
        .unwrap();
    assert_eq!((next.version.version, next.script.live_version), (4, 4));
}

/// `list` gives the app's scripts by name, and only them.
pub async fn scripts_list_by_name_within_the_app(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (a, b) = (fx.app("a").await, fx.app("b").await);
    let dev = fx.user("dev", InstanceRole::Admin).await;
    // Byte order, as `COLLATE "C"`: '-' < '_' < letters.
    for name in ["zeta", "alpha_b", "beta", "alpha-b", "alpha"] {
        stores
            .scripts
            .deploy(
                a.id,
                &script_name(name),
                "1".into(),
                dev.id,
                StorageQuota::default(),
            )
            .await
            .unwrap();
    }
    stores
        .scripts
        .deploy(
            b.id,
            &script_name("other"),
            "1".into(),
            dev.id,
            StorageQuota::default(),
        )
        .await
        .unwrap();
    let names: Vec<String> = stores
        .scripts
        .list(a.id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name.to_string())
        .collect();
    assert_eq!(names, ["alpha", "alpha-b", "alpha_b", "beta", "zeta"]);
}

/// `all_live` pairs each script with its live version's source.
pub async fn scripts_all_live_returns_the_live_versions(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (app, dev) = (fx.app("a").await, fx.user("dev", InstanceRole::Admin).await);
    let n = script_name("s");
    stores
        .scripts
        .deploy(app.id, &n, "1".into(), dev.id, StorageQuota::default())
        .await
        .unwrap();
    let d = stores
        .scripts
        .deploy(app.id, &n, "2".into(), dev.id, StorageQuota::default())
        .await
        .unwrap();
    stores.scripts.set_live(app.id, &n, 1).await.unwrap();
    let live = stores.scripts.all_live().await.unwrap();
    let (script, version) = live
        .iter()
        .find(|(s, _)| s.id == d.script.id)
        .expect("listed");
    assert_eq!(
        (
            script.live_version,
            version.version,
            version.source.as_str()
        ),
        (1, 1, "1")
    );
}

/// Concurrent deploys of one script get distinct, gapless version numbers.
pub async fn scripts_concurrent_deploys_get_distinct_versions(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (app, dev) = (fx.app("a").await, fx.user("dev", InstanceRole::Admin).await);
    let mut tasks = JoinSet::new();
    for i in 0..20 {
        let scripts = Arc::clone(&stores.scripts);
        tasks.spawn(async move {
            scripts
                .deploy(
                    app.id,
                    &script_name("race"),
                    format!("{i}"),
                    dev.id,
                    StorageQuota::default(),
                )
                .await
                .map(|d| d.version.version)
        });
    }
    let mut versions = Vec::new();
    while let Some(r) = tasks.join_next().await {
        versions.push(r.expect("task").expect("deploy"));
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=20).collect::<Vec<u32>>());
    let script = stores
        .scripts
        .get(app.id, &script_name("race"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(script.latest_version, 20);
}

/// Deleting an app deletes its scripts, versions and invocations.
pub async fn scripts_go_with_their_app(stores: Stores) {
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
    stores
        .invocations
        .append(vec![record(d.script.id, 0)])
        .await
        .unwrap();
    stores.apps.delete(app.id).await.unwrap();
    assert!(stores.scripts.list(app.id).await.unwrap().is_empty());
    assert!(
        stores
            .invocations
            .recent(d.script.id, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        stores
            .scripts
            .all_live()
            .await
            .unwrap()
            .iter()
            .all(|(s, _)| s.app_id != app.id)
    );
}

/// A quota small enough to reach in a test.
fn small_quota(bytes: u64, versions: u32) -> StorageQuota {
    StorageQuota {
        source_bytes_per_app: bytes,
        versions_per_script: versions,
    }
}

/// A deploy that would pass either quota is refused with the quota named,
/// and stores nothing; other apps have their own quota. Version listings
/// carry sizes, not sources.
pub async fn scripts_quota_refuses_the_deploy_that_would_pass_it(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (app, other) = (fx.app("a").await, fx.app("b").await);
    let dev = fx.user("dev", InstanceRole::Admin).await;
    let quota = small_quota(100, 3);
    let deploy = |app: AppId, name: &'static str, len: usize| {
        let scripts = Arc::clone(&stores.scripts);
        async move {
            scripts
                .deploy(app, &script_name(name), "x".repeat(len), dev.id, quota)
                .await
        }
    };
    deploy(app.id, "one", 40).await.unwrap();
    deploy(app.id, "two", 40).await.unwrap();
    let e = deploy(app.id, "one", 30).await.unwrap_err();
    assert!(
        matches!(
            e,
            ScriptRepoError::QuotaExceeded(QuotaExceeded::SourceBytesPerApp { limit: 100 })
        ),
        "got {e:?}"
    );
    let one = stores.scripts.get(app.id, &script_name("one")).await;
    assert_eq!(
        one.unwrap().map(|s| s.latest_version),
        Some(1),
        "nothing stored"
    );
    assert_eq!(stores.scripts.source_bytes(app.id).await.unwrap(), 80);
    // Exactly up to the quota is fine; one byte more is not.
    deploy(app.id, "three", 20).await.unwrap();
    assert_eq!(stores.scripts.source_bytes(app.id).await.unwrap(), 100);
    let e = deploy(app.id, "four", 1).await.unwrap_err();
    assert!(matches!(e, ScriptRepoError::QuotaExceeded(_)), "got {e:?}");
    assert_eq!(
        stores
            .scripts
            .get(app.id, &script_name("four"))
            .await
            .unwrap(),
        None
    );
    // Another app's quota is its own; it has a versions cap too.
    for _ in 0..3 {
        deploy(other.id, "v", 10).await.unwrap();
    }
    let e = deploy(other.id, "v", 10).await.unwrap_err();
    assert!(
        matches!(
            e,
            ScriptRepoError::QuotaExceeded(QuotaExceeded::VersionsPerScript { limit: 3 })
        ),
        "got {e:?}"
    );
    assert_eq!(stores.scripts.source_bytes(other.id).await.unwrap(), 30);
    let versions = stores
        .scripts
        .versions(other.id, &script_name("v"))
        .await
        .unwrap();
    let listed: Vec<(u32, u64)> = versions.iter().map(|v| (v.version, v.size_bytes)).collect();
    assert_eq!(listed, [(1, 10), (2, 10), (3, 10)]);
    // An unknown app is still NotFound, not a quota.
    let e = deploy(AppId::new(), "x", 1).await.unwrap_err();
    assert!(matches!(e, ScriptRepoError::NotFound), "got {e:?}");
    assert_eq!(stores.scripts.source_bytes(AppId::new()).await.unwrap(), 0);
}

/// Concurrent deploys to one app never use more than its quota together,
/// across scripts (bytes) and within one script (versions).
pub async fn scripts_concurrent_deploys_never_pass_the_quota(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (app, dev) = (fx.app("a").await, fx.user("dev", InstanceRole::Admin).await);
    let quota = small_quota(1000, 1000);
    let mut tasks = JoinSet::new();
    for i in 0..24 {
        let scripts = Arc::clone(&stores.scripts);
        tasks.spawn(async move {
            let name = script_name(&format!("s{}", i % 6));
            scripts
                .deploy(app.id, &name, "y".repeat(100), dev.id, quota)
                .await
        });
    }
    let (mut ok, mut refused) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        match r.expect("task") {
            Ok(_) => ok += 1,
            Err(ScriptRepoError::QuotaExceeded(QuotaExceeded::SourceBytesPerApp { .. })) => {
                refused += 1;
            }
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!((ok, refused), (10, 14));
    assert_eq!(stores.scripts.source_bytes(app.id).await.unwrap(), 1000);
    let mut stored = 0;
    for script in stores.scripts.list(app.id).await.unwrap() {
        let versions = stores.scripts.versions(app.id, &script.name).await.unwrap();
        assert_eq!(versions.len() as u32, script.latest_version);
        stored += versions.iter().map(|v| v.size_bytes).sum::<u64>();
    }
    assert_eq!(stored, 1000, "the usage counts exactly what is stored");

    let quota = small_quota(1 << 20, 5);
    let mut tasks = JoinSet::new();
    for _ in 0..12 {
        let scripts = Arc::clone(&stores.scripts);
        tasks.spawn(async move {
            scripts
                .deploy(app.id, &script_name("capped"), "1".into(), dev.id, quota)
                .await
        });
    }
    let mut ok = 0;
    while let Some(r) = tasks.join_next().await {
        match r.expect("task") {
            Ok(_) => ok += 1,
            Err(ScriptRepoError::QuotaExceeded(QuotaExceeded::VersionsPerScript { limit: 5 })) => {}
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(ok, 5);
    let capped = stores.scripts.get(app.id, &script_name("capped")).await;
    assert_eq!(capped.unwrap().map(|s| s.latest_version), Some(5));
}

/// Deleting a script deletes its versions and invocations and frees its
/// bytes; deleting again, or a script that never was, is not an error.
pub async fn scripts_delete_frees_the_quota_and_is_idempotent(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (app, dev) = (fx.app("a").await, fx.user("dev", InstanceRole::Admin).await);
    let quota = small_quota(100, 2);
    let (gone, kept) = (script_name("gone"), script_name("kept"));
    let mut first = None;
    for _ in 0..2 {
        let d = stores
            .scripts
            .deploy(app.id, &gone, "z".repeat(40), dev.id, quota)
            .await
            .unwrap();
        first.get_or_insert(d.script.id);
    }
    stores
        .scripts
        .deploy(app.id, &kept, "k".repeat(20), dev.id, quota)
        .await
        .unwrap();
    let gone_id = first.expect("deployed");
    stores
        .invocations
        .append(vec![record(gone_id, 0)])
        .await
        .unwrap();
    assert_eq!(stores.scripts.source_bytes(app.id).await.unwrap(), 100);

    assert!(stores.scripts.delete(app.id, &gone).await.unwrap());
    assert_eq!(stores.scripts.source_bytes(app.id).await.unwrap(), 20);
    assert_eq!(stores.scripts.get(app.id, &gone).await.unwrap(), None);
    assert!(
        stores
            .scripts
            .versions(app.id, &gone)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        stores.scripts.version(app.id, &gone, 1).await.unwrap(),
        None
    );
    assert!(
        stores
            .invocations
            .recent(gone_id, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(!stores.scripts.delete(app.id, &gone).await.unwrap());
    assert!(!stores.scripts.delete(AppId::new(), &gone).await.unwrap());
    // The freed bytes and the versions cap are usable again: a new script.
    let again = stores
        .scripts
        .deploy(app.id, &gone, "z".repeat(80), dev.id, quota)
        .await
        .unwrap();
    assert!(again.created);
    assert_eq!(again.version.version, 1);
    assert_ne!(again.script.id, gone_id);
    assert_eq!(stores.scripts.source_bytes(app.id).await.unwrap(), 100);
    // Records of the deleted script arriving late are dropped.
    stores
        .invocations
        .append(vec![record(gone_id, 1)])
        .await
        .unwrap();
    assert!(
        stores
            .invocations
            .recent(gone_id, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let names: Vec<String> = stores
        .scripts
        .list(app.id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name.to_string())
        .collect();
    assert_eq!(names, ["gone", "kept"]);
}

/// A new script is public; `set_visibility` changes it, a new version keeps
/// it, every read returns it, and a missing script is `NotFound`.
pub async fn scripts_visibility_is_set_kept_and_read_back(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (app, dev) = (fx.app("a").await, fx.user("dev", InstanceRole::Admin).await);
    let quota = StorageQuota::default();
    let (name, other) = (script_name("hidden"), script_name("open"));
    let first = stores
        .scripts
        .deploy(app.id, &name, "1".into(), dev.id, quota)
        .await
        .unwrap();
    assert_eq!(first.script.visibility, Visibility::Public);
    stores
        .scripts
        .deploy(app.id, &other, "2".into(), dev.id, quota)
        .await
        .unwrap();
    let set = stores
        .scripts
        .set_visibility(app.id, &name, Visibility::Private)
        .await
        .unwrap();
    assert_eq!(
        (set.id, set.visibility),
        (first.script.id, Visibility::Private)
    );
    let got = stores.scripts.get(app.id, &name).await.unwrap().unwrap();
    assert_eq!(got.visibility, Visibility::Private);
    let next = stores
        .scripts
        .deploy(app.id, &name, "3".into(), dev.id, quota)
        .await
        .unwrap();
    assert_eq!(next.script.visibility, Visibility::Private);
    let rolled = stores.scripts.set_live(app.id, &name, 1).await.unwrap();
    assert_eq!(rolled.visibility, Visibility::Private);
    let listed: Vec<(String, Visibility)> = stores
        .scripts
        .list(app.id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.name.to_string(), s.visibility))
        .collect();
    assert_eq!(
        listed,
        [
            ("hidden".to_owned(), Visibility::Private),
            ("open".to_owned(), Visibility::Public)
        ]
    );
    let live: Vec<Visibility> = stores
        .scripts
        .all_live()
        .await
        .unwrap()
        .into_iter()
        .filter(|(s, _)| s.app_id == app.id && s.name == name)
        .map(|(s, _)| s.visibility)
        .collect();
    assert_eq!(live, [Visibility::Private]);
    let back = stores
        .scripts
        .set_visibility(app.id, &name, Visibility::Public)
        .await
        .unwrap();
    assert_eq!(back.visibility, Visibility::Public);
    for (app_id, missing) in [(app.id, script_name("nope")), (AppId::new(), name)] {
        assert!(matches!(
            stores
                .scripts
                .set_visibility(app_id, &missing, Visibility::Private)
                .await,
            Err(ScriptRepoError::NotFound)
        ));
    }
}
