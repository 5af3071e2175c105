//! The sandbox: one rhai engine configured so that a script can compute,
//! and nothing else.
//!
//! - **Raw engine.** `Engine::new_raw()` plus the standard package: no file
//!   module resolver, no stdout `print`. The package's blocking `sleep` is
//!   replaced by one that fails with a clear message, and its `parse_json`
//!   (which evaluates its input as a Rhai expression) by a strict serde_json
//!   parser.
//! - **No `eval`, no `import`.** Both symbols are disabled, so using them is a
//!   *compile* error; `set_max_modules(0)` backs `import` up at run time.
//! - **Limits.** Every [`Limits`] field maps to a rhai limit, set before each
//!   run: a worker keeps one engine and reconfigures it per invocation
//!   (a handful of field writes) instead of building engines per app.
//! - **Wall clock.** `on_progress` runs on every operation; every 256th it
//!   reads the clock and, past the deadline, stops the script with a
//!   `WallClock` token, which the error classification turns into
//!   `LimitExceeded { limit: WallClock }`. Reading the clock once per 256
//!   operations keeps the overhead within the 10 % budget (see
//!   `benches/sandbox.rs`) while the deadline is still met within microseconds.
//! - **Native stack.** Every 16th operation, `on_progress` also compares
//!   the stack position with where the run started; past the sandbox's stack
//!   limit the script stops with `LimitExceeded { limit: Stack }`. rhai's
//!   call-depth limit normally triggers first, but frame sizes vary (a debug
//!   build's are several times larger, and nested expressions inside each
//!   call add up), and a stack overflow would abort the whole process.
//!   Printing and comparing deeply nested data is bounded separately (see
//!   [`super::values`]).
//! - **Sizes.** rhai's string, array and map limits, plus a periodic scan
//!   of the variables that closes a gap in rhai's checks (index assignment;
//!   see the `on_var` hook in [`Sandbox::with_stack_limit`]).
//! - **Logs.** `print` and `debug` append to a bounded per-invocation buffer.
//! - **Checked arithmetic.** rhai is built without `unchecked`, so overflow
//!   and division by zero are errors, never panics.
//!
//! The per-invocation state (deadline, log buffer) sits in an `Arc` shared
//! with the engine's callbacks: rhai's callbacks must be `'static`, and this
//! keeps the sandbox self-contained instead of relying on thread-locals.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use rhai::packages::{Package, StandardPackage};
use rhai::{
    AST, Array, Dynamic, Engine, EvalAltResult, Map, Module, NativeCallContext, Position, Scope,
    Shared,
};

use super::Invocation;
use super::error::{CompileError, ExecError};
use super::limits::Limits;
use super::request::{ResponseValue, ScriptRequest, into_response, json_text};
use super::values;

/// How often (in operations, a power of two) the wall clock is read.
const CLOCK_CHECK_EVERY: u64 = 256;

/// How often (in operations, a power of two dividing [`CLOCK_CHECK_EVERY`])
/// the native stack depth is checked. Between two checks a script gets at
/// most this many operations deeper: a few hundred KiB even in a debug
/// build, far below the headroom the stack limit leaves.
const STACK_CHECK_EVERY: u64 = 16;

/// The shortest time between two size scans of the variables.
const SCAN_EVERY_NS: u64 = 1_000_000;

/// The error `sleep(...)` raises.
const NO_SLEEP: &str =
    "sleep is not available: a script must not block its worker (use the wall clock for timing)";

/// The termination token the deadline check hands to rhai.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WallClock;

/// The termination token the native stack check hands to rhai.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StackExhausted;

/// The stack a [`Sandbox::new`] lets a script use: fits the 8 MiB of a
/// process's main thread with room to spare.
pub const DEFAULT_STACK_LIMIT: usize = 4 * 1024 * 1024;

/// The address of a local of the calling frame: how deep the native stack is.
/// (Taking an address is safe; it is only compared, never dereferenced.)
#[inline(always)]
fn stack_position() -> usize {
    let probe = 0_u8;
    std::hint::black_box(&probe) as *const u8 as usize
}

/// A compiled script: the AST, shared. Cloning is one reference count.
///
/// Compile once per uploaded version ([`compile`]) and keep it in a cache;
/// every invocation of that version shares the same AST.
#[derive(Debug, Clone)]
pub struct CompiledScript {
    ast: Arc<AST>,
}

impl CompiledScript {
    /// The compiled AST, for running it elsewhere (the sandbox bench
    /// compares against a plain engine on the same AST).
    pub fn ast(&self) -> &AST {
        &self.ast
    }

    /// The number of functions (and closures) the script defines.
    pub fn function_count(&self) -> usize {
        self.ast.iter_functions().count()
    }
}

