//! The worker pool: scripts run on dedicated OS threads, never on the async
//! runtime's workers.
//!
//! **Why dedicated threads.** A script is CPU-bound for up to its wall clock.
//! On a runtime worker it would stall every other task on that thread; with
//! `spawn_blocking` per request the hand-off costs about half the throughput
//! (issue #5 measured 0.5× a bare handler). Long-lived threads, each with
//! its own [`Sandbox`] (engine reused, limits reset per run), fed through a
//! queue and answering through a `oneshot`, cost one lock, one wake-up and
//! one small allocation per request (0.75–0.9× in the same measurement).
//! Each thread gets a large stack ([`ExecutorConfig::stack_size`]) and its
//! sandbox checks the stack depth on every operation, so deep recursion ends
//! in an error, never in a stack overflow (which would abort the process).
//!
//! **Why not a plain channel.** A FIFO lets one tenant that floods the pool
//! with infinite loops hold every worker, and then every queue slot. The
//! queue here is per tenant, served round-robin, with two caps:
//! - a tenant runs at most [`ExecutorConfig::per_tenant_max_in_flight`]
//!   scripts at once (default: half the workers, at least 1), so other
//!   tenants always find a worker free within one wall clock;
//! - a tenant has at most [`ExecutorConfig::per_tenant_max_queued`] waiting
//!   (default: half the queue), so it cannot fill the queue for others.
//!
//! Past either bound, or past [`ExecutorConfig::queue_capacity`] in total,
//! [`RhaiExecutor::execute`] fails at once with [`ExecError::Overloaded`]:
//! nobody waits without bound. A caller that gives up (its future dropped)
//! leaves its job in the queue, where a worker discards it unrun.
//!
//! The queue is a `Mutex` + `Condvar`: idle workers sleep (an idle server
//! burns no CPU) and the lock is held only to move one job.

use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;

use async_trait::async_trait;
use tokio::sync::oneshot;

use super::error::ExecError;
use super::host::ScriptHost;
use super::inline::{self, InlineBudget};
use super::limits::Limits;
use super::request::ScriptRequest;
use super::sandbox::{CompiledScript, Sandbox};
use super::{Executor, Invocation};

/// Sizing of a [`RhaiExecutor`]. `Default` fits the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorConfig {
    /// Worker threads. Default: twice the number of CPUs, at least 4.
    pub workers: usize,
    /// Jobs waiting for a worker, all tenants together, beyond those idle
    /// workers are about to take. Default: 64 per worker.
    pub queue_capacity: usize,
    /// Scripts one tenant may run at once. Default: half the workers, at
    /// least 1. At most `workers`.
    pub per_tenant_max_in_flight: usize,
    /// Jobs one tenant may have waiting, beyond those its share lets start
    /// at once. Default: half the queue, at least 1.
    pub per_tenant_max_queued: usize,
    /// Native stack of each worker thread, in bytes. Default 64 MiB, of
    /// which scripts may use a quarter for recursion (calls, closures,
    /// nested expressions; past it they fail with [`LimitKind::Stack`]); the
    /// rest is headroom for the native recursion over deeply nested data
    /// (cloning, dropping, size checks), which the sandbox cannot interrupt.
    /// It is address space: memory is committed only as recursion touches it.
    ///
    /// [`LimitKind::Stack`]: super::LimitKind::Stack
    pub stack_size: usize,
    /// The fast path: each run is first attempted inline, on the calling
    /// async task, under this budget, and moves to the pool only when it
    /// passes it (see [`super::inline`]). `None` sends every run to the
    /// pool. Default: [`InlineBudget::default`].
    pub inline: Option<InlineBudget>,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        // Twice the CPUs: a tenant's share (half the workers) can then keep
        // every core busy, while the other half stays free for other tenants
        // (the OS time-slices them against a tenant's infinite loops).
        let cpus = thread::available_parallelism().map_or(2, usize::from);
        Self::with_workers((cpus * 2).max(4))
    }
}

impl ExecutorConfig {
    /// The default sizing for `workers` threads.
    pub fn with_workers(workers: usize) -> Self {
        let workers = workers.max(1);
        let queue_capacity = workers * 64;
        Self {
            workers,
            queue_capacity,
            per_tenant_max_in_flight: (workers / 2).max(1),
            per_tenant_max_queued: (queue_capacity / 2).max(1),
            stack_size: 64 * 1024 * 1024,
            inline: Some(InlineBudget::default()),
        }
    }

