//! The scripts service: deploy, list, roll back, show invocations, set an
//! app's limits, and invoke.

use super::host::{OutboundHttp, RunHost};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::cache::{LiveScript, ScriptCache};
use super::credentials::strip_credentials;
use super::tails::{TailGuard, TailRefused, Tails};
use super::writer::InvocationWriter;
use super::{COMPILES_PER_APP, InvokeError, MAX_SOURCE_BYTES, ScriptError};
use crate::authz::Capability;
use crate::domain::{
    App, Deployed, InvocationContext, InvocationRecord, Principal, PublicErrors, Script,
    ScriptName, ScriptVersion, ScriptVersionInfo, Visibility,
};
use crate::executor::{
    CompileBudget, CompileError, CompiledScript, ExecError, Executor, Invocation, Limits,
    ScriptRequest, compile_with,
};
use crate::ids::{AppId, ScriptId};
use crate::ports::{
    INVOCATIONS_KEPT, InvocationFilter, ScriptRepoError, SettingsRepoError, StorageQuota,
};
use crate::stores::Stores;

/// The app's effective limits: its override, or the defaults when it has
/// none. An override that cannot be read (written by a newer version, with
/// a field this one does not know, say) is an error naming the app, never a
/// silent fall-back to the defaults: those may be *higher* than what the
/// app was given. The app's scripts then do not run until an app admin sets
/// its limits again; every other app is served.
fn effective_limits(
    app: AppId,
    stored: Result<Option<Limits>, SettingsRepoError>,
) -> Result<Limits, ScriptError> {
    match stored {
        Ok(limits) => Ok(limits.unwrap_or_default()),
        Err(SettingsRepoError::Unreadable(reason)) => {
            Err(ScriptError::StoredLimits { app, reason })
        }
        Err(e) => Err(ScriptError::Settings(e)),
    }
}

/// Deploys, rolls back and invokes scripts.
#[derive(Clone)]
pub struct ScriptService {
    stores: Stores,
    executor: Arc<dyn Executor>,
    cache: Arc<ScriptCache>,
    writer: InvocationWriter,
    /// One lock per app: serialises that app's deploys, rollbacks, limit
    /// changes and (while warming) compiles on demand, so that the store
    /// write and the cache update of one never interleave with another's
    /// (which could leave an older version cached as live). Taken after
    /// authorization; apps never wait for each other.
    app_locks: Arc<Mutex<HashMap<AppId, Arc<tokio::sync::Mutex<()>>>>>,
    /// [`COMPILES_PER_APP`] permits per app.
    compile_slots: Arc<Mutex<HashMap<AppId, Arc<Semaphore>>>>,
    /// Set once [`ScriptService::warm`] has compiled every live script:
    /// from then on the cache is the whole truth for `/run`.
    warm: Arc<AtomicBool>,
    /// The live tails ([`ScriptService::tail`]): a channel per followed
    /// app, sent to only while someone follows it.
    tails: Arc<Tails>,
    /// Rung when jobs may have become due (an enqueue, an emit, a retry):
    /// the job runner waits on it instead of polling.
    job_signal: Arc<tokio::sync::Notify>,
    /// The environment of each app's runs.
    env: crate::env::EnvService,
    /// Outbound HTTP, if the instance allows it.
    outbound: Option<Arc<dyn OutboundHttp>>,
    /// Rung when a run wrote a key with a TTL.
    kv_signal: Arc<tokio::sync::Notify>,
    /// Each app's allowlist of outbound hosts, as last read (`None` inside:
    /// the app has none).
    egress_hosts: Arc<Mutex<HashMap<AppId, HostList>>>,
    /// Bumped whenever a change drops a cached allowlist: a read that
    /// raced the change does not put the old list back.
    egress_generation: Arc<std::sync::atomic::AtomicU64>,
    /// Permits for scripts' KV calls in flight on this node.
    kv_calls: Arc<Semaphore>,
}

/// One finished run, as a live tail sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailEvent {
    /// The app.
    pub app_id: AppId,
    /// The script's name.
    pub script: String,
    /// Its record, its logs cut to [`TAIL_RECORD_MAX_BYTES`] (the invocation
    /// log keeps the whole record).
    pub record: InvocationRecord,
}

/// The most bytes of logs one [`TailEvent`] carries.
pub const TAIL_RECORD_MAX_BYTES: usize = 64 * 1024;

/// How many runs a slow tail may fall behind before it skips ahead (and is
/// told how many it missed).
pub const TAIL_BACKLOG: usize = 256;

/// What [`LogTail::next`] gives.
#[derive(Debug, Clone)]
pub enum TailItem {
    /// A run of the app (of the script, if the tail names one).
    Run(Arc<TailEvent>),
    /// This many runs were skipped: the tail fell more than
    /// [`TAIL_BACKLOG`] behind.
    Lagged(u64),
    /// The service is gone.
    Closed,
}

/// A live tail of one app's runs: see [`ScriptService::tail`].
#[derive(Debug)]
pub struct LogTail {
    // Dropped in this order: the receiver before the guard that frees the
    // tail's place (and the app's channel, if it was the last).
    rx: tokio::sync::broadcast::Receiver<Arc<TailEvent>>,
    closed: tokio::sync::watch::Receiver<bool>,
    app: App,
    script: Option<ScriptName>,
    _place: TailGuard,
}

impl LogTail {
    /// The app it follows.
    pub fn app(&self) -> &App {
        &self.app
    }

    /// The next run of the app (and script), as it finishes;
    /// [`TailItem::Closed`] once the service closes its tails.
    pub async fn next(&mut self) -> TailItem {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            if *self.closed.borrow_and_update() {
                return TailItem::Closed;
            }
            let received = tokio::select! {
                biased;
                changed = self.closed.changed() => match changed {
                    Ok(()) => continue,
                    Err(_) => return TailItem::Closed,
                },
                received = self.rx.recv() => received,
            };
            match received {
                Ok(event) => {
                    if event.app_id == self.app.id
                        && self
                            .script
                            .as_ref()
                            .is_none_or(|s| s.as_str() == event.script)
                    {
                        return TailItem::Run(event);
                    }
                }
                Err(RecvError::Lagged(n)) => return TailItem::Lagged(n),
                Err(RecvError::Closed) => return TailItem::Closed,
            }
        }
    }
}

/// Finishes `work` even if the caller stops waiting: a client that hangs up
/// drops its handler's future, and a store write dropped in flight may
/// still commit (PostgreSQL runs what it was sent). Run on a task of its
/// own, a store write and the cache update after it are never separated.
pub async fn to_the_end<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    match tokio::spawn(work).await {
        Ok(done) => done,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // The runtime is shutting down: nobody is left to answer.
        Err(_) => std::future::pending().await,
    }
}

/// How strictly a source is compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strictness {
    /// A new deploy: undefined variables are compile errors.
    New,
    /// A stored version compiled again (warm-up, rollback, new limits):
    /// it was accepted once, so only what it was checked for then.
    Stored,
}

