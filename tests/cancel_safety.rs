//! A caller that stops waiting (a client that hangs up drops its handler's
//! future) never leaves the store changed and the cache not: on PostgreSQL
//! a statement sent is committed even if nobody reads its answer. The store
//! here commits, then takes its time to answer, and the caller gives up in
//! between; the change must still reach what `/run` serves.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use picloud::domain::{Deployed, Script, ScriptVersion, ScriptVersionInfo, Visibility};
use picloud::executor::{ExecutorConfig, LazyExecutor};
use picloud::ids::{AdminUserId, AppId};
use picloud::ports::{ScriptRepoError, ScriptRepository, StorageQuota};
use picloud::scripts::ScriptService;
use picloud::store::memory::MemoryStore;
use picloud::{AppService, ScriptName};

/// The memory store's scripts, answering every write late (once `slow`).
struct LateAnswers {
    inner: Arc<dyn ScriptRepository>,
    slow: AtomicBool,
}

impl LateAnswers {
    async fn late<T>(&self, done: T) -> T {
        if self.slow.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        done
    }
}

#[async_trait]
impl ScriptRepository for LateAnswers {
    async fn deploy(
        &self,
        app: AppId,
        name: &ScriptName,
        source: String,
        by: AdminUserId,
        quota: StorageQuota,
    ) -> Result<Deployed, ScriptRepoError> {
        let done = self.inner.deploy(app, name, source, by, quota).await;
        self.late(done).await
    }
    async fn get(&self, app: AppId, name: &ScriptName) -> Result<Option<Script>, ScriptRepoError> {
        self.inner.get(app, name).await
    }
    async fn list(&self, app: AppId) -> Result<Vec<Script>, ScriptRepoError> {
        self.inner.list(app).await
    }
    async fn versions(
        &self,
        app: AppId,
        name: &ScriptName,
    ) -> Result<Vec<ScriptVersionInfo>, ScriptRepoError> {
        self.inner.versions(app, name).await
    }
    async fn version(
        &self,
        app: AppId,
        name: &ScriptName,
        version: u32,
    ) -> Result<Option<ScriptVersion>, ScriptRepoError> {
        self.inner.version(app, name, version).await
    }
    async fn set_live(
        &self,
        app: AppId,
        name: &ScriptName,
        version: u32,
    ) -> Result<Script, ScriptRepoError> {
        let done = self.inner.set_live(app, name, version).await;
        self.late(done).await
    }
    async fn set_visibility(
        &self,
        app: AppId,
        name: &ScriptName,
        visibility: Visibility,
    ) -> Result<Script, ScriptRepoError> {
        let done = self.inner.set_visibility(app, name, visibility).await;
        self.late(done).await
    }
    async fn delete(&self, app: AppId, name: &ScriptName) -> Result<bool, ScriptRepoError> {
        let done = self.inner.delete(app, name).await;
        self.late(done).await
    }
    async fn source_bytes(&self, app: AppId) -> Result<u64, ScriptRepoError> {
        self.inner.source_bytes(app).await
    }
    async fn all_live(&self) -> Result<Vec<(Script, ScriptVersion)>, ScriptRepoError> {
        self.inner.all_live().await
    }
}

/// Runs `work`, giving up after 50 ms (well before the store answers).
async fn hang_up<T>(work: impl std::future::Future<Output = T>) {
    assert!(
        tokio::time::timeout(Duration::from_millis(50), work)
            .await
            .is_err(),
        "the caller was meant to give up first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_the_cache_when_the_caller_gives_up() {
    let mut stores = MemoryStore::new().into_stores();
    let late = Arc::new(LateAnswers {
        inner: stores.scripts.clone(),
        slow: AtomicBool::new(false),
    });
    stores.scripts = late.clone();
    let owner = picloud_core::testkit::Fixture::new(stores.clone())
        .owner()
        .await;
    let executor = Arc::new(LazyExecutor::new(ExecutorConfig::default()));
    let scripts = ScriptService::new(stores.clone(), executor);
    AppService::new(stores.clone())
        .create(&owner, "shop", "Shop")
        .await
        .unwrap();
    scripts.warm().await.unwrap();
    for name in ["x", "gone"] {
        scripts
            .deploy(&owner, "shop", name, "\"v1\"".into())
            .await
            .unwrap();
    }
    late.slow.store(true, Ordering::SeqCst);
    let settle = || tokio::time::sleep(Duration::from_millis(600));

    hang_up(scripts.set_visibility(&owner, "shop", "x", Visibility::Private)).await;
    settle().await;
    let live = scripts.live("shop", "x").await.unwrap();
    assert_eq!(
        live.visibility,
        Visibility::Private,
        "the cache follows the store"
    );

    hang_up(scripts.deploy(&owner, "shop", "x", "\"v2\"".into())).await;
    settle().await;
    assert_eq!(scripts.live("shop", "x").await.unwrap().version, 2);

    hang_up(scripts.rollback(&owner, "shop", "x", 1)).await;
    settle().await;
    assert_eq!(scripts.live("shop", "x").await.unwrap().version, 1);

    hang_up(scripts.delete(&owner, "shop", "gone")).await;
    settle().await;
    assert!(
        scripts.live("shop", "gone").await.is_err(),
        "a deleted script is not served"
    );
}
