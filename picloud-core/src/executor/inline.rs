//! The fast path: a run starts **inline**, on the async task that asked for
//! it, under a small [`InlineBudget`], and moves to the pool only when it
//! needs to.
//!
//! **Why.** Handing a run to the pool costs a lock, a wake-up of a worker
//! thread, a `oneshot` and a second wake-up back, on top of the run: on two
//! cores that is about 20 % of the CPU of a trivial `/run` in futex calls and
//! context switches (issue #9's profile). Most scripts are request handlers
//! that finish in a few microseconds; for them the hand-off is most of the
//! cost.
//!
//! **How it stays safe.** The async worker must never be held for long, and
//! a script must not be able to tell where it ran:
//! - The attempt runs under the script's own limits, **lowered** to the
//!   budget: a few thousand operations, a string, array and map cap, a
//!   memory cap, about 100 µs of wall clock (the clock is read at every
//!   stack check, every 16 operations), and a slice of the calling thread's
//!   native stack. With every value that small, no single operation (a
//!   sort, a `replace`, an equality) takes long either. A request whose
//!   text is larger than the string cap skips the attempt (converting it,
//!   and parsing its JSON body, is work for the pool's threads).
//! - The attempt is **abandoned** the moment it passes the budget, hits any
//!   limit at all, or is about to call a host function with an effect
//!   outside the run (`RunState::before_effect`: a store write, a network
//!   call, `emit`). An abandoned attempt keeps nothing: its logs and value
//!   are dropped, and it had no effect. The run then starts again from the
//!   beginning on the pool, with its full limits: what the pool's run
//!   answers is the answer. Every stop is sticky, so `try`/`catch` or a
//!   native callback cannot carry an attempt past its budget.
//! - A run that finishes inside the budget answers exactly what the pool
//!   would: the same engine configuration, the same limits where it
//!   finished below them, the same logs.
//!
//! **Adaptive routing.** A script version whose attempt was abandoned goes
//! straight to the pool for [`InlineBudget::cooldown`] (`Route`, kept in
//! the [`CompiledScript`] that the cache holds per live version), then tries
//! inline again. A hostile script wastes at most one budget per cool-down
//! and per async worker, not one per request.
//!
//! **Fairness.** Inline attempts do not queue: they take the async worker
//! that received the request for at most the budget. The pool's rules
//! (per-tenant shares, the queue bound and its 503) apply to every run that
//! goes there, so a tenant that floods the pool with loops fills only its
//! share, while another tenant's short scripts keep answering inline.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::Invocation;
use super::limits::Limits;
use super::request::ScriptRequest;
use super::sandbox::{CompiledScript, Sandbox};

/// How much an inline attempt may use before it is abandoned and the run
/// moves to the pool. `Default` fits a tokio runtime with its default 2 MiB
/// worker stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InlineBudget {
    /// Operations (rhai's count), at most. Default 5 000: a request
    /// handler that routes, reads its input and builds a JSON answer.
    pub operations: u64,
    /// Wall clock, at most. Default 100 µs.
    pub time: Duration,
    /// Native stack the attempt may use, in bytes, below where it starts.
    /// The calling thread must have this much free plus room for the
    /// native recursion the stack check does not see (dropping the run's
    /// values: with the budget's collection caps, under 200 KiB). Default
    /// 256 KiB, for tokio's 2 MiB workers; see
    /// [`for_worker_stack`](Self::for_worker_stack).
    pub stack: usize,
    /// Bytes of any string (the script's own limit, if lower, stays), and
    /// the most text a request may hold to be attempted inline. Default
    /// 16 KiB.
    pub max_string_bytes: usize,
    /// Elements of an array and entries of a map. Default 512: it also
    /// bounds how deep data nests, and so the native recursion that drops
    /// it.
    pub max_collection_len: usize,
    /// Memory the attempt may allocate (when metered). Default 1 MiB.
    pub max_memory_bytes: usize,
    /// How long a script version whose attempt was abandoned goes straight
    /// to the pool before it is attempted inline again. Default 1 s.
    /// `Duration::ZERO` attempts every run inline (for benchmarks).
    pub cooldown: Duration,
}

impl Default for InlineBudget {
    fn default() -> Self {
        Self::for_worker_stack(2 * 1024 * 1024)
    }
}

