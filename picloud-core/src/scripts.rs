//! The scripts service (feature `executor`): deploy, list, roll back, show
//! invocations, set an app's limits, and invoke.
//!
//! **Hot path.** `invoke` reads nothing from the store and compiles nothing:
//! each live version is compiled once (at deploy, at rollback, or when the
//! node warms up) and kept in the [`ScriptCache`], keyed by app slug and
//! script name, with the app's effective [`Limits`]. The invocation record is
//! handed to the [`InvocationWriter`], a background task that writes batches,
//! so the request never waits on the invocation log.
//!
//! **Cluster mode** (not built yet): a deploy on one node must reach the
//! others. The hook is [`ScriptService::refresh`]: a node that hears of a
//! deploy (PostgreSQL `LISTEN script_deployed`, payload `app_id/name`) calls
//! it to recompile that script's live version into its own cache.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::authz::{AuthzDenied, AuthzRepoError, Capability, require};
use crate::domain::{
    App, Deployed, InvocationRecord, Principal, Script, ScriptName, ScriptVersion,
    ScriptVersionInfo,
};
use crate::executor::{
    CompileBudget, CompileError, CompiledScript, ExecError, Executor, Invocation, Limits,
    ScriptRequest, compile_with,
};
use crate::ids::{AppId, ScriptId};
use crate::ports::{
    AppRepoError, INVOCATION_BYTES_PER_SCRIPT, INVOCATION_RECORD_MAX_BYTES, INVOCATIONS_KEPT,
    InvocationLog, InvocationLogError, QuotaExceeded, ScriptRepoError, StorageQuota, fit_record,
};
use crate::stores::Stores;

/// The largest script source accepted, in bytes.
pub const MAX_SOURCE_BYTES: usize = 2 * 1024 * 1024;

/// How many compiles of one app may run at once. A compile holds one of
/// these from start to finish, even after its uploader went away (it is
/// cancelled then, and ends within a few tokens), so abandoned uploads
/// cannot pile up. Apps never wait for each other's compiles.
pub const COMPILES_PER_APP: usize = 2;

/// The name of the dashboard's session cookie. Like a bearer token, it is
/// a credential PiCloud accepts, and no script ever sees it.
pub const SESSION_COOKIE: &str = "picloud_session";

/// Every outcome of [`ScriptService`]'s admin calls other than success.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The caller may not do this.
    #[error("forbidden")]
    Forbidden,
    /// No app has this id or slug.
    #[error("app not found: {0}")]
    AppNotFound(String),
    /// The app has no script of this name.
    #[error("script not found: {0}")]
    ScriptNotFound(String),
    /// The script has no such version.
    #[error("version {0} not found")]
    VersionNotFound(u32),
    /// The request breaks a rule (a bad name, a source too large, bad limits).
    #[error("{0}")]
    Invalid(String),
    /// The source does not compile; nothing was stored.
    #[error("{0}")]
    Compile(CompileError),
    /// The deploy would pass the app's storage quota; nothing was stored.
    #[error(transparent)]
    QuotaExceeded(QuotaExceeded),
    /// The script store failed.
    #[error("script repository error: {0}")]
    Scripts(ScriptRepoError),
    /// The app store failed.
    #[error("app repository error: {0}")]
    Apps(#[from] AppRepoError),
    /// The authorization lookup failed.
    #[error("authorization repo error: {0}")]
    Authz(#[from] AuthzRepoError),
    /// The invocation log failed.
    #[error("invocation log error: {0}")]
    Invocations(#[from] InvocationLogError),
}

impl From<ScriptRepoError> for ScriptError {
    fn from(e: ScriptRepoError) -> Self {
        Self::Scripts(e)
    }
}

impl From<AuthzDenied> for ScriptError {
    fn from(d: AuthzDenied) -> Self {
        match d {
            AuthzDenied::Denied => Self::Forbidden,
            AuthzDenied::Repo(e) => Self::Authz(e),
        }
    }
}

impl ScriptError {
    /// True for failures of the machinery rather than of the request.
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            Self::Scripts(_) | Self::Apps(_) | Self::Authz(_) | Self::Invocations(_)
        )
    }
}

/// Why an invocation produced no script response.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// No such app, or no such script in it.
    #[error("no script {script} in app {app}")]
    NotFound {
        /// The app slug asked for.
        app: String,
        /// The script name asked for.
        script: String,
    },
    /// The executor refused or failed before running the script.
    #[error(transparent)]
    Exec(ExecError),
}

