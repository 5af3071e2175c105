//! The invocation writer: records queued by the hot path reach the store in
//! batches, and `flush` waits until everything queued before it is written
//! (the server calls it on shutdown, so SIGTERM loses no record).

use std::sync::Arc;

use picloud_core::executor::{ExecutorConfig, RhaiExecutor, ScriptRequest};
use picloud_core::ports::INVOCATIONS_KEPT;
use picloud_core::scripts::ScriptService;
use picloud_core::{AppService, Principal, Stores};
use picloud_store_memory::MemoryStore;

async fn service_with_script(source: &str) -> (ScriptService, Principal) {
    let stores: Stores = MemoryStore::new().into_stores();
    let owner = picloud_core::testkit::Fixture::new(stores.clone())
        .owner()
        .await;
    AppService::new(stores.clone())
        .create(&owner, "shop", "Shop")
        .await
        .unwrap();
    let executor = Arc::new(RhaiExecutor::new(ExecutorConfig::with_workers(2)).unwrap());
    let svc = ScriptService::new(stores, executor);
    svc.deploy(&owner, "shop", "s", source.to_owned())
        .await
        .unwrap();
    (svc, owner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_writes_every_record_queued_before_it() {
    let (svc, owner) = service_with_script(r#"print(request.path); 1"#).await;
    let calls = INVOCATIONS_KEPT;
    for i in 0..calls {
        let request = ScriptRequest {
            path: format!("/{i}"),
            ..ScriptRequest::default()
        };
        svc.invoke("shop", "s", request).await.unwrap();
    }
    svc.writer().flush().await;
    let records = svc.invocations(&owner, "shop", "s", calls).await.unwrap();
    assert_eq!(records.len(), calls, "nothing is left in the queue");
    // Newest first, each with its own captured output.
    assert_eq!(records[0].logs, [format!("/{}", calls - 1)]);
    assert_eq!(records[calls - 1].logs, ["/0"]);
    assert_eq!(svc.writer().dropped(), 0);
}

#[tokio::test]
async fn flush_with_nothing_queued_returns_at_once() {
    let (svc, owner) = service_with_script("1").await;
    tokio::time::timeout(std::time::Duration::from_secs(1), svc.writer().flush())
        .await
        .expect("an idle writer confirms at once");
    let records = svc.invocations(&owner, "shop", "s", 10).await.unwrap();
    assert!(records.is_empty());
}