impl InlineBudget {
    /// The default budget, with a stack slice for runtime worker threads of
    /// `worker_stack` bytes: an eighth of it (256 KiB for tokio's default
    /// 2 MiB, 1 MiB for the `picloud` server's 8 MiB workers, which fits
    /// the default call depth of 64 in a release build).
    pub fn for_worker_stack(worker_stack: usize) -> Self {
        Self {
            operations: 5_000,
            time: Duration::from_micros(100),
            stack: worker_stack / 8,
            max_string_bytes: 16 * 1024,
            max_collection_len: 512,
            max_memory_bytes: 1024 * 1024,
            cooldown: Duration::from_secs(1),
        }
    }

    /// `limits` (clamped) lowered to this budget.
    pub(crate) fn lower(&self, limits: &Limits) -> Limits {
        Limits {
            max_operations: limits.max_operations.min(self.operations.max(1)),
            max_string_bytes: limits.max_string_bytes.min(self.max_string_bytes.max(1)),
            max_array_len: limits.max_array_len.min(self.max_collection_len.max(1)),
            max_map_len: limits.max_map_len.min(self.max_collection_len.max(1)),
            max_memory_bytes: limits.max_memory_bytes.min(self.max_memory_bytes.max(1)),
            ..*limits
        }
    }

    /// Whether `request` is small enough to be attempted inline.
    pub(crate) fn admits(&self, request: &ScriptRequest) -> bool {
        request.text_bytes() <= self.max_string_bytes
    }
}

/// Nanoseconds since the first call (a process-wide monotonic clock that
/// fits an atomic).
fn now_ns() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    // Never 0: 0 means "no cool-down" in `Route`.
    u64::try_from(origin.elapsed().as_nanos())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Where one script version's runs start. Shared by every clone of its
/// [`CompiledScript`], so it lives as long as the cache entry of that
/// version: a new version (a deploy, a rollback, new limits) starts inline.
#[derive(Debug, Default)]
pub(crate) struct Route {
    /// When the cool-down ends, in [`now_ns`] time; 0 when there is none.
    pool_until_ns: AtomicU64,
}

impl Route {
    /// Whether the next run may be attempted inline. Reads the clock only
    /// while a cool-down is set.
    pub(crate) fn inline_allowed(&self) -> bool {
        let until = self.pool_until_ns.load(Ordering::Relaxed);
        until == 0 || now_ns() >= until
    }

    /// An attempt was abandoned: the next runs go to the pool for `cooldown`.
    pub(crate) fn abandoned(&self, cooldown: Duration) {
        let cooldown = u64::try_from(cooldown.as_nanos()).unwrap_or(u64::MAX);
        if cooldown > 0 {
            self.pool_until_ns
                .store(now_ns().saturating_add(cooldown), Ordering::Relaxed);
        }
    }

    /// An attempt finished inline: no cool-down.
    pub(crate) fn completed(&self) {
        if self.pool_until_ns.load(Ordering::Relaxed) != 0 {
            self.pool_until_ns.store(0, Ordering::Relaxed);
        }
    }
}

thread_local! {
    /// The sandbox of inline attempts on this thread (built on first use:
    /// one per async worker).
    static SANDBOX: RefCell<Option<Sandbox>> = const { RefCell::new(None) };
}

/// Attempts `script` inline on this thread (see the module docs); `None`
/// when it was abandoned, or could not be attempted (a re-entrant call).
pub(crate) fn attempt(
    script: &CompiledScript,
    request: &ScriptRequest,
    limits: &Limits,
    budget: &InlineBudget,
    host: Option<std::sync::Arc<dyn super::ScriptHost>>,
) -> Option<Invocation> {
    SANDBOX
        .try_with(|slot| {
            let mut slot = slot.try_borrow_mut().ok()?;
            let sandbox = slot.get_or_insert_with(|| Sandbox::with_stack_limit(budget.stack));
            let run = catch_unwind(AssertUnwindSafe(|| {
                sandbox.try_inline(script, request, limits, budget, host)
            }));
            run.unwrap_or_else(|_| {
                // The engine may be in any state: a fresh one next time,
                // and the pool's run (in a fresh state too) decides.
                *slot = None;
                None
            })
        })
        .ok()
        .flatten()
}