/// A live script as the hot path needs it.
#[derive(Debug, Clone)]
pub struct LiveScript {
    /// The app.
    pub app_id: AppId,
    /// The script.
    pub script_id: ScriptId,
    /// The live version.
    pub version: u32,
    /// Its compiled AST.
    pub compiled: CompiledScript,
    /// The app's effective limits.
    pub limits: Limits,
}

/// The compiled live version of every script, by app slug then name.
#[derive(Debug, Default)]
pub struct ScriptCache {
    by_slug: RwLock<HashMap<String, HashMap<String, Arc<LiveScript>>>>,
}

impl ScriptCache {
    /// The live script `name` of the app `slug`.
    pub fn get(&self, slug: &str, name: &str) -> Option<Arc<LiveScript>> {
        let map = self.by_slug.read().unwrap_or_else(PoisonError::into_inner);
        map.get(slug)?.get(name).cloned()
    }

    /// Caches `compiled` as the live `version` of script `script` (named
    /// `name`) of `app`, under the app's `limits`.
    fn put(
        &self,
        app: &App,
        name: &str,
        script: ScriptId,
        version: u32,
        compiled: CompiledScript,
        limits: Limits,
    ) {
        let live = LiveScript {
            app_id: app.id,
            script_id: script,
            version,
            compiled,
            limits,
        };
        let mut map = self.by_slug.write().unwrap_or_else(PoisonError::into_inner);
        map.entry(app.slug.to_string())
            .or_default()
            .insert(name.to_owned(), Arc::new(live));
    }

    /// Forgets the script `name` of the app `slug` (it was deleted).
    fn remove(&self, slug: &str, name: &str) {
        let mut map = self.by_slug.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(scripts) = map.get_mut(slug) {
            scripts.remove(name);
            if scripts.is_empty() {
                map.remove(slug);
            }
        }
    }

    fn set_limits(&self, slug: &str, limits: Limits) {
        let mut map = self.by_slug.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(scripts) = map.get_mut(slug) {
            for live in scripts.values_mut() {
                let mut updated = (**live).clone();
                updated.limits = limits;
                *live = Arc::new(updated);
            }
        }
    }