/// Compiles on the blocking pool under the compile budget: a source may be
/// up to [`MAX_SOURCE_BYTES`], and parsing it must not stall an async
/// worker. `slot` is held until the compile ends; if this future is dropped
/// (the uploader went away), the compile is cancelled.
async fn compile_off_thread(
    source: String,
    limits: Limits,
    slot: OwnedSemaphorePermit,
    strictness: Strictness,
) -> (String, Result<CompiledScript, CompileError>) {
    /// Cancels the budget when the waiting future is dropped.
    struct CancelOnDrop(CompileBudget);
    impl Drop for CancelOnDrop {
        fn drop(&mut self) {
            self.0.cancel();
        }
    }
    let budget = match strictness {
        Strictness::New => CompileBudget::default(),
        Strictness::Stored => CompileBudget::default().lenient(),
    };
    let _cancel = CancelOnDrop(budget.clone());
    let joined = tokio::task::spawn_blocking(move || {
        let compiled = compile_with(&source, &limits, &budget);
        drop(slot);
        (source, compiled)
    })
    .await;
    match joined {
        Ok(done) => done,
        Err(_) => (
            String::new(),
            Err(CompileError {
                message: "the compiler failed on this script".into(),
                line: None,
                column: None,
                limit: None,
            }),
        ),
    }
}

/// A deleted app's scripts stop answering: the cache forgets them, after
/// any deploy in flight for that app (which holds the app's lock) is done,
/// so no deploy can put them back.
#[async_trait::async_trait]
impl crate::apps::AppListener for ScriptService {
    async fn app_created(&self, app: &App) {
        self.cache.add_app(app.slug.as_str());
        self.cache.note_app(app.id, app.slug.as_str());
    }

    async fn app_deleted(&self, app: &App) {
        // At once (in the poll that saw the store's delete finish), then
        // again after any deploy in flight, which may have cached a script.
        self.cache.remove_app(app.slug.as_str());
        self.env.forget(app.id);
        self.egress_hosts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&app.id);
        let lock = self.app_lock(app.id);
        let _serial = lock.lock().await;
        self.cache.remove_app(app.slug.as_str());
        self.compile_slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&app.id);
        drop(_serial);
        self.app_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&app.id);
    }
}

impl std::fmt::Debug for ScriptService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptService")
            .field("cached", &self.cache.len())
            .finish_non_exhaustive()
    }
}

/// Which of an app's invocations [`ScriptService::app_invocations`] reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppInvocationsQuery {
    /// Only this script's (by name).
    pub script: Option<String>,
    /// Only those that answered this HTTP status.
    pub status: Option<u16>,
    /// Only those that started at or after this time.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only those of this request id.
    pub request_id: Option<String>,
    /// At most this many, the newest (clamped to 1 to [`INVOCATIONS_KEPT`]).
    pub limit: usize,
}

/// An app's allowlist of outbound hosts as cached (`None`: it has none).
type HostList = Option<Arc<[String]>>;

/// An app's settings beyond its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSettings {
    /// How much of a script error public callers see.
    pub public_errors: PublicErrors,
    /// The hosts its scripts may call (`None`: any the instance's egress
    /// rule allows).
    pub egress_hosts: Option<Vec<String>>,
}

/// The fields of a settings change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsPatch {
    /// New public error detail.
    pub public_errors: Option<PublicErrors>,
    /// A new allowlist of outbound hosts (`Some(None)` clears it).
    pub egress_hosts: Option<Option<Vec<String>>>,
}

/// A script with its versions, for the admin API.
#[derive(Debug, Clone)]
pub struct ScriptDetail {
    /// The script.
    pub script: Script,
    /// Every version, oldest first: metadata only, no source.
    pub versions: Vec<ScriptVersionInfo>,
}

/// An app's storage: what it uses and what it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageUsage {
    /// The bytes of script source it stores, every version counted.
    pub source_bytes: u64,
    /// Its bounds.
    pub quota: StorageQuota,
}

impl ScriptService {
    /// A service over `stores`, running scripts on `executor`. Starts the
    /// invocation writer: call it inside a tokio runtime. The cache starts
    /// empty: call [`ScriptService::warm`] before serving.
    pub fn new(stores: Stores, executor: Arc<dyn Executor>) -> Self {
        let writer = InvocationWriter::start(&stores);
        let stores_for_env = stores.clone();
        Self {
            stores,
            executor,
            cache: Arc::new(ScriptCache::default()),
            writer,
            app_locks: Arc::default(),
            compile_slots: Arc::default(),
            warm: Arc::new(AtomicBool::new(false)),
            tails: Arc::default(),
            job_signal: Arc::default(),
            env: crate::env::EnvService::new(stores_for_env, None),
            outbound: None,
            kv_signal: Arc::default(),
            egress_hosts: Arc::default(),
            egress_generation: Arc::default(),
            kv_calls: Arc::new(Semaphore::new(super::host::KV_CALLS_AT_ONCE)),
        }
    }

    /// Uses `env` for the runs' environment (one made with the instance's
    /// master key; the default has none, so secrets cannot be written).
    #[must_use]
    pub fn with_env(mut self, env: crate::env::EnvService) -> Self {
        self.env = env;
        self
    }

    /// Lets scripts make outbound HTTP requests through `outbound`
    /// (without it, `http::…` is a script error saying it is off).
    #[must_use]
    pub fn with_outbound(mut self, outbound: Arc<dyn OutboundHttp>) -> Self {
        self.outbound = Some(outbound);
        self
    }

    /// The env service the runs read their environment from.
    pub fn env(&self) -> &crate::env::EnvService {
        &self.env
    }

    /// The signal rung when a script wrote a KV key with a TTL (the KV
    /// sweeper waits on it).
    pub fn kv_signal(&self) -> &Arc<tokio::sync::Notify> {
        &self.kv_signal
    }

    /// The signal rung when jobs may have become due; the job runner of
    /// this node waits on it (see `events::JobRunner`).
    pub fn job_signal(&self) -> &Arc<tokio::sync::Notify> {
        &self.job_signal
    }

    /// The stores this service runs on.
    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// Whether [`warm`](Self::warm) has finished: until then a `/run` of a
    /// live script that is not cached yet compiles it on demand.
    pub fn is_warm(&self) -> bool {
        self.warm.load(Ordering::Acquire)
    }

    /// The lock of one app's script changes.
    fn app_lock(&self, app: AppId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .app_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(locks.entry(app).or_default())
    }

    /// Compiles `source` for `app`, within its compile slots. `Strictness::New`
    /// refuses undefined variables; `Stored` (a version accepted before, being
    /// compiled again) lets them through, as when it was deployed.
    async fn compile_for(
        &self,
        app: AppId,
        source: String,
        limits: Limits,
        strictness: Strictness,
    ) -> (String, Result<CompiledScript, CompileError>) {
        let slots = {
            let mut map = self
                .compile_slots
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            Arc::clone(
                map.entry(app)
                    .or_insert_with(|| Arc::new(Semaphore::new(COMPILES_PER_APP))),
            )
        };
        let Ok(slot) = slots.acquire_owned().await else {
            // The semaphore is never closed.
            return (
                source,
                Err(CompileError {
                    message: "the compiler is not available".into(),
                    line: None,
                    column: None,
                    limit: None,
                }),
            );
        };
        compile_off_thread(source, limits, slot, strictness).await
    }