/// Compiles a script under `limits` (expression depth, literal sizes and the
/// function count are checked now) with the sandbox's configuration, so a
/// script that uses `eval` or `import` is refused here.
///
/// rhai's parser recurses once per level of nesting, with large frames in a
/// debug build (about 8 KiB per level: a 2 MiB async runtime thread would
/// overflow, and abort the process, well within [`Limits::MAX_EXPR_DEPTH`]).
/// So the parse runs on a short-lived helper thread with a
/// [`COMPILE_STACK_SIZE`] stack, and this call blocks until it is done: tens
/// of microseconds for the thread plus the parse (see `benches/sandbox.rs`).
/// That is fine for an upload handler. The transport should bound the source
/// size (its HTTP body limit).
pub fn compile(source: &str, limits: &Limits) -> Result<CompiledScript, CompileError> {
    let limits = limits.clamped();
    let internal = |message: String| CompileError {
        message,
        line: None,
        column: None,
        limit: None,
    };
    thread::scope(|scope| {
        thread::Builder::new()
            .name("picloud-compile".into())
            .stack_size(COMPILE_STACK_SIZE)
            .spawn_scoped(scope, || compile_here(source, &limits))
            .map_err(|e| internal(format!("cannot start the compiler thread: {e}")))?
            .join()
            .unwrap_or_else(|_| Err(internal("the compiler failed on this script".into())))
    })
}

/// The stack of the thread [`compile`] parses on.
pub const COMPILE_STACK_SIZE: usize = 16 * 1024 * 1024;

/// Compiles on the current thread (which must have the stack for it).
fn compile_here(source: &str, limits: &Limits) -> Result<CompiledScript, CompileError> {
    let mut engine = sandbox_engine();
    configure(&mut engine, limits);
    engine
        .compile(source)
        .map(|ast| CompiledScript { ast: Arc::new(ast) })
        .map_err(|err| CompileError::from_parse(&err, limits))
}

/// The standard package, built once per process: building it is the
/// expensive part of making an engine.
fn standard_package() -> Shared<Module> {
    static STD: OnceLock<Shared<Module>> = OnceLock::new();
    STD.get_or_init(|| StandardPackage::new().as_shared_module())
        .clone()
}

/// An engine with the sandbox's fixed configuration (no callbacks, no
/// limits yet).
fn sandbox_engine() -> Engine {
    let mut engine = Engine::new_raw();
    engine.register_global_module(standard_package());
    engine.disable_symbol("eval");
    engine.disable_symbol("import");
    engine.set_max_modules(0);
    // The standard package's `sleep` blocks the worker thread, and its
    // `parse_json` evaluates the text as a Rhai expression. Functions
    // registered on the engine itself are found before the package's, so
    // these replace them.
    engine.register_fn("sleep", |_seconds: i64| -> Result<(), Box<EvalAltResult>> {
        Err(NO_SLEEP.into())
    });
    engine.register_fn("sleep", |_seconds: f64| -> Result<(), Box<EvalAltResult>> {
        Err(NO_SLEEP.into())
    });
    engine.register_fn(
        "parse_json",
        |text: &str| -> Result<Dynamic, Box<EvalAltResult>> {
            serde_json::from_str::<Dynamic>(text).map_err(|e| format!("invalid JSON: {e}").into())
        },
    );
    // Printing and comparing arrays and maps recurse once per level of
    // nesting; rhai's versions use a few KiB of native stack per level,
    // these (see `values`) stop at a fixed depth.
    for name in ["print", "to_string", "debug", "to_debug"] {
        engine.register_fn(name, values::array_to_string);
        engine.register_fn(name, values::map_to_string);
    }
    engine.register_fn("==", |ctx: NativeCallContext, a: &mut Array, b: Array| {
        values::arrays_equal(&ctx, a, &b)
    });
    engine.register_fn("!=", |ctx: NativeCallContext, a: &mut Array, b: Array| {
        values::arrays_equal(&ctx, a, &b).map(|eq| !eq)
    });
    engine.register_fn("==", |ctx: NativeCallContext, a: &mut Map, b: Map| {
        values::maps_equal(&ctx, a, &b)
    });
    engine.register_fn("!=", |ctx: NativeCallContext, a: &mut Map, b: Map| {
        values::maps_equal(&ctx, a, &b).map(|eq| !eq)
    });
    engine.register_fn(
        "to_json",
        |map: &mut Map| -> Result<String, Box<EvalAltResult>> {
            json_text(&Dynamic::from_map(map.clone())).map_err(Into::into)
        },
    );
    engine.register_type_with_name::<ResponseValue>("Response");
    engine.register_fn(
        "response",
        |status: i64, body: Dynamic| -> Result<ResponseValue, Box<EvalAltResult>> {
            ResponseValue::new(status, body, None)
        },
    );
    engine.register_fn(
        "response",
        |status: i64, body: Dynamic, headers: Map| -> Result<ResponseValue, Box<EvalAltResult>> {
            ResponseValue::new(status, body, Some(headers))
        },
    );
    engine
}