    /// The same values forced into range: at least one worker, one queue
    /// slot, one job per tenant; a tenant's share at most the whole.
    fn normalized(&self) -> Self {
        let workers = self.workers.max(1);
        let queue_capacity = self.queue_capacity.max(1);
        Self {
            workers,
            queue_capacity,
            per_tenant_max_in_flight: self.per_tenant_max_in_flight.clamp(1, workers),
            per_tenant_max_queued: self.per_tenant_max_queued.clamp(1, queue_capacity),
            stack_size: self.stack_size.max(4 * 1024 * 1024),
            inline: self.inline,
        }
    }
}

/// One request waiting for, or held by, a worker.
struct Job {
    script: CompiledScript,
    request: ScriptRequest,
    limits: Limits,
    host: Option<Arc<dyn ScriptHost>>,
    reply: oneshot::Sender<Result<Invocation, ExecError>>,
}

/// One tenant's place in the queue.
struct Tenant {
    /// The tenant's key, shared with `Queue::ready` (allocated once per
    /// burst of a tenant's requests, not per request).
    name: Arc<str>,
    running: usize,
    waiting: VecDeque<Job>,
    /// Whether the tenant's name is in `Queue::ready`.
    ready: bool,
}

/// The scheduler's state, behind one mutex.
struct Queue {
    tenants: HashMap<Arc<str>, Tenant>,
    /// Tenants with a waiting job and a free share, in round-robin order.
    ready: VecDeque<Arc<str>>,
    /// Jobs waiting, all tenants together.
    queued: usize,
    /// Workers asleep, waiting for a job: a job they are about to take does
    /// not count against the queue's capacity.
    idle: usize,
    shutdown: bool,
}

struct Shared {
    config: ExecutorConfig,
    queue: Mutex<Queue>,
    work: Condvar,
    paths: PathCounters,
}

/// How runs went, since the executor started (see [`ExecutorStats`]).
#[derive(Default)]
struct PathCounters {
    inline_completed: AtomicU64,
    inline_abandoned: AtomicU64,
    inline_skipped: AtomicU64,
    pool_runs: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Workers never panic while holding the lock (scripts run outside
        // it), but stay usable if that ever changes.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a job or refuses it at once.
    fn submit(&self, tenant: &str, job: Job) -> Result<(), ExecError> {
        let mut guard = self.lock();
        let q = &mut *guard;
        if q.shutdown {
            return Err(ExecError::Internal("the executor is shut down".into()));
        }
        if q.queued >= self.config.queue_capacity + q.idle {
            return Err(ExecError::Overloaded);
        }
        if !q.tenants.contains_key(tenant) {
            let name: Arc<str> = Arc::from(tenant);
            let entry = Tenant {
                name: Arc::clone(&name),
                running: 0,
                waiting: VecDeque::new(),
                ready: false,
            };
            q.tenants.insert(name, entry);
        }
        let t = q.tenants.get_mut(tenant).expect("inserted above");
        // Jobs the tenant's share lets start at once are not "queued".
        let startable = self
            .config
            .per_tenant_max_in_flight
            .saturating_sub(t.running);
        if t.waiting.len() >= self.config.per_tenant_max_queued + startable {
            return Err(ExecError::Overloaded);
        }
        t.waiting.push_back(job);
        q.queued += 1;
        if !t.ready && t.running < self.config.per_tenant_max_in_flight {
            t.ready = true;
            q.ready.push_back(Arc::clone(&t.name));
            // Busy workers look at the queue before they sleep: only a
            // sleeping one needs the (system call) wake-up.
            let wake = q.idle > 0;
            drop(guard);
            if wake {
                self.work.notify_one();
            }
        }
        Ok(())
    }

    /// Takes the next job, round-robin over ready tenants; `None` once shut
    /// down with nothing left.
    fn next(&self, mut q: MutexGuard<'_, Queue>) -> Option<(Arc<str>, Job)> {
        loop {
            if let Some(name) = q.ready.pop_front() {
                let max_running = self.config.per_tenant_max_in_flight;
                let q = &mut *q;
                let tenant = q.tenants.get_mut(&name).expect("a ready tenant exists");
                let job = tenant
                    .waiting
                    .pop_front()
                    .expect("a ready tenant has a job");
                q.queued -= 1;
                tenant.running += 1;
                if !tenant.waiting.is_empty() && tenant.running < max_running {
                    q.ready.push_back(Arc::clone(&name));
                } else {
                    tenant.ready = false;
                }
                // One wake-up per ready tenant: a tenant put back on the
                // queue here (or made ready by `finish`) sent none, and the
                // one another tenant's `submit` sent may have been taken by
                // this worker for an older entry. Pass it on, or that
                // tenant waits for a busy worker while others sleep.
                if !q.ready.is_empty() && q.idle > 0 {
                    self.work.notify_one();
                }
                return Some((name, job));
            }
            if q.shutdown {
                return None;
            }
            q.idle += 1;
            q = self.work.wait(q).unwrap_or_else(|p| p.into_inner());
            q.idle -= 1;
        }
    }

    /// Marks a job of `tenant` finished and returns the lock, so the worker
    /// can take its next job without locking twice.
    fn finish(&self, tenant: &Arc<str>) -> MutexGuard<'_, Queue> {
        let mut q = self.lock();
        let max_running = self.config.per_tenant_max_in_flight;
        let q_ref = &mut *q;
        if let Some(t) = q_ref.tenants.get_mut(&**tenant) {
            t.running -= 1;
            if !t.ready && !t.waiting.is_empty() && t.running < max_running {
                t.ready = true;
                q_ref.ready.push_back(Arc::clone(tenant));
            } else if t.running == 0 && t.waiting.is_empty() {
                q_ref.tenants.remove(&**tenant);
            }
        }
        q
    }
}

