//! Caddy's `ask` and Host routing read the in-memory domain map: thousands
//! of lookups from racing tasks make no store call. The store is read only
//! by a refresh (at start-up and after a change).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use picloud_core::domain::Hostname;
use picloud_core::domains::DomainService;
use picloud_core::ids::AppId;
use picloud_core::ports::{Domain, DomainRepoError, DomainRepository};
use picloud_core::testkit::Fixture;
use picloud_store_memory::MemoryStore;

/// The memory store's domains, counting every call.
#[derive(Clone)]
struct Counting {
    inner: Arc<dyn DomainRepository>,
    calls: Arc<AtomicUsize>,
}

#[async_trait]
impl DomainRepository for Counting {
    async fn claim(&self, app: AppId, hostname: &Hostname) -> Result<Domain, DomainRepoError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.claim(app, hostname).await
    }
    async fn release(&self, app: AppId, hostname: &Hostname) -> Result<bool, DomainRepoError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.release(app, hostname).await
    }
    async fn domains_of(&self, app: AppId) -> Result<Vec<Domain>, DomainRepoError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.domains_of(app).await
    }
    async fn all_domains(&self) -> Result<Vec<Domain>, DomainRepoError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.all_domains().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ask_and_routing_answer_from_memory_under_load() {
    let mut stores = MemoryStore::new().into_stores();
    let calls = Arc::new(AtomicUsize::new(0));
    stores.domains = Arc::new(Counting {
        inner: Arc::clone(&stores.domains),
        calls: Arc::clone(&calls),
    });
    let fx = Fixture::new(stores.clone());
    let owner = fx.owner().await;
    let app = fx.app("shop").await;
    let service = DomainService::new(stores);
    service.refresh().await.unwrap();
    service
        .add(&owner, app.slug.as_str(), "shop.example.test")
        .await
        .unwrap();
    let before = calls.load(Ordering::SeqCst);

    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..8 {
        let service = service.clone();
        let slug = app.slug.to_string();
        tasks.spawn(async move {
            let mut yes = 0;
            for i in 0..10_000 {
                let name = if (i + t) % 2 == 0 {
                    "SHOP.example.test".to_owned()
                } else {
                    format!("other{i}.example.test")
                };
                if service.tls_ask(&name) {
                    yes += 1;
                }
                if let Some(target) = service.map().lookup("shop.example.test:443") {
                    assert_eq!(target.slug, slug);
                }
            }
            yes
        });
    }
    let mut yes = 0;
    while let Some(n) = tasks.join_next().await {
        yes += n.unwrap();
    }
    assert_eq!(yes, 40_000);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        before,
        "160,000 lookups made store calls"
    );
    // A change refreshes the map: one read of the store, not one per ask.
    service
        .remove(&owner, app.slug.as_str(), "shop.example.test")
        .await
        .unwrap();
    assert!(!service.tls_ask("shop.example.test"));
}