/// Applies `limits` (already clamped) to an engine.
fn configure(engine: &mut Engine, limits: &Limits) {
    engine
        .set_max_operations(limits.max_operations)
        .set_max_call_levels(limits.max_call_depth)
        .set_max_expr_depths(limits.max_expr_depth, limits.max_function_expr_depth)
        .set_max_string_size(limits.max_string_bytes)
        .set_max_array_size(limits.max_array_len)
        .set_max_map_size(limits.max_map_len)
        .set_max_variables(limits.max_variables)
        .set_max_functions(limits.max_functions);
}

/// The state one invocation shares with the engine's callbacks.
struct RunState {
    /// The clock's zero; the deadline is stored relative to it so it fits an
    /// atomic.
    origin: Instant,
    /// Nanoseconds after `origin` at which the running script must stop.
    deadline_ns: AtomicU64,
    /// The native stack position when the run started.
    stack_base: AtomicUsize,
    /// How many bytes of native stack the script may use below `stack_base`.
    stack_limit: usize,
    /// Set by the clock check when the variables are due for a size scan.
    scan_due: AtomicBool,
    /// Nanoseconds after `origin` before which no new scan is due.
    next_scan_ns: AtomicU64,
    log: Mutex<LogBuffer>,
}

impl RunState {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn log(&self) -> std::sync::MutexGuard<'_, LogBuffer> {
        // A panic while holding the lock cannot leave the buffer in a state
        // worse than "some lines": keep going.
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `print`/`debug` output of one invocation, bounded in bytes.
#[derive(Default)]
struct LogBuffer {
    lines: Vec<String>,
    bytes: usize,
    max_bytes: usize,
    truncated: bool,
}

impl LogBuffer {
    fn reset(&mut self, max_bytes: usize) {
        self.lines = Vec::new();
        self.bytes = 0;
        self.max_bytes = max_bytes;
        self.truncated = false;
    }

    fn push(&mut self, line: &str) {
        if self.truncated {
            return;
        }
        let room = self.max_bytes - self.bytes;
        if line.len() <= room {
            self.bytes += line.len();
            self.lines.push(line.to_owned());
            return;
        }
        let mut cut = room;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut > 0 {
            self.lines.push(line[..cut].to_owned());
        }
        self.bytes = self.max_bytes;
        self.lines.push(format!(
            "[output truncated: more than {} bytes]",
            self.max_bytes
        ));
        self.truncated = true;
    }
}

/// A sandboxed engine that runs compiled scripts synchronously on the
/// current thread.
///
/// [`RhaiExecutor`](super::RhaiExecutor) keeps one per worker thread; use a
/// `Sandbox` directly only where blocking the current thread is fine (a CLI,
/// a test, a bench). Run it on a thread with a large stack: the limits keep
/// recursion bounded, but a debug build needs several MiB for the deepest
/// allowed call chain (the pool's workers get
/// [`ExecutorConfig::stack_size`](super::ExecutorConfig::stack_size)).
pub struct Sandbox {
    engine: Engine,
    state: Arc<RunState>,
    scope: Scope<'static>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox").finish_non_exhaustive()
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    /// A sandbox for a thread with at least 8 MiB of stack (the main
    /// thread); scripts may use [`DEFAULT_STACK_LIMIT`] of it.
    pub fn new() -> Self {
        Self::with_stack_limit(DEFAULT_STACK_LIMIT)
    }