/// A snapshot of a [`RhaiExecutor`]'s load, for metrics and health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ExecutorStats {
    /// Worker threads in the pool.
    pub workers: usize,
    /// Workers asleep, waiting for a job.
    pub idle: usize,
    /// Scripts running (or about to start) on a worker, all tenants.
    pub running: usize,
    /// Jobs waiting for a worker, all tenants.
    pub queued: usize,
    /// Tenants with a job running or waiting.
    pub tenants: usize,
    /// Runs that finished inline, within the budget (since start).
    pub inline_completed: u64,
    /// Inline attempts abandoned (past the budget, a limit, or an effect),
    /// each followed by a run on the pool.
    pub inline_abandoned: u64,
    /// Runs sent straight to the pool without an attempt: the script was
    /// cooling down after an abandoned attempt, or the request was too
    /// large for the budget.
    pub inline_skipped: u64,
    /// Runs on the pool's workers (abandoned attempts, skipped ones, and
    /// every run when the fast path is off).
    pub pool_runs: u64,
}

/// Runs compiled scripts on a bounded pool of dedicated threads, fairly
/// across tenants. Cheap to share: wrap it in an `Arc` (or use it as
/// `Arc<dyn Executor>`).
///
/// Dropping it stops the workers once they finish their current script;
/// jobs still queued fail with [`ExecError::Internal`].
pub struct RhaiExecutor {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RhaiExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RhaiExecutor")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl RhaiExecutor {
    /// Starts the worker threads. Fails only if the OS refuses a thread.
    pub fn new(config: ExecutorConfig) -> std::io::Result<Self> {
        let config = config.normalized();
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                tenants: HashMap::new(),
                ready: VecDeque::new(),
                queued: 0,
                idle: 0,
                shutdown: false,
            }),
            work: Condvar::new(),
            paths: PathCounters::default(),
            config,
        });
        let executor = Self {
            shared: Arc::clone(&shared),
        };
        for i in 0..shared.config.workers {
            let worker_shared = Arc::clone(&shared);
            let stack_size = shared.config.stack_size;
            thread::Builder::new()
                .name(format!("picloud-script-{i}"))
                .stack_size(stack_size)
                .spawn(move || worker(&worker_shared, stack_size / 4))?;
        }
        Ok(executor)
    }

    /// The sizing in force (after normalization).
    pub fn config(&self) -> &ExecutorConfig {
        &self.shared.config
    }

    /// The pool's load right now (one lock, no allocation).
    pub fn stats(&self) -> ExecutorStats {
        let q = self.shared.lock();
        let paths = &self.shared.paths;
        let count = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ExecutorStats {
            workers: self.shared.config.workers,
            idle: q.idle,
            running: q.tenants.values().map(|t| t.running).sum(),
            queued: q.queued,
            tenants: q.tenants.len(),
            inline_completed: count(&paths.inline_completed),
            inline_abandoned: count(&paths.inline_abandoned),
            inline_skipped: count(&paths.inline_skipped),
            pool_runs: count(&paths.pool_runs),
        }
    }

    /// Runs `script` for `tenant` (an app id or slug: the unit of fairness).
    ///
    /// The run is first attempted inline, on the calling task, under
    /// [`ExecutorConfig::inline`]; past that budget it starts again on the
    /// pool (see [`super::inline`]). Call it from a thread with the budget's
    /// stack free (any tokio worker, with the default budget).
    ///
    /// - `Err(Overloaded)` at once when the run needs the pool and the
    ///   queue or the tenant's share of it is full; `Err(Internal)` if the
    ///   executor is gone.
    /// - Otherwise an [`Invocation`], whose `outcome` is the script's
    ///   response or its [`ExecError::Runtime`] / [`ExecError::LimitExceeded`].
    pub async fn execute(
        &self,
        tenant: &str,
        script: &CompiledScript,
        request: ScriptRequest,
        limits: &Limits,
    ) -> Result<Invocation, ExecError> {
        self.execute_hosted(tenant, script, request, limits, None)
            .await
    }

    /// [`execute`](Self::execute) with `host` for the script's `env`,
    /// `kv::…` and `http::…`. A run that calls `kv::…` or `http::…` leaves
    /// the fast path before the call (they are effects).
    pub async fn execute_hosted(
        &self,
        tenant: &str,
        script: &CompiledScript,
        request: ScriptRequest,
        limits: &Limits,
        host: Option<Arc<dyn ScriptHost>>,
    ) -> Result<Invocation, ExecError> {
        if let Some(budget) = &self.shared.config.inline {
            let paths = &self.shared.paths;
            let route = script.route();
            if route.inline_allowed() && budget.admits(&request) {
                if let Some(invocation) =
                    inline::attempt(script, &request, limits, budget, host.clone())
                {
                    route.completed();
                    paths.inline_completed.fetch_add(1, Ordering::Relaxed);
                    return Ok(invocation);
                }
                route.abandoned(budget.cooldown);
                paths.inline_abandoned.fetch_add(1, Ordering::Relaxed);
            } else {
                paths.inline_skipped.fetch_add(1, Ordering::Relaxed);
            }
        }
        let (reply, answer) = oneshot::channel();
        self.shared.submit(
            tenant,
            Job {
                script: script.clone(),
                request,
                limits: *limits,
                host,
                reply,
            },
        )?;
        answer
            .await
            .unwrap_or_else(|_| Err(ExecError::Internal("the script worker stopped".into())))
    }
}

