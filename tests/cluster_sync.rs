//! `ScriptService::sync_app` and `resync` (cluster mode) on two services
//! over one memory store, standing for two nodes: a node that missed
//! changes never keeps serving code the store no longer has, even when a
//! deleted script or app was made again under the same name (versions
//! start at 1 again, the slug is reused).
use std::sync::Arc;

use picloud_core::AppService;
use picloud_core::executor::{ExecutorConfig, LazyExecutor};
use picloud_core::scripts::ScriptService;
use picloud_store_memory::MemoryStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_deleted_and_redeployed_while_missed_is_served_new_after_resync() {
    let stores = MemoryStore::new().into_stores();
    let owner = picloud_core::testkit::Fixture::new(stores.clone())
        .owner()
        .await;
    let executor = Arc::new(LazyExecutor::new(ExecutorConfig::default()));
    let a = ScriptService::new(stores.clone(), executor.clone());
    let b = ScriptService::new(stores.clone(), executor);
    let apps = AppService::new(stores.clone());
    let shop = apps.create(&owner, "shop", "Shop").await.unwrap().app;
    a.deploy(&owner, "shop", "hello", "\"old\"".into())
        .await
        .unwrap();
    b.warm().await.unwrap();
    let cached = b.live("shop", "hello").await.unwrap();
    // On A, while B hears nothing: delete, then deploy new code (v1 again).
    a.delete(&owner, "shop", "hello").await.unwrap();
    let d = a
        .deploy(&owner, "shop", "hello", "\"new\"".into())
        .await
        .unwrap();
    assert_eq!(d.version.version, 1);
    // B reconnects and resyncs (and also gets both notifications).
    b.resync().await.unwrap();
    b.sync_app(shop.id).await.unwrap();
    let after = b.live("shop", "hello").await.unwrap();
    assert_ne!(cached.script_id, d.script.id);
    assert_eq!(
        after.script_id, d.script.id,
        "B serves the new script, not the deleted one's code"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_deleted_and_its_slug_reused_while_missed_serves_the_new_app_after_resync() {
    let stores = MemoryStore::new().into_stores();
    let owner = picloud_core::testkit::Fixture::new(stores.clone())
        .owner()
        .await;
    let executor = Arc::new(LazyExecutor::new(ExecutorConfig::default()));
    let a = ScriptService::new(stores.clone(), executor.clone());
    let b = ScriptService::new(stores.clone(), executor);
    let apps = AppService::new(stores.clone());
    let old = apps.create(&owner, "shop", "Shop").await.unwrap().app;
    a.deploy(&owner, "shop", "hello", "\"old\"".into())
        .await
        .unwrap();
    b.warm().await.unwrap();
    assert_eq!(b.live("shop", "hello").await.unwrap().app_id, old.id);
    apps.delete(&owner, "shop").await.unwrap();
    let new = apps.create(&owner, "shop", "Shop 2").await.unwrap().app;
    a.deploy(&owner, "shop", "hello", "\"new\"".into())
        .await
        .unwrap();
    b.resync().await.unwrap();
    let after = b.live("shop", "hello").await.unwrap();
    assert_ne!(old.id, new.id);
    assert_eq!(
        after.app_id, new.id,
        "B serves the new app's script, not the deleted app's"
    );
}