    /// A sandbox whose scripts may use `bytes` of the running thread's native
    /// stack. Leave the thread at least as much again for the native
    /// recursion the check does not see (cloning, dropping and measuring
    /// deeply nested data).
    pub fn with_stack_limit(bytes: usize) -> Self {
        let state = Arc::new(RunState {
            origin: Instant::now(),
            deadline_ns: AtomicU64::new(u64::MAX),
            stack_base: AtomicUsize::new(0),
            stack_limit: bytes,
            scan_due: AtomicBool::new(false),
            next_scan_ns: AtomicU64::new(0),
            log: Mutex::new(LogBuffer::default()),
        });
        let mut engine = sandbox_engine();

        let progress_state = Arc::clone(&state);
        engine.on_progress(move |ops| {
            // Every operation: is the script's recursion (calls, closures,
            // nested expressions, native callbacks into the script) about to
            // exhaust the thread's stack? The call-depth limit normally stops
            // it first; this backs it up whatever the frame sizes (a debug
            // build's are several times a release build's).
            if ops % STACK_CHECK_EVERY != 0 {
                return None;
            }
            let base = progress_state.stack_base.load(Ordering::Relaxed);
            if base.abs_diff(stack_position()) > progress_state.stack_limit {
                return Some(Dynamic::from(StackExhausted));
            }
            if ops % CLOCK_CHECK_EVERY != 0 {
                return None;
            }
            let now = progress_state.now_ns();
            if now >= progress_state.next_scan_ns.load(Ordering::Relaxed) {
                progress_state.scan_due.store(true, Ordering::Relaxed);
            }
            let deadline = progress_state.deadline_ns.load(Ordering::Relaxed);
            (now >= deadline).then(|| Dynamic::from(WallClock))
        });
        // rhai checks the size of a whole array or map when it grows through
        // a method (`push`, `+=`, a property set), but `m[key] = value` and
        // `a[i] = value` only check the new element: a loop of index
        // assignments can build a map of millions of keys, or an array of
        // thousands of 1 MiB strings, unchecked, until the value is next used
        // whole. So about once a millisecond of running (and never more than
        // a tenth of the time), the next variable access re-checks every
        // variable in scope against the size limits. Variable access is the
        // one hook that sees the scope.
        let scan_state = Arc::clone(&state);
        #[allow(deprecated)] // `on_var` is stable, only flagged as "volatile".
        engine.on_var(move |_name, _index, context| {
            if !scan_state.scan_due.load(Ordering::Relaxed) {
                return Ok(None);
            }
            scan_state.scan_due.store(false, Ordering::Relaxed);
            let started = scan_state.now_ns();
            let engine = context.engine();
            let values = context.scope().iter_raw().map(|(_, _, value)| value);
            for value in values.chain(context.this_ptr()) {
                // A shared (captured) value locked by the running statement
                // cannot be read now; it is checked on a later scan.
                if value.is_shared() && value.is_locked() {
                    continue;
                }
                engine.ensure_data_size_within_limits(value)?;
            }
            let now = scan_state.now_ns();
            let pause = (now - started).saturating_mul(10).max(SCAN_EVERY_NS);
            scan_state
                .next_scan_ns
                .store(now.saturating_add(pause), Ordering::Relaxed);
            Ok(None)
        });
        let print_state = Arc::clone(&state);
        engine.on_print(move |text| print_state.log().push(text));
        let debug_state = Arc::clone(&state);
        engine.on_debug(move |text, _source, pos: Position| {
            let line = match pos.line() {
                Some(line) => format!("[debug line {line}] {text}"),
                None => format!("[debug] {text}"),
            };
            debug_state.log().push(&line);
        });

        Self {
            engine,
            state,
            scope: Scope::new(),
        }
    }

    /// Runs `script` on `request` under `limits` and returns its outcome,
    /// logs and duration. It never panics on script input and always returns
    /// within about `limits.wall_clock` (plus the time of one operation).
    pub fn run(
        &mut self,
        script: &CompiledScript,
        request: ScriptRequest,
        limits: &Limits,
    ) -> Invocation {
        let limits = limits.clamped();
        configure(&mut self.engine, &limits);
        self.state.log().reset(limits.max_output_bytes);

        let start = Instant::now();
        let request = request.into_rhai();
        self.scope.clear();
        self.scope
            .push_dynamic("request", Dynamic::from_map(request));
        self.state
            .deadline_ns
            .store(self.deadline(limits.wall_clock), Ordering::Relaxed);
        self.state
            .stack_base
            .store(stack_position(), Ordering::Relaxed);
        self.state.scan_due.store(false, Ordering::Relaxed);
        self.state
            .next_scan_ns
            .store(self.state.now_ns() + SCAN_EVERY_NS, Ordering::Relaxed);

        let result = self
            .engine
            .eval_ast_with_scope::<Dynamic>(&mut self.scope, &script.ast);

        self.state.deadline_ns.store(u64::MAX, Ordering::Relaxed);
        self.scope.clear();
        let outcome = match result {
            Ok(value) => into_response(value),
            Err(err) => match *err {
                EvalAltResult::Exit(value, _) | EvalAltResult::Return(value, _) => {
                    into_response(value)
                }
                other => return self.finish(start, Err(ExecError::from_eval(&other, &limits))),
            },
        }
        .map_err(|message| ExecError::runtime(message, None));
        self.finish(start, outcome)
    }

    fn deadline(&self, wall_clock: Duration) -> u64 {
        let wall = u64::try_from(wall_clock.as_nanos()).unwrap_or(u64::MAX);
        self.state.now_ns().saturating_add(wall)
    }

    fn finish(
        &self,
        start: Instant,
        outcome: Result<super::ScriptResponse, ExecError>,
    ) -> Invocation {
        let duration = start.elapsed();
        let mut log = self.state.log();
        Invocation {
            outcome,
            logs: std::mem::take(&mut log.lines),
            truncated_logs: log.truncated,
            duration,
        }
    }
}