impl Drop for RhaiExecutor {
    fn drop(&mut self) {
        let mut q = self.shared.lock();
        q.shutdown = true;
        // Queued jobs are dropped here: their callers see a closed reply.
        q.tenants.clear();
        q.ready.clear();
        q.queued = 0;
        drop(q);
        self.shared.work.notify_all();
    }
}

#[async_trait]
impl Executor for RhaiExecutor {
    async fn execute(
        &self,
        tenant: &str,
        script: &CompiledScript,
        request: ScriptRequest,
        limits: &Limits,
    ) -> Result<Invocation, ExecError> {
        RhaiExecutor::execute(self, tenant, script, request, limits).await
    }

    async fn execute_hosted(
        &self,
        tenant: &str,
        script: &CompiledScript,
        request: ScriptRequest,
        limits: &Limits,
        host: Arc<dyn ScriptHost>,
    ) -> Result<Invocation, ExecError> {
        RhaiExecutor::execute_hosted(self, tenant, script, request, limits, Some(host)).await
    }

    fn stats(&self) -> Option<ExecutorStats> {
        Some(RhaiExecutor::stats(self))
    }
}

/// A worker's life: take a job, run it in this thread's sandbox, reply.
fn worker(shared: &Shared, stack_limit: usize) {
    let mut sandbox = Sandbox::with_stack_limit(stack_limit);
    let mut q = shared.lock();
    while let Some((tenant, job)) = shared.next(q) {
        let Job {
            script,
            request,
            limits,
            host,
            reply,
        } = job;
        // The caller gave up while the job waited: do not run it.
        if !reply.is_closed() {
            shared.paths.pool_runs.fetch_add(1, Ordering::Relaxed);
            let run = catch_unwind(AssertUnwindSafe(|| {
                sandbox.run_hosted(&script, request, &limits, host)
            }));
            let answer = match run {
                Ok(invocation) => Ok(invocation),
                Err(panic) => {
                    // A panic inside rhai or a conversion: the engine may be
                    // in any state, so start from a fresh one.
                    sandbox = Sandbox::with_stack_limit(stack_limit);
                    Err(ExecError::Internal(format!(
                        "the engine failed on this script: {}",
                        panic_message(&*panic)
                    )))
                }
            };
            // The caller may have gone meanwhile; nothing to do then.
            let _ = reply.send(answer);
        }
        drop(script);
        q = shared.finish(&tenant);
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "unknown panic"
    }
}