    /// The executor's load and the paths its runs took (inline or pool),
    /// when it counts them.
    pub fn executor_stats(&self) -> Option<crate::executor::ExecutorStats> {
        self.executor.stats()
    }

    /// The cache of live scripts.
    pub fn cache(&self) -> &ScriptCache {
        &self.cache
    }

    /// The invocation writer.
    pub fn writer(&self) -> &InvocationWriter {
        &self.writer
    }

    /// Compiles every script's live version into the cache, app by app
    /// under each app's lock (a deploy meanwhile is never overwritten by an
    /// older version), then marks the service warm. Scripts that no longer
    /// compile (limits tightened since) are skipped and returned. Meant to
    /// run in the background while the server already serves: `/run`
    /// compiles what it needs on demand until then.
    pub async fn warm(&self) -> Result<Vec<(AppId, String, CompileError)>, ScriptError> {
        let mut failed = Vec::new();
        for app in self.stores.apps.list().await? {
            let errors = match self.stores.settings.public_errors(app.id).await {
                Ok(errors) => errors,
                // Say less rather than more.
                Err(SettingsRepoError::Unreadable(why)) => {
                    tracing::error!(app = %app.slug, %why, "public_errors unreadable: answering generic errors");
                    PublicErrors::Generic
                }
                Err(e) => return Err(ScriptError::Settings(e)),
            };
            self.cache.set_public_errors(app.slug.as_str(), errors);
            self.cache.note_app(app.id, app.slug.as_str());
            let lock = self.app_lock(app.id);
            let _serial = lock.lock().await;
            let limits = match self.app_limits(app.id).await {
                Ok(limits) => limits,
                // This app is not served; the others are.
                Err(e @ ScriptError::StoredLimits { .. }) => {
                    tracing::error!(app = %app.slug, error = %e, "app's scripts not served");
                    continue;
                }
                Err(e) => return Err(e),
            };
            for script in self.stores.scripts.list(app.id).await? {
                if self
                    .cache
                    .get(app.slug.as_str(), script.name.as_str())
                    .is_some_and(|live| live.version == script.live_version)
                {
                    continue; // compiled on demand already
                }
                if let Err(e) = self.cache_live(&app, &script, limits).await? {
                    failed.push((app.id, script.name.to_string(), e));
                }
            }
        }
        self.warm.store(true, Ordering::Release);
        Ok(failed)
    }

    /// The live script `name` of the app `slug` when the cache does not have
    /// it yet (the service is still warming): read from the store and
    /// compiled now, under the app's lock.
    async fn load_live(
        &self,
        slug: &str,
        name: &str,
    ) -> Result<Option<Arc<LiveScript>>, ScriptError> {
        // By slug only, as `/run` names apps once warm (an id would reach
        // the app only while warming, under other settings).
        let Some(app) = self.stores.apps.find_by_slug(slug).await? else {
            return Ok(None);
        };
        if self.cache.public_errors(slug).is_none() {
            let errors = self
                .stores
                .settings
                .public_errors(app.id)
                .await
                .unwrap_or(PublicErrors::Generic);
            self.cache.set_public_errors(slug, errors);
        }
        let Ok(name) = ScriptName::parse_stored(name) else {
            return Ok(None);
        };
        let lock = self.app_lock(app.id);
        let _serial = lock.lock().await;
        if let Some(live) = self.cache.get(app.slug.as_str(), name.as_str()) {
            return Ok(Some(live));
        }
        let Some(script) = self.stores.scripts.get(app.id, &name).await? else {
            return Ok(None);
        };
        let limits = self.app_limits(app.id).await?;
        self.cache_live(&app, &script, limits)
            .await?
            .map_err(ScriptError::Compile)?;
        Ok(self.cache.get(app.slug.as_str(), name.as_str()))
    }

    /// Recompiles one script's live version into the cache (after another
    /// node deployed or rolled it back).
    pub async fn refresh(&self, app: &App, name: &ScriptName) -> Result<(), ScriptError> {
        let Some(script) = self.stores.scripts.get(app.id, name).await? else {
            return Ok(());
        };
        let limits = self.app_limits(app.id).await?;
        self.cache_live(app, &script, limits)
            .await?
            .map_err(ScriptError::Compile)
    }