    /// How many scripts are cached.
    pub fn len(&self) -> usize {
        let map = self.by_slug.read().unwrap_or_else(PoisonError::into_inner);
        map.values().map(HashMap::len).sum()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Writes invocation records in the background, in batches. The hot path
/// only enqueues (`try_send`); when the queue is full the record is dropped
/// and counted, never waited for.
///
/// **Bounded in bytes, too.** Each record is cut to
/// [`INVOCATION_RECORD_MAX_BYTES`] before it is queued (see
/// [`fit_record`]). Records larger than [`SMALL_RECORD`](Self::SMALL_RECORD)
/// share a budget of [`QUEUE_BYTES`](Self::QUEUE_BYTES) while queued or being
/// written, beyond which they are dropped (and counted): a flood of huge logs
/// cannot fill the memory, nor crowd out other apps' small records, which
/// are bounded by the count alone. Each append carries at most
/// [`APPEND_BYTES`](Self::APPEND_BYTES).
///
/// **A refused append loses only what the store refuses.** When an append
/// fails, the writer retries its records one script at a time (the smallest
/// groups first), then one record at a time within a group that still fails,
/// so one app's bad records never take another app's with them. It gives up
/// on a batch after [`RETRIES`](Self::RETRIES) extra appends, or after
/// [`RETRIES_IN_A_ROW`](Self::RETRIES_IN_A_ROW) failures in a row with no
/// success (the store is down, not choosy). What is lost is counted in
/// [`failed`](Self::failed).
#[derive(Debug, Clone)]
pub struct InvocationWriter {
    tx: mpsc::Sender<WriterMsg>,
    dropped: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    /// Bytes of large records queued or being written.
    large_bytes: Arc<AtomicUsize>,
}

/// What the writer task receives: a record (with the bytes it holds of the
/// large-record budget, 0 for a small one), or a request to confirm that
/// everything queued before it is in the store.
#[derive(Debug)]
enum WriterMsg {
    Record(InvocationRecord, usize),
    Flush(tokio::sync::oneshot::Sender<()>),
}

impl InvocationWriter {
    /// The most records queued at once.
    pub const QUEUE: usize = 16 * 1024;
    /// The most records taken from the queue for one round of appends.
    pub const BATCH: usize = 4096;
    /// The most bytes ([`InvocationRecord::log_bytes`]) of one append: 8 MiB.
    /// A round's records are split into appends of at most this size.
    pub const APPEND_BYTES: usize = 8 * 1024 * 1024;
    /// Records of at most this many bytes (4 KiB) are bounded by the queue's
    /// count alone.
    pub const SMALL_RECORD: usize = 4 * 1024;
    /// The most bytes of larger records queued or being written at once:
    /// 64 MiB.
    pub const QUEUE_BYTES: usize = 64 * 1024 * 1024;
    /// The most extra appends spent isolating the records a store refused,
    /// per failed append.
    pub const RETRIES: usize = 64;
    /// After this many failed retries in a row, none succeeding, the store
    /// is taken to be down and the rest of the failed append is given up.
    pub const RETRIES_IN_A_ROW: usize = 4;
    /// How long the writer lets records gather after a partial batch. A
    /// record becomes readable after the append in progress when it arrived
    /// (if any), this pause, and its own append; longer while more than
    /// [`BATCH`](Self::BATCH) records wait. [`flush`](Self::flush) skips
    /// the wait.
    pub const PAUSE: Duration = Duration::from_millis(20);

    /// Starts the writer task on the current tokio runtime.
    pub fn start(stores: &Stores) -> Self {
        let (tx, mut rx) = mpsc::channel::<WriterMsg>(Self::QUEUE);
        let log = Arc::clone(&stores.invocations);
        let failed = Arc::new(AtomicU64::new(0));
        let failed_count = Arc::clone(&failed);
        let large_bytes = Arc::new(AtomicUsize::new(0));
        let large_held = Arc::clone(&large_bytes);
        tokio::spawn(async move {
            let mut msgs = Vec::with_capacity(Self::BATCH);
            // Sleeps in `recv_many` while idle: no polling. Under load, it
            // pauses after each partial batch so that records pile up: the
            // hot path's `try_send` then wakes nobody, and the store sees a
            // few large batches a second instead of one per request.
            while rx.recv_many(&mut msgs, Self::BATCH).await > 0 {
                let full = msgs.len() == Self::BATCH;
                let mut batch = Vec::with_capacity(msgs.len());
                let mut waiters = Vec::new();
                let mut held = 0;
                for msg in msgs.drain(..) {
                    match msg {
                        WriterMsg::Record(r, bytes) => {
                            held += bytes;
                            batch.push(r);
                        }
                        WriterMsg::Flush(done) => waiters.push(done),
                    }
                }
                // The store keeps only the newest records of each script
                // that fit its bounds: the older ones of a large batch would
                // be trimmed at once, so they are not written at all.
                keep_newest_per_script(&mut batch, INVOCATIONS_KEPT, INVOCATION_BYTES_PER_SCRIPT);
                for chunk in split_by_bytes(batch, Self::APPEND_BYTES) {
                    let lost = append_isolating(log.as_ref(), chunk).await;
                    failed_count.fetch_add(lost, Ordering::Relaxed);
                }
                large_held.fetch_sub(held, Ordering::Relaxed);
                let flushed = !waiters.is_empty();
                for done in waiters {
                    let _ = done.send(());
                }
                if !full && !flushed {
                    tokio::time::sleep(Self::PAUSE).await;
                }
            }
        });
        Self {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            failed,
            large_bytes,
        }
    }

    /// Queues a record, cut to [`INVOCATION_RECORD_MAX_BYTES`] first; drops
    /// it if the queue is full, or if it is large and the large records'
    /// byte budget is spent.
    pub fn record(&self, mut record: InvocationRecord) {
        fit_record(&mut record, INVOCATION_RECORD_MAX_BYTES);
        let bytes = record.log_bytes();
        let held = if bytes > Self::SMALL_RECORD { bytes } else { 0 };
        if held > 0 {
            let before = self.large_bytes.fetch_add(held, Ordering::Relaxed);
            if before + held > Self::QUEUE_BYTES {
                self.large_bytes.fetch_sub(held, Ordering::Relaxed);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        if self.tx.try_send(WriterMsg::Record(record, held)).is_err() {
            self.large_bytes.fetch_sub(held, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many records were dropped because the queue was full (or, for
    /// large records, its byte budget spent).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// How many records were lost because the store refused them, even one
    /// script or one record at a time (each failure is also reported on
    /// stderr).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Waits until every record queued before this call has been handed to
    /// the store: appended, or left out because retention would drop it at
    /// once (older than a script's newest kept records), or counted in
    /// [`failed`](Self::failed) if the store refused it. For graceful
    /// shutdown, and for tests that read the log right after an invocation.
    pub async fn flush(&self) {
        let (done, flushed) = tokio::sync::oneshot::channel();
        if self.tx.send(WriterMsg::Flush(done)).await.is_ok() {
            // An error here means the writer task is gone: nothing to wait for.
            let _ = flushed.await;
        }
    }
}

/// Keeps, of each script's records in `batch`, only the newest (by start
/// time, then arrival) while they fit `kept` records and `bytes` bytes, the
/// store's retention rule; in their original order.
fn keep_newest_per_script(batch: &mut Vec<InvocationRecord>, kept: usize, bytes: usize) {
    if batch.len() <= kept && batch.iter().map(InvocationRecord::log_bytes).sum::<usize>() <= bytes
    {
        return;
    }
    let mut newest_first: Vec<usize> = (0..batch.len()).collect();
    newest_first.sort_unstable_by(|&a, &b| batch[b].at.cmp(&batch[a].at).then(b.cmp(&a)));
    // Per script: records and bytes kept so far, and whether one overflowed
    // (then every older one goes too).
    let mut seen: HashMap<ScriptId, (usize, usize, bool)> = HashMap::new();
    let mut keep = vec![false; batch.len()];
    for i in newest_first {
        let (n, b, full) = seen.entry(batch[i].script_id).or_default();
        let size = batch[i].log_bytes();
        if !*full && *n < kept && *b + size <= bytes {
            *n += 1;
            *b += size;
            keep[i] = true;
        } else {
            *full = true;
        }
    }
    let mut flags = keep.into_iter();
    batch.retain(|_| flags.next().unwrap_or(false));
}

/// Splits `batch` into consecutive runs of at most `max_bytes` each (a
/// record larger than that is a run of its own).
fn split_by_bytes(batch: Vec<InvocationRecord>, max_bytes: usize) -> Vec<Vec<InvocationRecord>> {
    let mut runs = Vec::new();
    let mut run = Vec::new();
    let mut run_bytes = 0;
    for r in batch {
        let size = r.log_bytes();
        if !run.is_empty() && run_bytes + size > max_bytes {
            runs.push(std::mem::take(&mut run));
            run_bytes = 0;
        }
        run_bytes += size;
        run.push(r);
    }
    if !run.is_empty() {
        runs.push(run);
    }
    runs
}

/// Appends `records`; if the store refuses them, retries one script at a
/// time (smallest first), then one record at a time, within the budget of
/// [`InvocationWriter::RETRIES`]. Returns how many records were lost.
async fn append_isolating(log: &dyn InvocationLog, records: Vec<InvocationRecord>) -> u64 {
    if records.is_empty() {
        return 0;
    }
    let total = records.len() as u64;
    let Err(e) = log.append(records.clone()).await else {
        return 0;
    };
    tracing_warn(&e);
    if total == 1 {
        return 1;
    }
    let mut groups: Vec<Vec<InvocationRecord>> = Vec::new();
    let mut group_of: HashMap<ScriptId, usize> = HashMap::new();
    for r in records {
        let g = *group_of.entry(r.script_id).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(r);
    }
    groups.sort_by_cached_key(|g| g.iter().map(InvocationRecord::log_bytes).sum::<usize>());
    // Whole groups first; the records of groups that fail, one by one.
    let mut tries: Vec<Vec<InvocationRecord>> = Vec::new();
    let mut stored = 0u64;
    let mut retries = 0;
    let mut failed_in_a_row = 0;
    let mut any_success = false;
    let mut pending: std::collections::VecDeque<(Vec<InvocationRecord>, bool)> =
        groups.into_iter().map(|g| (g, true)).collect();
    while let Some((group, splittable)) = pending.pop_front() {
        let give_up = retries >= InvocationWriter::RETRIES
            || (!any_success && failed_in_a_row >= InvocationWriter::RETRIES_IN_A_ROW);
        if give_up {
            break;
        }
        retries += 1;
        let n = group.len() as u64;
        let copy = if splittable && n > 1 {
            Some(group.clone())
        } else {
            None
        };
        match log.append(group).await {
            Ok(()) => {
                stored += n;
                any_success = true;
                failed_in_a_row = 0;
            }
            Err(e) => {
                tracing_warn(&e);
                failed_in_a_row += 1;
                if let Some(group) = copy {
                    tries.extend(group.into_iter().map(|r| vec![r]));
                }
            }
        }
        if pending.is_empty() {
            pending.extend(tries.drain(..).map(|r| (r, false)));
        }
    }
    total - stored
}
fn tracing_warn(e: &InvocationLogError) {
    // Core has no logging dependency; the error goes to stderr once per batch.
    eprintln!("picloud: failed to write invocation records: {e}");
}

/// The app's effective limits: its override, or the defaults.
fn parse_limits(text: Option<&str>) -> Limits {
    text.and_then(|t| serde_json::from_str::<Limits>(t).ok())
        .unwrap_or_default()
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
}

/// Compiles on the blocking pool under the compile budget: a source may be
/// up to [`MAX_SOURCE_BYTES`], and parsing it must not stall an async
/// worker. `slot` is held until the compile ends; if this future is dropped
/// (the uploader went away), the compile is cancelled.
async fn compile_off_thread(
    source: String,
    limits: Limits,
    slot: OwnedSemaphorePermit,
) -> (String, Result<CompiledScript, CompileError>) {
    /// Cancels the budget when the waiting future is dropped.
    struct CancelOnDrop(CompileBudget);
    impl Drop for CancelOnDrop {
        fn drop(&mut self) {
            self.0.cancel();
        }
    }
    let budget = CompileBudget::default();
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

/// Removes from a request every credential PiCloud accepts, before a script
/// (any editor's code) sees it:
///
/// - any header with a word in PiCloud's token form (`pc_…`), whatever its
///   name (a client may send its token as `X-Api-Key`);
/// - an `Authorization`, `Proxy-Authorization` or other credential-named
///   header (its name says `auth`, `token` or `key`) with a word the token
///   store knows, like the bootstrap token. At most
///   [`MAX_CREDENTIAL_LOOKUPS`] words are looked up per request; a header
///   with more words than that left to check is removed unchecked;
/// - the session cookie.
///
/// A bearer token PiCloud does not know stays: it is the script's own
/// business.
async fn strip_credentials(stores: &Stores, headers: &mut BTreeMap<String, String>) {
    let words = |value: &str| -> Vec<String> {
        value
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect()
    };
    headers.retain(|_, value| !contains_token_form(value));
    let credential_named =
        |name: &str| name.contains("auth") || name.contains("token") || name.contains("key");
    let names: Vec<String> = headers
        .keys()
        .filter(|name| credential_named(name))
        .cloned()
        .collect();
    let mut lookups = 0_usize;
    for name in names {
        let Some(value) = headers.get(&name) else {
            continue;
        };
        for word in words(value) {
            if lookups == MAX_CREDENTIAL_LOOKUPS {
                headers.remove(&name);
                break;
            }
            lookups += 1;
            if is_picloud_token(stores, &word).await {
                headers.remove(&name);
                break;
            }
        }
    }
    if let Some(cookie) = headers.get_mut("cookie") {
        let kept: Vec<&str> = cookie
            .split([';', ','])
            .map(str::trim)
            .filter(|pair| {
                let name = pair.split_once('=').map_or(*pair, |(n, _)| n).trim();
                !pair.is_empty() && name != SESSION_COOKIE
            })
            .collect();
        if kept.is_empty() {
            headers.remove("cookie");
        } else {
            *cookie = kept.join("; ");
        }
    }
}

/// How many words of credential-named headers one request may have looked
/// up in the token store: each is a store round trip, and anyone may call
/// `/run`.
pub const MAX_CREDENTIAL_LOOKUPS: usize = 8;

/// Whether `value` holds PiCloud's token form anywhere, whatever delimits
/// or encodes around it (`session=pc_…`, `"pc_…"`, `a%3Dpc_…`, `xpc_…`):
/// the prefix followed by at least [`TOKEN_FORM_MIN_DIGITS`] hex digits
/// (a token has 64; `npc_id` is not one).
fn contains_token_form(value: &str) -> bool {
    value.match_indices(TOKEN_FORM).any(|(at, prefix)| {
        value[at + prefix.len()..]
            .bytes()
            .take_while(u8::is_ascii_hexdigit)
            .count()
            >= TOKEN_FORM_MIN_DIGITS
    })
}

/// How many hex digits after `pc_` make a header value hold a token (or
/// enough of one to matter).
const TOKEN_FORM_MIN_DIGITS: usize = 16;

/// Whether `word` has the form of PiCloud's own tokens.
fn has_token_form(word: &str) -> bool {
    word.starts_with(TOKEN_FORM)
}

#[cfg(feature = "auth")]
const TOKEN_FORM: &str = crate::auth::TOKEN_PREFIX;
/// Without the `auth` feature PiCloud accepts no tokens of its own; the
/// `pc_` form is withheld all the same, in case an embedder issues them.
#[cfg(not(feature = "auth"))]
const TOKEN_FORM: &str = "pc_";

/// Whether PiCloud would accept `token` (or might: a store that cannot be
/// asked counts as yes, so a credential is never passed on by accident).
#[cfg(feature = "auth")]
async fn is_picloud_token(stores: &Stores, token: &str) -> bool {
    if has_token_form(token) {
        return true;
    }
    !matches!(
        stores
            .tokens
            .find_by_hash(&crate::auth::hash_token(token))
            .await,
        Ok(None)
    )
}

/// Without the `auth` feature there is no token store to ask.
#[cfg(not(feature = "auth"))]
async fn is_picloud_token(_stores: &Stores, token: &str) -> bool {
    has_token_form(token)
}

impl std::fmt::Debug for ScriptService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptService")
            .field("cached", &self.cache.len())
            .finish_non_exhaustive()
    }
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
        Self {
            stores,
            executor,
            cache: Arc::new(ScriptCache::default()),
            writer,
            app_locks: Arc::default(),
            compile_slots: Arc::default(),
            warm: Arc::new(AtomicBool::new(false)),
        }
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

    /// Compiles `source` for `app`, within its compile slots.
    async fn compile_for(
        &self,
        app: AppId,
        source: String,
        limits: Limits,
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
        compile_off_thread(source, limits, slot).await
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
            let lock = self.app_lock(app.id);
            let _serial = lock.lock().await;
            let limits = self.app_limits(app.id).await?;
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
        let Some(app) = self.stores.apps.resolve(slug).await? else {
            return Ok(None);
        };
        let Ok(name) = ScriptName::parse(name) else {
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
        let (_, compiled) = self.compile_for(app.id, version.source, limits).await;
        Ok(compiled.map(|compiled| {
            self.cache.put(
                app,
                script.name.as_str(),
                script.id,
                version.version,
                compiled,
                limits,
            );
        }))
    }

    async fn app_limits(&self, app: AppId) -> Result<Limits, ScriptError> {
        Ok(parse_limits(
            self.stores.scripts.app_limits(app).await?.as_deref(),
        ))
    }

    async fn authorized_app(
        &self,
        principal: &Principal,
        ident: &str,
        capability: fn(AppId) -> Capability,
    ) -> Result<App, ScriptError> {
        let app = self
            .stores
            .apps
            .resolve(ident)
            .await?
            .ok_or_else(|| ScriptError::AppNotFound(ident.to_owned()))?;
        require(self.stores.authz.as_ref(), principal, capability(app.id)).await?;
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
        let name = Self::name(name)?;
        let script = self
            .stores
            .scripts
            .get(app.id, &name)
            .await?
            .ok_or_else(|| ScriptError::ScriptNotFound(name.to_string()))?;
        Ok((app, script))
    }

    fn name(name: &str) -> Result<ScriptName, ScriptError> {
        ScriptName::parse(name).map_err(|e| ScriptError::Invalid(e.to_string()))
    }

    /// Deploys `source` as the new live version of `name` (`AppEdit`). The
    /// source is compiled first: a compile error stores nothing.
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
        let lock = self.app_lock(app.id);
        let _serial = lock.lock().await;
        let limits = self.app_limits(app.id).await?;
        let (source, compiled) = self.compile_for(app.id, source, limits).await;
        let compiled = compiled.map_err(ScriptError::Compile)?;
        let deployed = self
            .stores
            .scripts
            .deploy(
                app.id,
                &name,
                source,
                principal.user_id,
                StorageQuota::default(),
            )
            .await
            .map_err(|e| match e {
                ScriptRepoError::NotFound => ScriptError::AppNotFound(app.slug.to_string()),
                ScriptRepoError::QuotaExceeded(q) => ScriptError::QuotaExceeded(q),
                other => other.into(),
            })?;
        self.cache.put(
            &app,
            name.as_str(),
            deployed.script.id,
            deployed.version.version,
            compiled,
            limits,
        );
        Ok(deployed)
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
        let name = Self::name(name)?;
        // Serialised with deploys, so that none re-caches what is deleted.
        let lock = self.app_lock(app.id);
        let _serial = lock.lock().await;
        let existed = self.stores.scripts.delete(app.id, &name).await?;
        self.cache.remove(app.slug.as_str(), name.as_str());
        Ok(existed)
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
        let lock = self.app_lock(app.id);
        let _serial = lock.lock().await;
        let name = script.name;
        let old = self
            .stores
            .scripts
            .version(app.id, &name, version)
            .await?
            .ok_or(ScriptError::VersionNotFound(version))?;
        let limits = self.app_limits(app.id).await?;
        let (_, compiled) = self.compile_for(app.id, old.source, limits).await;
        let compiled = compiled.map_err(ScriptError::Compile)?;
        let script = self
            .stores
            .scripts
            .set_live(app.id, &name, version)
            .await
            .map_err(|e| match e {
                ScriptRepoError::NotFound => ScriptError::VersionNotFound(version),
                other => other.into(),
            })?;
        self.cache
            .put(&app, name.as_str(), script.id, version, compiled, limits);
        Ok(script)
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
        limits
            .validate()
            .map_err(|e| ScriptError::Invalid(e.to_string()))?;
        let text =
            serde_json::to_string(&limits).map_err(|e| ScriptError::Invalid(e.to_string()))?;
        let lock = self.app_lock(app.id);
        let _serial = lock.lock().await;
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
            let (_, compiled) = self.compile_for(app.id, version.source, limits).await;
            let compiled = compiled.map_err(|e| {
                ScriptError::Invalid(format!(
                    "script {} (version {}) does not compile under these limits: {e}",
                    script.name, script.live_version
                ))
            })?;
            recompiled.push((script, compiled));
        }
        self.stores
            .scripts
            .set_app_limits(app.id, Some(text))
            .await?;
        for (script, compiled) in recompiled {
            self.cache.put(
                &app,
                script.name.as_str(),
                script.id,
                script.live_version,
                compiled,
                limits,
            );
        }
        self.cache.set_limits(app.slug.as_str(), limits);
        Ok(limits)
    }

    /// The live script `script` of the app `slug`, as the hot path needs
    /// it: from the cache (no store read, no compile); while the service is
    /// still warming, a cache miss reads the store and compiles it. A
    /// transport checks this before it reads a request body.
    pub async fn live(&self, slug: &str, script: &str) -> Result<Arc<LiveScript>, InvokeError> {
        let not_found = || InvokeError::NotFound {
            app: slug.to_owned(),
            script: script.to_owned(),
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
        mut request: ScriptRequest,
    ) -> Result<Invocation, InvokeError> {
        strip_credentials(&self.stores, &mut request.headers).await;
        let at = crate::clock::now();
        let mut invocation = self
            .executor
            .execute(slug, &live.compiled, request, &live.limits)
            .await
            .map_err(InvokeError::Exec)?;
        let (status, error) = match &invocation.outcome {
            Ok(r) => (r.status, None),
            Err(e) => (exec_status(e), Some(e.to_string())),
        };
        self.writer.record(InvocationRecord {
            script_id: live.script_id,
            version: live.version,
            at,
            status,
            duration_us: u64::try_from(invocation.duration.as_micros()).unwrap_or(u64::MAX),
            logs: std::mem::take(&mut invocation.logs),
            error,
        });
        Ok(invocation)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(script: ScriptId, at_us: i64, version: u32) -> InvocationRecord {
        InvocationRecord {
            script_id: script,
            version,
            at: chrono::DateTime::from_timestamp_micros(at_us).expect("a valid time"),
            status: 200,
            duration_us: 1,
            logs: Vec::new(),
            error: None,
        }
    }

    #[test]
    fn a_large_batch_keeps_the_newest_records_of_each_script() {
        let (busy, quiet) = (ScriptId::new(), ScriptId::new());
        // Arrival order is not start-time order (records arrive when their
        // run finishes): start times are a permutation of 0..300.
        let starts: Vec<i64> = (0..300).map(|i| (i * 7) % 300).collect();
        let mut batch: Vec<_> = starts
            .iter()
            .zip(0..)
            .map(|(&at, n)| record(busy, at, n))
            .collect();
        batch.extend((0..5).map(|n| record(quiet, 0, n)));
        // Two records of one start time: the later arrival is the newer.
        let tie_a = ScriptId::new();
        batch.push(record(tie_a, 5, 1));
        batch.push(record(tie_a, 5, 2));
        keep_newest_per_script(&mut batch, 100, usize::MAX);

        let busy_kept: Vec<&InvocationRecord> =
            batch.iter().filter(|r| r.script_id == busy).collect();
        assert_eq!(busy_kept.len(), 100);
        let min_kept = busy_kept.iter().map(|r| r.at.timestamp_micros()).min();
        assert_eq!(min_kept, Some(200), "exactly the 100 newest");
        let arrival: Vec<u32> = busy_kept.iter().map(|r| r.version).collect();
        assert!(arrival.is_sorted(), "the original order is kept");
        assert_eq!(batch.iter().filter(|r| r.script_id == quiet).count(), 5);
        assert_eq!(batch.iter().filter(|r| r.script_id == tie_a).count(), 2);

        let mut ties = vec![record(tie_a, 5, 1), record(tie_a, 5, 2)];
        keep_newest_per_script(&mut ties, 1, usize::MAX);
        assert_eq!(ties.len(), 1);
        assert_eq!(ties[0].version, 2, "the later arrival wins a tie");
    }

    fn with_logs(mut r: InvocationRecord, bytes: usize) -> InvocationRecord {
        r.logs = vec!["x".repeat(bytes)];
        r
    }

    #[test]
    fn the_pre_trim_keeps_the_newest_that_fit_the_byte_bound() {
        let (loud, quiet) = (ScriptId::new(), ScriptId::new());
        let mut batch: Vec<_> = (0..10)
            .map(|i| with_logs(record(loud, i, u32::try_from(i).unwrap()), 300))
            .collect();
        // An older small record after a newer one overflowed: still dropped
        // (the bound keeps a prefix, no gaps).
        batch.push(with_logs(record(loud, -1, 99), 1));
        batch.push(with_logs(record(quiet, 0, 0), 5000));
        keep_newest_per_script(&mut batch, 100, 1000);
        let kept: Vec<u32> = batch
            .iter()
            .filter(|r| r.script_id == loud)
            .map(|r| r.version)
            .collect();
        assert_eq!(kept, [7, 8, 9]);
        assert!(
            batch.iter().all(|r| r.script_id != quiet),
            "a record over the bound alone is not kept"
        );
    }

    #[test]
    fn batches_are_split_by_bytes() {
        let s = ScriptId::new();
        let batch: Vec<_> = (0..10).map(|i| with_logs(record(s, i, 1), 400)).collect();
        let runs = split_by_bytes(batch, 1000);
        let sizes: Vec<usize> = runs.iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 2, 2, 2, 2]);
        let big = vec![
            with_logs(record(s, 0, 1), 5000),
            with_logs(record(s, 1, 1), 1),
        ];
        assert_eq!(split_by_bytes(big, 1000).len(), 2);
    }

    /// A log that refuses every record whose first log line is "poison", and
    /// whole batches holding one, as a database refuses a statement.
    #[derive(Default)]
    struct Choosy {
        stored: std::sync::Mutex<Vec<InvocationRecord>>,
        down: bool,
        calls: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl InvocationLog for Choosy {
        async fn append(&self, records: Vec<InvocationRecord>) -> Result<(), InvocationLogError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if self.down
                || records
                    .iter()
                    .any(|r| r.logs.first().is_some_and(|l| l == "poison"))
            {
                return Err(InvocationLogError::Backend("refused".into()));
            }
            self.stored.lock().unwrap().extend(records);
            Ok(())
        }

        async fn recent(
            &self,
            _: ScriptId,
            _: usize,
        ) -> Result<Vec<InvocationRecord>, InvocationLogError> {
            Ok(Vec::new())
        }
    }

    #[tokio::test]
    async fn a_refused_append_loses_only_the_refused_records() {
        let (bad, good_a, good_b) = (ScriptId::new(), ScriptId::new(), ScriptId::new());
        let mut batch = Vec::new();
        for i in 0..5 {
            batch.push(record(good_a, i, 1));
            batch.push(record(bad, i, 1));
            batch.push(record(good_b, i, 1));
        }
        // The bad script's records are fine but one.
        batch[4].logs = vec!["poison".into()];
        let log = Choosy::default();
        let lost = append_isolating(&log, batch).await;
        assert_eq!(lost, 1, "only the poisoned record");
        let stored = log.stored.lock().unwrap();
        assert_eq!(stored.len(), 14);
        assert_eq!(stored.iter().filter(|r| r.script_id == good_a).count(), 5);
        assert_eq!(stored.iter().filter(|r| r.script_id == good_b).count(), 5);
    }

    #[tokio::test]
    async fn a_store_that_is_down_is_not_retried_for_ever() {
        let batch: Vec<_> = (0..500).map(|i| record(ScriptId::new(), i, 1)).collect();
        let log = Choosy {
            down: true,
            ..Choosy::default()
        };
        assert_eq!(append_isolating(&log, batch).await, 500);
        let calls = log.calls.load(Ordering::Relaxed);
        assert_eq!(calls, 1 + InvocationWriter::RETRIES_IN_A_ROW);
    }

    #[test]
    fn a_small_batch_is_left_alone() {
        let s = ScriptId::new();
        let mut batch: Vec<_> = (0..10)
            .map(|i| record(s, 10 - i, u32::try_from(i).unwrap()))
            .collect();
        let before = batch.clone();
        keep_newest_per_script(&mut batch, 100, usize::MAX);
        assert_eq!(batch, before);
    }
}