    /// Brings what this node caches of the app `id` up to date with the
    /// store, after another node changed it (cluster mode): the app itself
    /// (deleted or renamed), its public error detail, its outbound hosts,
    /// its environment, and each script's live version under its limits.
    /// Scripts whose version, limits and visibility are as cached are left
    /// alone; scripts gone from the store leave the cache.
    pub async fn sync_app(&self, id: AppId) -> Result<(), ScriptError> {
        self.env.forget(id);
        self.forget_egress_hosts(id);
        let cached_slug = self.cache.slug_of(id);
        let Some(app) = self.stores.apps.get(id).await? else {
            if let Some(slug) = cached_slug {
                let lock = self.app_lock(id);
                let _serial = lock.lock().await;
                self.cache.remove_app(&slug);
            }
            return Ok(());
        };
        let lock = self.app_lock(id);
        let _serial = lock.lock().await;
        let slug = app.slug.as_str();
        if let Some(old) = cached_slug.filter(|old| old != slug) {
            self.cache.remove_app(&old);
        }
        if self
            .cache
            .scripts_of(slug)
            .iter()
            .any(|live| live.app_id != id)
        {
            // The slug named another app, deleted since.
            self.cache.remove_app(slug);
        }
        let errors = match self.stores.settings.public_errors(id).await {
            Ok(errors) => errors,
            Err(SettingsRepoError::Unreadable(_)) => PublicErrors::Generic,
            Err(e) => return Err(ScriptError::Settings(e)),
        };
        self.cache.set_public_errors(slug, errors);
        self.cache.note_app(id, slug);
        let scripts = self.stores.scripts.list(id).await?;
        let limits = match self.app_limits(id).await {
            Ok(limits) => limits,
            Err(e @ ScriptError::StoredLimits { .. }) => {
                // Not served anywhere until its limits are set again.
                tracing::error!(app = %slug, error = %e, "app's scripts not served");
                for live in self.cache.scripts_of(slug) {
                    self.cache.remove(slug, &live.name);
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        for live in self.cache.scripts_of(slug) {
            if !scripts.iter().any(|s| s.name.as_str() == live.name) {
                self.cache.remove(slug, &live.name);
            }
        }
        for script in &scripts {
            let cached = self.cache.get(slug, script.name.as_str());
            match cached {
                // The same script (a deleted and redeployed one starts its
                // versions at 1 again) at the same version and limits.
                Some(live)
                    if live.script_id == script.id
                        && live.app_id == app.id
                        && live.version == script.live_version
                        && live.limits == limits =>
                {
                    if live.visibility != script.visibility {
                        self.cache
                            .set_visibility(slug, script.name.as_str(), script.visibility);
                    }
                }
                _ => {
                    if let Err(e) = self.cache_live(&app, script, limits).await? {
                        tracing::warn!(app = %slug, script = %script.name, error = %e,
                            "live script no longer compiles; not served");
                        self.cache.remove(slug, script.name.as_str());
                    }
                }
            }
        }
        Ok(())
    }

    /// Re-reads every app (cluster mode, after this node may have missed
    /// changes): apps gone from the store leave the cache, and every other
    /// is [`sync_app`](Self::sync_app)ed.
    pub async fn resync(&self) -> Result<(), ScriptError> {
        for app in self.forget_stale_apps().await? {
            self.sync_app(app.id).await?;
        }
        Ok(())
    }

    /// The first half of [`resync`](Self::resync): drops every app the
    /// cache holds that the store no longer has (or whose slug now names
    /// another app), and returns the store's apps, each to be
    /// [`sync_app`](Self::sync_app)ed (a cluster node does that on a task
    /// per app, so one app's slow compile holds up no other).
    pub async fn forget_stale_apps(&self) -> Result<Vec<App>, ScriptError> {
        let apps = self.stores.apps.list().await?;
        for slug in self.cache.app_slugs() {
            // Gone, or the slug now names another app (deleted and made
            // again meanwhile): nothing cached under it may stay.
            let now = apps.iter().find(|a| a.slug.as_str() == slug);
            let stale = match now {
                None => true,
                Some(app) => self
                    .cache
                    .scripts_of(&slug)
                    .iter()
                    .any(|live| live.app_id != app.id),
            };
            if stale {
                let lock = now.map(|app| self.app_lock(app.id));
                let _serial = match &lock {
                    Some(lock) => Some(lock.lock().await),
                    None => None,
                };
                self.cache.remove_app(&slug);
            }
        }
        Ok(apps)
    }

    /// Whether someone on this node follows the app's runs (a live tail).
    pub fn is_followed(&self, app: AppId) -> bool {
        self.tails.is_followed(app)
    }

    /// Shows a run that another node recorded to this node's tails of its
    /// app (cluster mode).
    pub fn publish_remote(&self, app: AppId, script: String, record: &InvocationRecord) {
        self.tails.send(app, || TailEvent {
            app_id: app,
            script,
            record: crate::ports::fit_record_copy(record, TAIL_RECORD_MAX_BYTES),
        });
    }

    /// Compiles `script`'s live version under `limits` into the cache. A
    /// live version the store no longer has leaves the cache as it is; a
    /// compile error is the inner `Err`.
    async fn cache_live(
        &self,
        app: &App,
        script: &Script,
        limits: Limits,
    ) -> Result<Result<(), CompileError>, ScriptError> {
        let Some(version) = self
            .stores
            .scripts
            .version(app.id, &script.name, script.live_version)
            .await?
        else {
            return Ok(Ok(()));
        };
        let (_, compiled) = self
            .compile_for(app.id, version.source, limits, Strictness::Stored)
            .await;
        Ok(compiled.map(|compiled| {
            self.cache
                .put(app, script, version.version, compiled, limits);
        }))
    }

    async fn app_limits(&self, app: AppId) -> Result<Limits, ScriptError> {
        effective_limits(app, self.stores.settings.app_limits(app).await)
    }

    async fn authorized_app(
        &self,
        principal: &Principal,
        ident: &str,
        capability: fn(AppId) -> Capability,
    ) -> Result<App, ScriptError> {
        let app =
            crate::authz::resolve_and_require(&self.stores, principal, ident, capability).await?;
        Ok(app)
    }

    /// Resolves the app, requires `capability` on it, and finds the script.
    async fn authorized_script(
        &self,
        principal: &Principal,
        app: &str,
        name: &str,
        capability: fn(AppId) -> Capability,
    ) -> Result<(App, Script), ScriptError> {
        let app = self.authorized_app(principal, app, capability).await?;
        let name = Self::existing_name(name)?;
        let script = self
            .stores
            .scripts
            .get(app.id, &name)
            .await?
            .ok_or_else(|| ScriptError::ScriptNotFound(name.to_string()))?;
        Ok((app, script))
    }

    /// A name for a new script (or a new version): the name rule.
    fn name(name: &str) -> Result<ScriptName, ScriptError> {
        ScriptName::parse(name).map_err(|e| ScriptError::Invalid(e.to_string()))
    }

    /// The name of a script that may exist already: also the wider rule of
    /// earlier versions, so such a script can still be read, rolled back and
    /// deleted.
    fn existing_name(name: &str) -> Result<ScriptName, ScriptError> {
        ScriptName::parse_stored(name).map_err(|e| ScriptError::Invalid(e.to_string()))
    }

    /// Deploys `source` as the new live version of `name` (`AppEdit`). The
    /// source is compiled first, strictly (an undefined variable is a
    /// compile error): a compile error stores nothing. An empty source, or
    /// one with no statements, is refused. The live version's own source is
    /// `unchanged`: nothing is stored and no version is made.
    pub async fn deploy(
        &self,
        principal: &Principal,
        app: &str,
        name: &str,
        source: String,
    ) -> Result<Deployed, ScriptError> {
        let app = self
            .authorized_app(principal, app, Capability::AppEdit)
            .await?;
        let name = Self::name(name)?;
        if source.len() > MAX_SOURCE_BYTES {
            return Err(ScriptError::Invalid(format!(
                "script source must be at most {MAX_SOURCE_BYTES} bytes"
            )));
        }
        if source.contains('\0') {
            // No store need keep NUL in text (PostgreSQL cannot), and a
            // script never needs it: "\0" in a literal is an escape.
            return Err(ScriptError::Invalid(
                "script source must not contain NUL characters".into(),
            ));
        }
        if source.trim().is_empty() {
            return Err(ScriptError::Invalid(
                "script source is empty: send the file's bytes \
                 (`--data-binary @file.rhai -H 'content-type: text/plain'`, or `picloud deploy`)"
                    .into(),
            ));
        }
        let serial = self.app_lock(app.id).lock_owned().await;
        // The same source as the live version: nothing new to store.
        if let Some(existing) = self.stores.scripts.get(app.id, &name).await?
            && let Some(live) = self
                .stores
                .scripts
                .version(app.id, &name, existing.live_version)
                .await?
            && live.source == source
        {
            return Ok(Deployed {
                script: existing,
                version: live,
                created: false,
                unchanged: true,
            });
        }
        let limits = self.app_limits(app.id).await?;
        let (source, compiled) = self
            .compile_for(app.id, source, limits, Strictness::New)
            .await;
        let compiled = compiled.map_err(ScriptError::Compile)?;
        if compiled.ast().statements().is_empty() {
            // Only comments (or only functions): every call would be a 204.
            // The usual cause is `curl -d @file`, which strips the newlines
            // so that a leading `//` comment swallows the whole script.
            return Err(ScriptError::Invalid(
                "script has no statements to run (is it all one comment? `curl -d` strips \
                 newlines: send the file with `--data-binary @file.rhai -H 'content-type: text/plain'`)"
                    .into(),
            ));
        }
        let this = self.clone();
        let user = principal.user_id;
        to_the_end(async move {
            let _serial = serial;
            let deployed = this
                .stores
                .scripts
                .deploy(app.id, &name, source, user, StorageQuota::default())
                .await
                .map_err(|e| match e {
                    ScriptRepoError::NotFound => ScriptError::AppNotFound(app.slug.to_string()),
                    ScriptRepoError::QuotaExceeded(q) => ScriptError::QuotaExceeded(q),
                    other => other.into(),
                })?;
            this.cache.put(
                &app,
                &deployed.script,
                deployed.version.version,
                compiled,
                limits,
            );
            Ok(deployed)
        })
        .await
    }

    /// The app's scripts (`AppView`).
    pub async fn list(&self, principal: &Principal, app: &str) -> Result<Vec<Script>, ScriptError> {
        let app = self
            .authorized_app(principal, app, Capability::AppView)
            .await?;
        Ok(self.stores.scripts.list(app.id).await?)
    }

    /// A script and its versions (`AppView`).
    pub async fn detail(
        &self,
        principal: &Principal,
        app: &str,
        name: &str,
    ) -> Result<ScriptDetail, ScriptError> {
        let (app, script) = self
            .authorized_script(principal, app, name, Capability::AppView)
            .await?;
        let versions = self.stores.scripts.versions(app.id, &script.name).await?;
        Ok(ScriptDetail { script, versions })
    }

    /// Deletes a script with every version and its invocation logs
    /// (`AppEdit`), freeing their bytes of the app's storage quota, and
    /// stops serving it. Idempotent: returns whether the script existed.
    pub async fn delete(
        &self,
        principal: &Principal,
        app: &str,
        name: &str,
    ) -> Result<bool, ScriptError> {
        let app = self
            .authorized_app(principal, app, Capability::AppEdit)
            .await?;
        let name = Self::existing_name(name)?;
        // Serialised with deploys, so that none re-caches what is deleted.
        let serial = self.app_lock(app.id).lock_owned().await;
        let this = self.clone();
        to_the_end(async move {
            let _serial = serial;
            let existed = this.stores.scripts.delete(app.id, &name).await?;
            this.cache.remove(app.slug.as_str(), name.as_str());
            Ok(existed)
        })
        .await
    }

    /// The app's script storage and its quota (`AppView`).
    pub async fn usage(
        &self,
        principal: &Principal,
        app: &str,
    ) -> Result<StorageUsage, ScriptError> {
        let app = self
            .authorized_app(principal, app, Capability::AppView)
            .await?;
        Ok(StorageUsage {
            source_bytes: self.stores.scripts.source_bytes(app.id).await?,
            quota: StorageQuota::default(),
        })
    }

    /// One version's source, with its script (`AppView`).
    pub async fn version(
        &self,
        principal: &Principal,
        app: &str,
        name: &str,
        version: u32,
    ) -> Result<(Script, ScriptVersion), ScriptError> {
        let (app, script) = self
            .authorized_script(principal, app, name, Capability::AppView)
            .await?;
        let found = self
            .stores
            .scripts
            .version(app.id, &script.name, version)
            .await?
            .ok_or(ScriptError::VersionNotFound(version))?;
        Ok((script, found))
    }

    /// Makes an older (or newer) version live again (`AppEdit`). It is
    /// recompiled under the app's current limits first.
    pub async fn rollback(
        &self,
        principal: &Principal,
        app: &str,
        name: &str,
        version: u32,
    ) -> Result<Script, ScriptError> {
        let (app, script) = self
            .authorized_script(principal, app, name, Capability::AppEdit)
            .await?;
        let serial = self.app_lock(app.id).lock_owned().await;
        let name = script.name;
        let old = self
            .stores
            .scripts
            .version(app.id, &name, version)
            .await?
            .ok_or(ScriptError::VersionNotFound(version))?;
        let limits = self.app_limits(app.id).await?;
        let (_, compiled) = self
            .compile_for(app.id, old.source, limits, Strictness::Stored)
            .await;
        let compiled = compiled.map_err(ScriptError::Compile)?;
        let this = self.clone();
        to_the_end(async move {
            let _serial = serial;
            let script = this
                .stores
                .scripts
                .set_live(app.id, &name, version)
                .await
                .map_err(|e| match e {
                    ScriptRepoError::NotFound => ScriptError::VersionNotFound(version),
                    other => other.into(),
                })?;
            this.cache.put(&app, &script, version, compiled, limits);
            Ok(script)
        })
        .await
    }

    /// The newest invocations of a script, with their logs (`AppView`).
    pub async fn invocations(
        &self,
        principal: &Principal,
        app: &str,
        name: &str,
        limit: usize,
    ) -> Result<Vec<InvocationRecord>, ScriptError> {
        let (_, script) = self
            .authorized_script(principal, app, name, Capability::AppView)
            .await?;
        Ok(self
            .stores
            .invocations
            .recent(script.id, limit.clamp(1, INVOCATIONS_KEPT))
            .await?)
    }

    /// The app's newest invocations across its scripts (`AppView`), newest
    /// first, each with its script's name: only `script`'s when given (an
    /// unknown name is [`ScriptError::ScriptNotFound`]), only those that
    /// answered `status`, started at or after `since`, or carry
    /// `request_id`. At most `limit` (1 to [`INVOCATIONS_KEPT`]).
    pub async fn app_invocations(
        &self,
        principal: &Principal,
        app: &str,
        query: AppInvocationsQuery,
    ) -> Result<Vec<(ScriptName, InvocationRecord)>, ScriptError> {
        let app = self
            .authorized_app(principal, app, Capability::AppView)
            .await?;
        let names: HashMap<ScriptId, ScriptName> = self
            .stores
            .scripts
            .list(app.id)
            .await?
            .into_iter()
            .map(|s| (s.id, s.name))
            .collect();
        let script = match &query.script {
            None => None,
            Some(name) => {
                let name = Self::existing_name(name)?;
                Some(
                    names
                        .iter()
                        .find(|(_, n)| **n == name)
                        .map(|(id, _)| *id)
                        .ok_or_else(|| ScriptError::ScriptNotFound(name.to_string()))?,
                )
            }
        };
        let filter = InvocationFilter {
            script,
            status: query.status,
            // To the microsecond, as records are stored (PostgreSQL would
            // round a finer time; the memory store would compare it whole).
            since: query
                .since
                .map(|t| chrono::SubsecRound::trunc_subsecs(t, 6)),
            request_id: query.request_id,
            limit: query.limit.clamp(1, INVOCATIONS_KEPT),
        };
        let records = self.stores.invocations.query(app.id, &filter).await?;
        Ok(records
            .into_iter()
            .filter_map(|r| names.get(&r.script_id).cloned().map(|n| (n, r)))
            .collect())
    }

    /// Sets who may call the script `name` (`AppEdit`); it applies to the
    /// next call.
    pub async fn set_visibility(
        &self,
        principal: &Principal,
        app: &str,
        name: &str,
        visibility: Visibility,
    ) -> Result<Script, ScriptError> {
        let (app, script) = self
            .authorized_script(principal, app, name, Capability::AppEdit)
            .await?;
        let serial = self.app_lock(app.id).lock_owned().await;
        let this = self.clone();
        to_the_end(async move {
            let _serial = serial;
            let script = this
                .stores
                .scripts
                .set_visibility(app.id, &script.name, visibility)
                .await
                .map_err(|e| match e {
                    ScriptRepoError::NotFound => {
                        ScriptError::ScriptNotFound(script.name.to_string())
                    }
                    other => other.into(),
                })?;
            this.cache
                .set_visibility(app.slug.as_str(), script.name.as_str(), visibility);
            Ok(script)
        })
        .await
    }

    /// Whether `caller` may call `live`: anyone may call a public script; a
    /// private one needs a caller (else [`InvokeError::Unauthenticated`])
    /// holding `AppView` on its app (else [`InvokeError::Forbidden`]).
    pub async fn admit(
        &self,
        live: &LiveScript,
        caller: Option<&Principal>,
    ) -> Result<(), InvokeError> {
        if live.visibility == Visibility::Public {
            return Ok(());
        }
        let Some(caller) = caller else {
            return Err(InvokeError::Unauthenticated);
        };
        match crate::authz::require(
            self.stores.authz.as_ref(),
            caller,
            Capability::AppView(live.app_id),
        )
        .await
        {
            Ok(()) => Ok(()),
            Err(crate::authz::AuthzDenied::Denied) => Err(InvokeError::Forbidden),
            Err(e) => Err(InvokeError::Exec(ExecError::Internal(e.to_string()))),
        }
    }

    /// How much of a script error the app's public callers see (`AppView`).
    pub async fn public_errors(
        &self,
        principal: &Principal,
        app: &str,
    ) -> Result<PublicErrors, ScriptError> {
        let app = self
            .authorized_app(principal, app, Capability::AppView)
            .await?;
        self.stores
            .settings
            .public_errors(app.id)
            .await
            .map_err(ScriptError::Settings)
    }

    /// The app's settings (AppView): how much of a script error public
    /// callers see, and its allowlist of outbound hosts.
    pub async fn settings(
        &self,
        principal: &Principal,
        app: &str,
    ) -> Result<AppSettings, ScriptError> {
        let app = self
            .authorized_app(principal, app, Capability::AppView)
            .await?;
        self.read_settings(app.id).await
    }

    async fn read_settings(&self, app: AppId) -> Result<AppSettings, ScriptError> {
        let settings = &self.stores.settings;
        Ok(AppSettings {
            public_errors: settings
                .public_errors(app)
                .await
                .map_err(ScriptError::Settings)?,
            egress_hosts: settings
                .egress_hosts(app)
                .await
                .map_err(ScriptError::Settings)?,
        })
    }

    /// Changes the fields of `patch` that are set (AppAdmin, even when none
    /// is), and answers the settings now. Hosts are checked first
    /// ([`validate_egress_hosts`](crate::domain::validate_egress_hosts); a
    /// bad one is [`ScriptError::Invalid`] and nothing changes).
    pub async fn patch_settings(
        &self,
        principal: &Principal,
        app: &str,
        patch: SettingsPatch,
    ) -> Result<AppSettings, ScriptError> {
        // The caller's right first, then the input: an editor learns
        // nothing about what a valid change would be.
        let app_ident = app;
        let app = self
            .authorized_app(principal, app_ident, Capability::AppAdmin)
            .await?;
        let hosts = match &patch.egress_hosts {
            Some(Some(hosts)) => Some(Some(
                crate::domain::validate_egress_hosts(hosts).map_err(ScriptError::Invalid)?,
            )),
            Some(None) => Some(None),
            None => None,
        };
        if let Some(errors) = patch.public_errors {
            self.set_public_errors(principal, app_ident, errors).await?;
        }
        if let Some(hosts) = hosts {
            let this = self.clone();
            let id = app.id;
            let slug = app.slug.to_string();
            to_the_end(async move {
                this.stores
                    .settings
                    .set_egress_hosts(id, hosts.clone())
                    .await
                    .map_err(|e| match e {
                        SettingsRepoError::NotFound => ScriptError::AppNotFound(slug),
                        other => ScriptError::Settings(other),
                    })?;
                // Read again by the next run (a run that read the old list
                // meanwhile cannot put it back).
                this.forget_egress_hosts(id);
                Ok::<(), ScriptError>(())
            })
            .await?;
        }
        self.read_settings(app.id).await
    }

    /// The allowlist of outbound hosts of `app` for a run: cached, or read
    /// once. A store that cannot say gives an empty list (no host) for this
    /// run, rather than no list (any host).
    /// Drops the cached allowlist of `app` (it changed).
    fn forget_egress_hosts(&self, app: AppId) {
        let mut cache = self
            .egress_hosts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.egress_generation.fetch_add(1, Ordering::AcqRel);
        cache.remove(&app);
    }

    async fn egress_hosts_of(&self, app: AppId) -> Option<Arc<[String]>> {
        let generation = self.egress_generation.load(Ordering::Acquire);
        if let Some(hosts) = self
            .egress_hosts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&app)
        {
            return hosts.clone();
        }
        match self.stores.settings.egress_hosts(app).await {
            Ok(hosts) => {
                let hosts: Option<Arc<[String]>> = hosts.map(Arc::from);
                let mut cache = self
                    .egress_hosts
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if cache.len() >= 10_000 {
                    cache.clear();
                }
                // Not if a change dropped a list since this read began.
                if self.egress_generation.load(Ordering::Acquire) == generation {
                    cache.insert(app, hosts.clone());
                }
                hosts
            }
            Err(e) => {
                tracing::warn!(%app, error = %e, "reading an app's egress hosts failed; none allowed for this run");
                Some(Arc::from(Vec::new()))
            }
        }
    }

    /// Sets how much of a script error the app's public callers see
    /// (`AppAdmin`); `/run` answers by it from the next error on.
    pub async fn set_public_errors(
        &self,
        principal: &Principal,
        app: &str,
        errors: PublicErrors,
    ) -> Result<PublicErrors, ScriptError> {
        let app = self
            .authorized_app(principal, app, Capability::AppAdmin)
            .await?;
        let serial = self.app_lock(app.id).lock_owned().await;
        let this = self.clone();
        to_the_end(async move {
            let _serial = serial;
            this.stores
                .settings
                .set_public_errors(app.id, errors)
                .await
                .map_err(|e| match e {
                    SettingsRepoError::NotFound => ScriptError::AppNotFound(app.slug.to_string()),
                    other => ScriptError::Settings(other),
                })?;
            this.cache.set_public_errors(app.slug.as_str(), errors);
            Ok(errors)
        })
        .await
    }

    /// The public error detail `/run` answers with for the app `slug`: from
    /// memory, except for an app this node has not seen yet (one read).
    pub async fn public_errors_of(&self, slug: &str) -> PublicErrors {
        if let Some(errors) = self.cache.public_errors(slug) {
            return errors;
        }
        match self.stores.apps.find_by_slug(slug).await {
            Ok(Some(app)) => match self.stores.settings.public_errors(app.id).await {
                Ok(errors) => {
                    self.cache.set_public_errors(slug, errors);
                    errors
                }
                // Unknown: say less rather than more.
                Err(_) => PublicErrors::Generic,
            },
            // No such app: nothing of it to show either way.
            Ok(None) | Err(_) => PublicErrors::Generic,
        }
    }

    /// Follows the app's runs as they finish (`AppView`), only `script`'s
    /// when given (an unknown name is [`ScriptError::ScriptNotFound`]).
    /// Runs of this node, and in a cluster those the other nodes record
    /// (see [`publish_remote`](Self::publish_remote)); a tail that falls
    /// [`TAIL_BACKLOG`] behind
    /// skips ahead. Check [`still_may_view`](Self::still_may_view) now and
    /// then: the caller's role may change while it follows.
    pub async fn tail(
        &self,
        principal: &Principal,
        app: &str,
        script: Option<&str>,
    ) -> Result<LogTail, ScriptError> {
        let app = self
            .authorized_app(principal, app, Capability::AppView)
            .await?;
        let script = match script {
            None => None,
            Some(name) => {
                let name = Self::existing_name(name)?;
                if self.stores.scripts.get(app.id, &name).await?.is_none() {
                    return Err(ScriptError::ScriptNotFound(name.to_string()));
                }
                Some(name)
            }
        };
        let (rx, closed, place) =
            self.tails
                .subscribe(app.id, principal.user_id)
                .map_err(|refused| match refused {
                    TailRefused::Full => ScriptError::TailsFull,
                    TailRefused::PerUser => ScriptError::TooManyTails,
                })?;
        Ok(LogTail {
            rx,
            closed,
            app,
            script,
            _place: place,
        })
    }

    /// Ends every live tail, now and later (a server that shuts down calls
    /// it first, so that no log stream holds its connection open until the
    /// grace period runs out).
    pub fn close_tails(&self) {
        self.tails.close();
    }

    /// Whether `principal`'s user, as the store has it now (still active,
    /// with its current instance role and memberships; the token's scope
    /// kept), may still see `app`: for a long-lived [`tail`](Self::tail).
    pub async fn still_may_view(&self, principal: &Principal, app: &App) -> bool {
        let Ok(Some(user)) = self.stores.users.get(principal.user_id).await else {
            return false;
        };
        if !user.is_active || !matches!(self.stores.apps.get(app.id).await, Ok(Some(_))) {
            return false;
        }
        let now = Principal {
            instance_role: user.instance_role,
            is_active: user.is_active,
            ..*principal
        };
        crate::authz::require(
            self.stores.authz.as_ref(),
            &now,
            Capability::AppView(app.id),
        )
        .await
        .is_ok()
    }

    /// The app's effective limits (`AppView`).
    pub async fn limits(&self, principal: &Principal, app: &str) -> Result<Limits, ScriptError> {
        let app = self
            .authorized_app(principal, app, Capability::AppView)
            .await?;
        self.app_limits(app.id).await
    }

    /// Sets the app's limits (`AppAdmin`); they apply to the next invocation.
    pub async fn set_limits(
        &self,
        principal: &Principal,
        app: &str,
        limits: Limits,
    ) -> Result<Limits, ScriptError> {
        let app = self
            .authorized_app(principal, app, Capability::AppAdmin)
            .await?;
        self.change_limits(&app, |_| Ok(limits)).await
    }

    /// Changes only the limits named in `patch` (`AppAdmin`), a JSON object
    /// of [`Limits`] fields (`{"wall_clock_ms": 5000}`); the others keep
    /// their current values. Read, merge and write happen under the app's
    /// lock, so concurrent patches of different fields all hold.
    pub async fn patch_limits(
        &self,
        principal: &Principal,
        app: &str,
        patch: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Limits, ScriptError> {
        let app = self
            .authorized_app(principal, app, Capability::AppAdmin)
            .await?;
        self.change_limits(&app, |current| {
            let current = current.map_err(|e| match e {
                ScriptError::StoredLimits { reason, .. } => ScriptError::Invalid(format!(
                    "the app's stored limits cannot be read ({reason}): set all of them with PUT"
                )),
                other => other,
            })?;
            let mut merged = match serde_json::to_value(current) {
                Ok(serde_json::Value::Object(map)) => map,
                _ => serde_json::Map::new(),
            };
            merged.extend(patch);
            serde_json::from_value(serde_json::Value::Object(merged))
                .map_err(|e| ScriptError::Invalid(format!("limits: {e}")))
        })
        .await
    }

    /// Replaces the app's limits with `change(current)`, under its lock
    /// (`current` is an error when the stored override cannot be read: a
    /// replacement does not need it).
    async fn change_limits(
        &self,
        app: &App,
        change: impl FnOnce(Result<Limits, ScriptError>) -> Result<Limits, ScriptError>,
    ) -> Result<Limits, ScriptError> {
        let serial = self.app_lock(app.id).lock_owned().await;
        let limits = change(self.app_limits(app.id).await)?;
        limits
            .validate()
            .map_err(|e| ScriptError::Invalid(e.to_string()))?;
        // Some limits are checked at compile time (nesting, literals, the
        // number of functions): every live script must still compile under
        // the new ones, or nothing changes.
        let mut recompiled = Vec::new();
        for script in self.stores.scripts.list(app.id).await? {
            let Some(version) = self
                .stores
                .scripts
                .version(app.id, &script.name, script.live_version)
                .await?
            else {
                continue;
            };
            let (_, compiled) = self
                .compile_for(app.id, version.source, limits, Strictness::Stored)
                .await;
            let compiled = compiled.map_err(|e| {
                ScriptError::Invalid(format!(
                    "script {} (version {}) does not compile under these limits: {e}",
                    script.name, script.live_version
                ))
            })?;
            recompiled.push((script, compiled));
        }
        let this = self.clone();
        let app = app.clone();
        to_the_end(async move {
            let _serial = serial;
            this.stores
                .settings
                .set_app_limits(app.id, Some(limits))
                .await
                .map_err(|e| match e {
                    // The app vanished since it was resolved.
                    SettingsRepoError::NotFound => ScriptError::AppNotFound(app.slug.to_string()),
                    other => ScriptError::Settings(other),
                })?;
            for (script, compiled) in recompiled {
                this.cache
                    .put(&app, &script, script.live_version, compiled, limits);
            }
            this.cache.set_limits(app.slug.as_str(), limits);
            Ok(limits)
        })
        .await
    }

    /// The live script `script` of the app `slug`, as the hot path needs
    /// it: from the cache (no store read, no compile); while the service is
    /// still warming, a cache miss reads the store and compiles it. A
    /// transport checks this before it reads a request body.
    pub async fn live(&self, slug: &str, script: &str) -> Result<Arc<LiveScript>, InvokeError> {
        let not_found = || {
            if self.cache.has_app(slug) {
                InvokeError::NotFound {
                    app: slug.to_owned(),
                    script: script.to_owned(),
                }
            } else {
                InvokeError::AppNotFound(slug.to_owned())
            }
        };
        if let Some(live) = self.cache.get(slug, script) {
            return Ok(live);
        }
        if self.is_warm() {
            return Err(not_found());
        }
        match self.load_live(slug, script).await {
            Ok(Some(live)) => Ok(live),
            Ok(None) => Err(not_found()),
            Err(ScriptError::Compile(e)) => Err(InvokeError::Exec(ExecError::Internal(format!(
                "live script {slug}/{script} does not compile: {e}"
            )))),
            Err(e) => Err(InvokeError::Exec(ExecError::Internal(e.to_string()))),
        }
    }

    /// Runs the live version of `script` of the app `slug` (see
    /// [`live`](Self::live)) and queues its invocation record.
    pub async fn invoke(
        &self,
        slug: &str,
        script: &str,
        request: ScriptRequest,
    ) -> Result<(Arc<LiveScript>, Invocation), InvokeError> {
        let live = self.live(slug, script).await?;
        let invocation = self.run(slug, &live, request).await?;
        Ok((live, invocation))
    }

    /// Runs `live` (found with [`live`](Self::live)) on `request`, after
    /// removing every credential PiCloud accepts from it, and queues the
    /// invocation record. The returned invocation's logs have moved into
    /// that record (read them through `invocations`).
    pub async fn run(
        &self,
        slug: &str,
        live: &LiveScript,
        request: ScriptRequest,
    ) -> Result<Invocation, InvokeError> {
        let request_id = request
            .headers
            .get("x-request-id")
            .map_or("", String::as_str);
        let query = (!request.query.is_empty()).then(|| {
            request
                .query
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")
        });
        let context =
            InvocationContext::http(request_id, &request.method, &request.path, query.as_deref());
        self.run_with(slug, live, request, context).await
    }

    /// [`run`](Self::run), recording `context` (the transport's request id
    /// and raw query string, say) in the invocation record. The events a
    /// successful run (an answer below 500) emitted are written before this
    /// returns, so before the response is sent; a failed run's are dropped.
    /// A store that cannot take them makes the run's answer an internal
    /// error (the script ran, its events did not happen).
    pub async fn run_with(
        &self,
        slug: &str,
        live: &LiveScript,
        request: ScriptRequest,
        context: InvocationContext,
    ) -> Result<Invocation, InvokeError> {
        let mut invocation = self
            .execute_recorded(slug, live, request, context, &live.limits, false)
            .await?;
        let emitted = std::mem::take(&mut invocation.emitted);
        let succeeded = invocation.outcome.as_ref().is_ok_and(|r| r.status < 500);
        if succeeded && !emitted.is_empty() {
            let stores = self.stores.clone();
            let (app, limits) = (live.app_id, live.limits);
            let published = to_the_end(async move {
                stores
                    .jobs
                    .publish(
                        app,
                        emitted,
                        crate::events::lease_ms(&limits),
                        crate::events::cap(&limits),
                    )
                    .await
            })
            .await;
            match published {
                Ok(n) if n > 0 => self.job_signal.notify_one(),
                Ok(_) => {}
                Err(e) => {
                    return Err(InvokeError::Exec(ExecError::Internal(format!(
                        "the run's events could not be stored: {e}"
                    ))));
                }
            }
        }
        Ok(invocation)
    }

    /// Runs `live` for an attempt of a job, under `limits` (the app's, its
    /// wall clock held within the job's lease), and records it like any
    /// run. The invocation keeps its logs (a copy went to the record) and
    /// its emitted events: the job runner stores them with the completion.
    pub async fn run_job(
        &self,
        slug: &str,
        live: &LiveScript,
        request: ScriptRequest,
        context: InvocationContext,
        limits: &Limits,
    ) -> Result<Invocation, InvokeError> {
        self.execute_recorded(slug, live, request, context, limits, true)
            .await
    }

    async fn execute_recorded(
        &self,
        slug: &str,
        live: &LiveScript,
        mut request: ScriptRequest,
        context: InvocationContext,
        limits: &Limits,
        keep_logs: bool,
    ) -> Result<Invocation, InvokeError> {
        strip_credentials(&self.stores, &mut request.headers).await;
        let env = self.env.for_run(live.app_id).await.map_err(|e| {
            InvokeError::Exec(ExecError::Internal(format!(
                "the app's environment could not be read: {e}"
            )))
        })?;
        let host = Arc::new(RunHost {
            app: live.app_id,
            quota: limits.kv_quota(),
            kv: Arc::clone(&self.stores.kv),
            env: Arc::clone(&env),
            outbound: self.outbound.clone(),
            hosts: match &self.outbound {
                Some(_) => self.egress_hosts_of(live.app_id).await,
                None => None,
            },
            handle: tokio::runtime::Handle::current(),
            kv_calls: Arc::clone(&self.kv_calls),
            on_ttl: Some(Arc::clone(&self.kv_signal)),
        });
        let at = crate::clock::now();
        let trigger = context.trigger;
        let mut invocation = self
            .executor
            .execute_hosted(slug, &live.compiled, request, limits, host)
            .await
            .inspect_err(|e| {
                // A direct run's refusal is its caller's answer; a job's
                // attempt waits for room instead (see `run_job`).
                if !keep_logs {
                    crate::metrics_names::invocation(
                        slug,
                        &live.name,
                        exec_status(e),
                        trigger,
                        None,
                    );
                }
            })
            .map_err(InvokeError::Exec)?;
        if env.has_secrets() {
            redact(&env, &mut invocation);
        }
        let (status, error, line, column) = match &invocation.outcome {
            Ok(r) => (r.status, None, None, None),
            Err(e) => (
                exec_status(e),
                Some(e.to_string()),
                e.line().and_then(|l| u32::try_from(l).ok()),
                e.column().and_then(|c| u32::try_from(c).ok()),
            ),
        };
        let logs = if keep_logs {
            invocation.logs.clone()
        } else {
            std::mem::take(&mut invocation.logs)
        };
        let record = InvocationRecord {
            script_id: live.script_id,
            version: live.version,
            at,
            status,
            duration_us: u64::try_from(invocation.duration.as_micros()).unwrap_or(u64::MAX),
            logs,
            error,
            line,
            column,
            context,
        };
        self.tails.send(live.app_id, || TailEvent {
            app_id: live.app_id,
            script: live.name.clone(),
            record: crate::ports::fit_record_copy(&record, TAIL_RECORD_MAX_BYTES),
        });
        crate::metrics_names::invocation(
            slug,
            &live.name,
            status,
            trigger,
            Some(invocation.duration),
        );
        self.writer.record(record);
        Ok(invocation)
    }
}

/// Takes every secret value of `env` out of what the run leaves behind: its
/// log lines and its error message (which may reach a caller).
fn redact(env: &crate::env::RunEnv, invocation: &mut Invocation) {
    for line in &mut invocation.logs {
        *line = env.redact(line);
    }
    if let Err(ExecError::Runtime { message, .. } | ExecError::LimitExceeded { message, .. }) =
        &mut invocation.outcome
    {
        *message = env.redact(message);
    }
}

/// The HTTP status an execution error answers with: 504 when the script ran
/// out of time (wall clock or operations), 503 when the executor is
/// overloaded, 500 otherwise (a runtime error or another limit).
pub fn exec_status(e: &ExecError) -> u16 {
    use crate::executor::ExecErrorKind as K;
    match e.kind() {
        K::Timeout => 504,
        K::Overloaded => 503,
        _ => 500,
    }
}
