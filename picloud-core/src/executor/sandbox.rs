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
//! - **Memory.** rhai is built with `no_closure`: an anonymous function
//!   cannot capture variables, so no value is ever shared, nothing forms a
//!   cycle, and every value is a tree whose size the scan can measure and
//!   whose drop frees it all. `curry` is refused at compile time and
//!   `Fn(name)` takes names of at most [`MAX_FN_NAME_BYTES`], so a function
//!   pointer holds nothing of note. The scan counts what rhai's own
//!   accounting does not see (map keys, function names, `response(...)`
//!   bodies) and sums every variable of every frame of the call stack
//!   against [`Limits::max_memory_bytes`]; `response(...)` values are
//!   charged against it when they are made. The `request` map the run
//!   starts with does not count against the limits (the body limit bounds
//!   it); what the script adds to it does.
//! - **Compile budget.** Parsing can take time superlinear in the source
//!   (rhai looks variables up by a linear search). [`compile_with`] stops
//!   after a [`CompileBudget`] of wall clock, or when the budget is
//!   cancelled (the uploader went away), checked every few tokens.
//! - **Panics.** A panic inside the engine (rhai catches one in `sort`
//!   with an inconsistent comparator) is an error of that run. The
//!   sandbox's panic hook keeps such panics quiet, on the threads and for
//!   the time a sandbox runs, and leaves every other panic to the hook that
//!   was installed before.
//! - **Logs.** `print` and `debug` append to a bounded per-invocation buffer.
//! - **Checked arithmetic.** rhai is built without `unchecked`, so overflow
//!   and division by zero are errors, never panics.
//!
//! The per-invocation state (deadline, log buffer) sits in an `Arc` shared
//! with the engine's callbacks: rhai's callbacks must be `'static`, and this
//! keeps the sandbox self-contained instead of relying on thread-locals.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use rhai::packages::{Package, StandardPackage};
use rhai::{
    AST, ASTNode, Dynamic, Engine, EvalAltResult, Expr, FnPtr, ImmutableString, LexError, Map,
    Module, NativeCallContext, Position, Scope, Shared, Stmt, Token,
};

use super::Invocation;
use super::bounded::{self, check_sizes, too_large};
use super::error::{CompileError, ExecError};
use super::host::ScriptHost;
use super::inline::{InlineBudget, Route};
use super::limits::LimitKind;
use super::limits::Limits;
use super::request::{ANSWER_TOO_LARGE, ResponseValue, ScriptRequest, into_response};
use super::values::{self, DataSizes};

/// How often (in operations, a power of two) the wall clock is read.
const CLOCK_CHECK_EVERY: u64 = 256;

/// How often (in operations, a power of two dividing [`CLOCK_CHECK_EVERY`])
/// the native stack depth is checked. Between two checks a script gets at
/// most this many operations deeper: a few hundred KiB even in a debug
/// build, far below the headroom the stack limit leaves.
const STACK_CHECK_EVERY: u64 = 16;

/// How often (in operations, a power of two between [`STACK_CHECK_EVERY`]
/// and [`CLOCK_CHECK_EVERY`]) the memory meter is read: one operation
/// allocates at most about one string or collection within the limits, so
/// a run passes `max_memory_bytes` by at most that many of them.
const METER_CHECK_EVERY: u64 = 64;

/// The shortest time between two size scans of the variables.
const SCAN_EVERY_NS: u64 = 1_000_000;

/// The longest time between two size scans while a script runs: a scan
/// normally waits ten times its own duration (so it costs at most a tenth
/// of the run), but never longer than this, so a script holding much data
/// cannot buy itself a long unchecked stretch.
const SCAN_AT_MOST_EVERY_NS: u64 = 10_000_000;

/// The longest function name `Fn(name)` accepts, in bytes. A function
/// pointer holds its name, which rhai's size accounting does not see.
pub const MAX_FN_NAME_BYTES: usize = 256;

/// How long compiling one source may take, by default.
pub const DEFAULT_COMPILE_BUDGET: Duration = Duration::from_secs(5);

/// How often (in tokens, a power of two) the compile budget is checked.
const BUDGET_CHECK_EVERY: u64 = 64;

/// What `curry` says: the sandbox has no way to bind values to a
/// function pointer (see the module docs, "Memory").
const NO_CURRY: &str = "curry is not available in the sandbox: pass values as arguments";

/// The error `sleep(...)` raises.
const NO_SLEEP: &str =
    "sleep is not available: a script must not block its worker (use the wall clock for timing)";

/// The termination token the deadline check hands to rhai.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WallClock;

/// The termination token the native stack check hands to rhai.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StackExhausted;

/// The termination token for a value printed past the string limit (see
/// [`bounded::register_printing`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TextExhausted;

/// The termination token the memory meter hands to rhai.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemoryExhausted;

/// The termination token that ends an inline attempt: past its budget, or
/// about to call a host function with an effect outside the run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OverBudget;

/// This thread's allocation balance (see `meter`), when metered.
#[cfg(feature = "meter")]
fn meter_balance() -> Option<u64> {
    super::meter::thread_balance()
}
#[cfg(not(feature = "meter"))]
fn meter_balance() -> Option<u64> {
    None
}

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
    needs_scan: bool,
    /// Which path this version's runs take (see [`super::inline`]): shared
    /// by every clone, so the cache entry of a live version holds it.
    route: Arc<Route>,
}

impl CompiledScript {
    /// The compiled AST, for running it elsewhere (the sandbox bench
    /// compares against a plain engine on the same AST).
    pub fn ast(&self) -> &AST {
        &self.ast
    }

    /// Whether a run needs the sandbox's periodic variable scan: the script
    /// assigns into an element or property (`a[i] = v`, `m.k[i] = v`), the
    /// one way a value outgrows the size limits without rhai checking it
    /// whole. Other scripts run without the scan when allocations are
    /// metered (the meter bounds their memory), which saves its hook on
    /// every variable access.
    pub fn needs_scan(&self) -> bool {
        self.needs_scan
    }

    /// The number of functions (and closures) the script defines.
    pub fn function_count(&self) -> usize {
        self.ast.iter_functions().count()
    }

    /// Where this version's next run starts: inline, or straight on the
    /// pool while it cools down after an abandoned inline attempt.
    pub(crate) fn route(&self) -> &Route {
        &self.route
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
    compile_with(source, limits, &CompileBudget::default())
}

/// How long one compile may take, and a switch to stop it early. Clones
/// share the switch: keep one, hand another to [`compile_with`], and
/// [`cancel`](Self::cancel) it when the result is no longer wanted.
#[derive(Debug, Clone)]
pub struct CompileBudget {
    time: Duration,
    cancelled: Arc<AtomicBool>,
    lenient: bool,
}

impl Default for CompileBudget {
    fn default() -> Self {
        Self::new(DEFAULT_COMPILE_BUDGET)
    }
}

impl CompileBudget {
    /// A budget of `time` of wall clock.
    pub fn new(time: Duration) -> Self {
        Self {
            time,
            cancelled: Arc::new(AtomicBool::new(false)),
            lenient: false,
        }
    }

    /// This budget, for a source that was accepted before: undefined
    /// variables are not refused (they fail at run time, as they did when
    /// it was deployed). A new deploy is strict: a variable that is neither
    /// declared nor `request` is a compile error with its line.
    pub fn lenient(mut self) -> Self {
        self.lenient = true;
        self
    }

    /// Whether undefined variables are let through (see [`lenient`](Self::lenient)).
    pub fn is_lenient(&self) -> bool {
        self.lenient
    }

    /// The wall clock a compile may take.
    pub fn time(&self) -> Duration {
        self.time
    }

    /// Stops the compile using this budget (or a clone) at its next check.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}

/// [`compile`] under a [`CompileBudget`]: past its time the compile fails
/// with [`LimitKind::CompileTime`]; once cancelled it fails at its next
/// check (within a few tokens).
pub fn compile_with(
    source: &str,
    limits: &Limits,
    budget: &CompileBudget,
) -> Result<CompiledScript, CompileError> {
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
            .spawn_scoped(scope, || compile_here(source, &limits, budget))
            .map_err(|e| internal(format!("cannot start the compiler thread: {e}")))?
            .join()
            .unwrap_or_else(|_| Err(internal("the compiler failed on this script".into())))
    })
}

/// The stack of the thread [`compile`] parses on.
pub const COMPILE_STACK_SIZE: usize = 16 * 1024 * 1024;

/// Compiles on the current thread (which must have the stack for it).
fn compile_here(
    source: &str,
    limits: &Limits,
    budget: &CompileBudget,
) -> Result<CompiledScript, CompileError> {
    if let Some((line, column)) = literal_longer_than(source, limits.max_string_bytes) {
        return Err(CompileError {
            message: format!(
                "a string literal exceeds the string size limit of {}",
                limits.max_string_bytes
            ),
            line: Some(line),
            column: Some(column),
            limit: Some(LimitKind::StringSize),
        });
    }
    let mut engine = sandbox_engine();
    configure(&mut engine, limits);
    // No optimiser pass: it runs after the parse, outside the budget's
    // token-by-token check, and its cost grows faster than the source
    // (a 2 MB flood of `1;` took minutes). It changes no result.
    engine.set_optimization_level(rhai::OptimizationLevel::None);
    let started = Instant::now();
    let expired = Arc::new(AtomicBool::new(false));
    let tokens = AtomicU64::new(0);
    let (check, time) = (budget.clone(), budget.time);
    let expired_flag = Arc::clone(&expired);
    let curried = Arc::new(AtomicBool::new(false));
    let curried_flag = Arc::clone(&curried);
    #[allow(deprecated)] // `on_parse_token` is stable, only flagged as "volatile".
    engine.on_parse_token(move |token, _pos, _state| {
        if tokens
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(BUDGET_CHECK_EVERY)
            && (check.is_cancelled() || started.elapsed() > time)
        {
            expired_flag.store(true, Ordering::Relaxed);
        }
        if expired_flag.load(Ordering::Relaxed) {
            return Token::LexError(Box::new(LexError::Runtime("compile budget".into())));
        }
        match token {
            // rhai's tokenizer marks its keyword functions as reserved words.
            Token::Reserved(name) | Token::Identifier(name) if name.as_str() == "curry" => {
                curried_flag.store(true, Ordering::Relaxed);
                Token::LexError(Box::new(LexError::ImproperSymbol(
                    "curry".into(),
                    NO_CURRY.into(),
                )))
            }
            // `Fn(name)` is rhai's own and cannot be replaced; calls go to
            // the sandbox's `fn_ptr`, which bounds the name.
            Token::Reserved(name) | Token::Identifier(name) if name.as_str() == "Fn" => {
                Token::Identifier(Box::new("fn_ptr".into()))
            }
            other => other,
        }
    });
    // Strict variables: `foo + 1` is refused here rather than failing on
    // every call. The one variable a run's scope always has is `request`.
    engine.set_strict_variables(!budget.lenient);
    let mut scope = Scope::new();
    scope.push_dynamic("request", Dynamic::UNIT);
    scope.push_constant_dynamic("env", Dynamic::UNIT);
    let compiled = engine.compile_with_scope(&scope, source);
    if expired.load(Ordering::Relaxed) {
        let message = if budget.is_cancelled() {
            "the compile was cancelled".to_owned()
        } else {
            format!(
                "compiling took longer than the compile budget of {} ms",
                budget.time.as_millis()
            )
        };
        return Err(CompileError {
            message,
            line: None,
            column: None,
            limit: Some(LimitKind::CompileTime),
        });
    }
    compiled
        .map(|ast| CompiledScript {
            needs_scan: assigns_into_values(&ast),
            ast: Arc::new(ast),
            route: Arc::default(),
        })
        .map_err(|err| {
            let mut error = CompileError::from_parse(&err, limits);
            if curried.load(Ordering::Relaxed) {
                // The parser may report the refused word as something else
                // ("expecting name of a property" after a `.`).
                error.message = NO_CURRY.to_owned();
            }
            error
        })
}

/// Whether any assignment in `ast` (function bodies included) has a target
/// other than a plain variable.
fn assigns_into_values(ast: &AST) -> bool {
    let mut found = false;
    ast.walk(&mut |path: &[ASTNode]| {
        if let Some(ASTNode::Stmt(Stmt::Assignment(assignment))) = path.last()
            && !matches!(assignment.1.lhs, Expr::Variable(..))
        {
            found = true;
        }
        !found
    });
    found
}

/// Where the first string literal longer than `max` bytes starts (line and
/// column, 1-based), if any.
///
/// rhai's tokenizer refuses such a literal too, but only after reading it
/// up to the limit a character at a time, with a reallocation per
/// character (seconds for 1 MiB under jemalloc), in one token that the
/// compile budget cannot interrupt. This pass finds it in one linear scan.
/// It knows comments (nested block comments included), `"…"` strings with
/// escapes, `` `…` `` strings (counted whole, interpolations included) and
/// character literals; a literal it over-counts is one past the limit
/// anyway.
fn literal_longer_than(source: &str, max: usize) -> Option<(usize, usize)> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Code,
        LineComment,
        BlockComment(usize),
        Quoted(u8),
    }
    let bytes = source.as_bytes();
    let (mut state, mut i, mut start, mut line, mut line_start) = (State::Code, 0, 0, 1, 0);
    let mut literal_at = (1, 1);
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        if b == b'\n' {
            line += 1;
            line_start = i + 1;
        }
        match state {
            State::Code => match (b, next) {
                (b'/', Some(b'/')) => state = State::LineComment,
                (b'/', Some(b'*')) => {
                    state = State::BlockComment(1);
                    i += 1;
                }
                (b'"' | b'`' | b'\'', _) => {
                    state = State::Quoted(b);
                    start = i + 1;
                    literal_at = (line, i - line_start + 1);
                }
                _ => {}
            },
            State::LineComment => {
                if b == b'\n' {
                    state = State::Code;
                }
            }
            State::BlockComment(depth) => match (b, next) {
                (b'*', Some(b'/')) => {
                    state = if depth == 1 {
                        State::Code
                    } else {
                        State::BlockComment(depth - 1)
                    };
                    i += 1;
                }
                (b'/', Some(b'*')) => {
                    state = State::BlockComment(depth + 1);
                    i += 1;
                }
                _ => {}
            },
            State::Quoted(quote) => {
                if b == b'\\' && quote != b'`' {
                    i += 1;
                } else if b == quote {
                    state = State::Code;
                }
                if i.saturating_sub(start) > max {
                    return Some(literal_at);
                }
            }
        }
        i += 1;
    }
    if let State::Quoted(_) = state
        && bytes.len().saturating_sub(start) > max
    {
        return Some(literal_at);
    }
    None
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
    // Functions whose result can dwarf their input check its size first.
    bounded::register(&mut engine);
    // `kv::…` and `http::…`, so that strict compiles know the modules; a
    // run's engine replaces them with ones bound to its state.
    super::host::register(&mut engine, None);
    super::webhooks::register(&mut engine);
    // rhai's `pad` grows the string a character at a time, one reallocation
    // each (smartstring reallocates even when the capacity suffices): about
    // a second for 1 MiB under jemalloc, in one operation the wall clock
    // cannot interrupt. These build the result in one allocation.
    engine.register_fn(
        "pad",
        |ctx: NativeCallContext, s: &mut ImmutableString, len: i64, c: char| {
            pad_string(&ctx, s, len, c.encode_utf8(&mut [0; 4]))
        },
    );
    engine.register_fn(
        "pad",
        |ctx: NativeCallContext, s: &mut ImmutableString, len: i64, padding: &str| {
            pad_string(&ctx, s, len, padding)
        },
    );
    engine.register_type_with_name::<ResponseValue>("Response");
    engine.register_fn(
        "fn_ptr",
        |name: ImmutableString| -> Result<FnPtr, Box<EvalAltResult>> {
            if name.len() > MAX_FN_NAME_BYTES {
                return Err(
                    format!("Fn: a function name is at most {MAX_FN_NAME_BYTES} bytes").into(),
                );
            }
            FnPtr::new(name)
        },
    );
    engine
}

/// `string.pad(len, padding)`: rhai's semantics (pad to `len` characters
/// with copies of `padding`, the last one cut short), one allocation.
fn pad_string(
    ctx: &NativeCallContext,
    string: &mut ImmutableString,
    len: i64,
    padding: &str,
) -> Result<(), Box<EvalAltResult>> {
    let max = ctx.engine().max_string_size();
    let Ok(len) = usize::try_from(len) else {
        return if len <= 0 {
            Ok(())
        } else {
            Err(too_large("Length of string"))
        };
    };
    if len > max {
        return Err(too_large("Length of string"));
    }
    let have = string.chars().count();
    let unit = padding.chars().count();
    if len <= have || unit == 0 {
        return Ok(());
    }
    let missing = len - have;
    let (whole, rest) = (missing / unit, missing % unit);
    let tail: String = padding.chars().take(rest).collect();
    let bytes = string.len() + whole * padding.len() + tail.len();
    if bytes > max {
        return Err(too_large("Length of string"));
    }
    let mut out = String::with_capacity(bytes);
    out.push_str(string);
    for _ in 0..whole {
        out.push_str(padding);
    }
    out.push_str(&tail);
    *string = out.into();
    Ok(())
}

thread_local! {
    /// Set while this thread runs a script in a sandbox.
    static IN_SANDBOX: Cell<bool> = const { Cell::new(false) };
}

/// Installs, once per process, a panic hook that says nothing for a
/// panic raised while a sandbox runs (the run turns it into an error of its
/// own) and hands every other panic to the hook installed before.
fn install_quiet_panic_hook() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_SANDBOX.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Marks the current thread as running a script until dropped.
struct SandboxRunning;

impl SandboxRunning {
    fn enter() -> Self {
        IN_SANDBOX.with(|flag| flag.set(true));
        Self
    }
}

impl Drop for SandboxRunning {
    fn drop(&mut self) {
        IN_SANDBOX.with(|flag| flag.set(false));
    }
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
    /// Why the run was stopped ([`NOT_STOPPED`] while it may go on).
    stopped: AtomicU8,
    /// How many bytes of native stack the script may use below `stack_base`.
    stack_limit: AtomicUsize,
    /// Nanoseconds after `origin` at which an inline attempt is abandoned;
    /// `u64::MAX` for a run on the pool (which is never abandoned).
    inline_deadline_ns: AtomicU64,
    /// Set by the clock check when the variables are due for a size scan.
    scan_due: AtomicBool,
    /// Nanoseconds after `origin` before which no new scan is due.
    next_scan_ns: AtomicU64,
    /// [`Limits::max_memory_bytes`] of the running invocation.
    max_memory: AtomicUsize,
    /// Bytes charged for `response(...)` values made by this run.
    response_bytes: AtomicUsize,
    /// What the `request` map held when the run started: not charged.
    request_sizes: Mutex<DataSizes>,
    /// The meter's balance when the run started.
    meter_base: AtomicU64,
    /// The memory each frame of the call stack held at its last scan,
    /// by call level (a function's variables live in a scope of their own).
    frame_memory: Mutex<Vec<usize>>,
    log: Mutex<LogBuffer>,
    /// The events `emit` made in this run.
    emitted: Mutex<Vec<crate::domain::Event>>,
    /// The run's host (env, KV, HTTP), if it has one.
    host: Mutex<Option<Arc<dyn ScriptHost>>>,
    /// What the `env` map held when the run started: not charged.
    env_sizes: Mutex<DataSizes>,
    /// KV operations made by this run.
    kv_ops: AtomicUsize,
    /// HTTP requests made by this run.
    http_requests: AtomicUsize,
    /// Bytes of KV values read and written by this run.
    kv_bytes: AtomicUsize,
}

impl super::host::RunContext for RunState {
    fn before_effect(&self) -> Result<(), Box<EvalAltResult>> {
        RunState::before_effect(self)
    }

    fn host(&self) -> Option<Arc<dyn ScriptHost>> {
        lock(&self.host).clone()
    }

    fn deadline(&self) -> Instant {
        let ns = self.deadline_ns.load(Ordering::Relaxed);
        self.origin
            .checked_add(Duration::from_nanos(ns))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
    }

    fn count_kv(&self) -> bool {
        self.kv_ops.fetch_add(1, Ordering::Relaxed) < crate::domain::KV_MAX_OPS_PER_RUN
    }

    fn count_kv_bytes(&self, bytes: usize) -> bool {
        self.kv_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes
            <= super::host::KV_MAX_BYTES_PER_RUN
    }

    fn count_http(&self) -> bool {
        self.http_requests.fetch_add(1, Ordering::Relaxed) < super::host::HTTP_MAX_REQUESTS_PER_RUN
    }

    fn wall_clock(&self) -> Box<EvalAltResult> {
        self.stop(STOPPED_BY_CLOCK);
        EvalAltResult::ErrorTerminated(Dynamic::from(WallClock), Position::NONE).into()
    }
}

/// [`RunState::stopped`]: the run goes on.
const NOT_STOPPED: u8 = 0;
/// [`RunState::stopped`]: past the wall clock.
const STOPPED_BY_CLOCK: u8 = 1;
/// [`RunState::stopped`]: past the stack limit.
const STOPPED_BY_STACK: u8 = 2;
/// [`RunState::stopped`]: past a memory or size limit.
const STOPPED_BY_MEMORY: u8 = 3;
/// [`RunState::stopped`]: printing a value past the string limit.
const STOPPED_BY_TEXT: u8 = 4;
/// [`RunState::stopped`]: an inline attempt past its budget, or about to
/// have an effect; it is abandoned and runs again on the pool.
const STOPPED_BY_BUDGET: u8 = 5;

impl RunState {
    /// Records why the run stopped; the first reason stays.
    fn stop(&self, why: u8) {
        let _ =
            self.stopped
                .compare_exchange(NOT_STOPPED, why, Ordering::Relaxed, Ordering::Relaxed);
    }

    fn now_ns(&self) -> u64 {
        self.ns_at(Instant::now())
    }

    /// `at` as nanoseconds after `origin`.
    fn ns_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether the run is an inline attempt.
    fn is_inline(&self) -> bool {
        self.inline_deadline_ns.load(Ordering::Relaxed) != u64::MAX
    }

    /// The gate every host function with an effect outside the run (a
    /// store write, a network call, `emit`) passes before it acts. On the
    /// pool it lets the call through. In an inline attempt it stops the
    /// run (for good, like every stop) so that the attempt is abandoned
    /// and the run starts again on the pool, before anything happened that
    /// a rerun would repeat.
    ///
    /// `emit` passes here first (`print` and `debug` need not: they are
    /// captured in the run's log, which an abandoned attempt drops).
    pub(crate) fn before_effect(&self) -> Result<(), Box<EvalAltResult>> {
        if !self.is_inline() {
            return Ok(());
        }
        self.stop(STOPPED_BY_BUDGET);
        Err(EvalAltResult::ErrorTerminated(Dynamic::from(OverBudget), Position::NONE).into())
    }

    /// `emit(topic, payload)`: an effect (an inline attempt moves to the
    /// pool first), kept with the run until it ends. A bad topic, more than
    /// [`MAX_EMITS_PER_RUN`](crate::domain::MAX_EMITS_PER_RUN) events, or
    /// a payload past
    /// [`MAX_PAYLOAD_BYTES`](crate::domain::MAX_PAYLOAD_BYTES) of JSON is
    /// a script error naming the limit; the payload's bytes count against
    /// the run's memory.
    fn emit(&self, topic: &str, payload: &Dynamic) -> Result<(), Box<EvalAltResult>> {
        use crate::domain::{Event, MAX_EMITS_PER_RUN, MAX_PAYLOAD_BYTES, Topic};
        self.before_effect()?;
        let topic = Topic::parse(topic).map_err(|e| format!("emit: {e}"))?;
        if lock(&self.emitted).len() >= MAX_EMITS_PER_RUN {
            return Err(format!("emit: at most {MAX_EMITS_PER_RUN} events per run").into());
        }
        let payload = if payload.is_unit() {
            None
        } else {
            let text =
                super::request::json_text_at_most(payload, MAX_PAYLOAD_BYTES).map_err(|e| {
                    if e.starts_with(ANSWER_TOO_LARGE) {
                        format!(
                            "emit: a payload may hold at most {MAX_PAYLOAD_BYTES} bytes of JSON"
                        )
                    } else {
                        format!("emit: the payload has no JSON form: {e}")
                    }
                })?;
            Some(text)
        };
        self.charge_response(topic.len() + payload.as_ref().map_or(0, String::len))?;
        lock(&self.emitted).push(Event {
            id: crate::ids::EventId::new(),
            topic,
            payload,
        });
        Ok(())
    }

    /// Charges `bytes` of `response(...)` values against the memory limit.
    fn charge_response(&self, bytes: usize) -> Result<(), Box<EvalAltResult>> {
        let total = self.response_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if total > self.max_memory.load(Ordering::Relaxed) {
            return Err(too_large("Memory of response values"));
        }
        Ok(())
    }

    fn log(&self) -> std::sync::MutexGuard<'_, LogBuffer> {
        // A panic while holding the lock cannot leave the buffer in a state
        // worse than "some lines": keep going.
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Locks a mutex of the run state; a panic while holding it (only ever in
/// a script run, which is then discarded) leaves nothing half-done.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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
        let cut = line.floor_char_boundary(room);
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
    /// The engine with the variable scan.
    scanning: Engine,
    /// The engine without it, for scripts that cannot outgrow the limits
    /// unseen when allocations are metered (`None` when they are not).
    plain: Option<Engine>,
    state: Arc<RunState>,
    scope: Scope<'static>,
    metered: bool,
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
            stopped: AtomicU8::new(NOT_STOPPED),
            stack_limit: AtomicUsize::new(bytes),
            inline_deadline_ns: AtomicU64::new(u64::MAX),
            scan_due: AtomicBool::new(false),
            next_scan_ns: AtomicU64::new(0),
            max_memory: AtomicUsize::new(usize::MAX),
            response_bytes: AtomicUsize::new(0),
            meter_base: AtomicU64::new(0),
            request_sizes: Mutex::new(DataSizes::default()),
            frame_memory: Mutex::new(Vec::new()),
            log: Mutex::new(LogBuffer::default()),
            emitted: Mutex::new(Vec::new()),
            host: Mutex::new(None),
            env_sizes: Mutex::new(DataSizes::default()),
            kv_ops: AtomicUsize::new(0),
            http_requests: AtomicUsize::new(0),
            kv_bytes: AtomicUsize::new(0),
        });
        install_quiet_panic_hook();
        let metered = meter_balance().is_some();
        Self {
            scanning: run_engine(&state, metered, true),
            // Unmetered, the scan is the only bound on memory: always scan.
            plain: (metered).then(|| run_engine(&state, metered, false)),
            state,
            scope: Scope::new(),
            metered,
        }
    }

    /// Whether this sandbox's allocations are metered (feature `meter`,
    /// with [`MeteredAllocator`](super::meter) as the global allocator).
    pub fn is_metered(&self) -> bool {
        self.metered
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
        self.run_hosted(script, request, limits, None)
    }

    /// [`run`](Self::run) with `host` for the script's `env`, `kv::…` and
    /// `http::…` (without one, `env` is empty and the calls fail).
    pub fn run_hosted(
        &mut self,
        script: &CompiledScript,
        request: ScriptRequest,
        limits: &Limits,
        host: Option<Arc<dyn ScriptHost>>,
    ) -> Invocation {
        let limits = limits.clamped();
        let request = Dynamic::from_map(request.into_rhai());
        self.evaluate(script, request, &limits, None, host)
    }

    /// Attempts `script` inline, under `budget` (see [`super::inline`]):
    /// the run's own limits, lowered to the budget's operations, sizes and
    /// memory, with the budget's wall clock and native stack.
    ///
    /// `Some` when the run finished within the budget: its answer or its
    /// script error, exactly what a run on the pool would give. `None` when
    /// it was **abandoned**: past the budget, past any limit (the pool's
    /// limits are higher, and the pool's run says what the answer is), or
    /// about to have an effect outside the run. An abandoned attempt keeps
    /// nothing: its logs are dropped and it had no effect, so the run can
    /// start again from the beginning elsewhere.
    pub fn try_inline(
        &mut self,
        script: &CompiledScript,
        request: &ScriptRequest,
        limits: &Limits,
        budget: &InlineBudget,
        host: Option<Arc<dyn ScriptHost>>,
    ) -> Option<Invocation> {
        let limits = budget.lower(&limits.clamped());
        let request = Dynamic::from_map(request.to_rhai());
        let pool_stack = self.state.stack_limit.swap(budget.stack, Ordering::Relaxed);
        let invocation = self.evaluate(script, request, &limits, Some(budget.time), host);
        self.state.stack_limit.store(pool_stack, Ordering::Relaxed);
        let abandoned = self.state.stopped.load(Ordering::Relaxed) == STOPPED_BY_BUDGET
            || matches!(
                invocation.outcome,
                Err(ExecError::LimitExceeded { .. } | ExecError::Internal(_))
            );
        (!abandoned).then_some(invocation)
    }

    /// Runs `script` with `request` as its `request` variable, under
    /// `limits` (already clamped); `inline` is the wall clock of an inline
    /// attempt.
    fn evaluate(
        &mut self,
        script: &CompiledScript,
        request: Dynamic,
        limits: &Limits,
        inline: Option<Duration>,
        host: Option<Arc<dyn ScriptHost>>,
    ) -> Invocation {
        let engine = match (&mut self.plain, script.needs_scan) {
            (Some(plain), false) => plain,
            _ => &mut self.scanning,
        };
        configure(engine, limits);
        self.state.log().reset(limits.max_output_bytes);
        lock(&self.state.emitted).clear();
        self.state.kv_ops.store(0, Ordering::Relaxed);
        self.state.http_requests.store(0, Ordering::Relaxed);
        self.state.kv_bytes.store(0, Ordering::Relaxed);
        let env = Dynamic::from_map(super::host::env_map(host.as_ref()));
        let env_sizes = values::data_sizes(&env);
        *lock(&self.state.env_sizes) = env_sizes;
        *lock(&self.state.host) = host;

        let start = Instant::now();
        let _running = SandboxRunning::enter();
        if let Some(base) = meter_balance() {
            self.state.meter_base.store(base, Ordering::Relaxed);
        }
        let mut request_sizes = values::data_sizes(&request);
        *lock(&self.state.request_sizes) = request_sizes;
        // The limits below make room for what the run was given: its
        // request and its environment.
        request_sizes.add(env_sizes);
        // rhai checks a value whole whenever a method is called on it, so a
        // request within the body limit (a 200k-element JSON array, a 600 KB
        // string, which `body` and `json` hold twice) would fail the script
        // by itself: a run's size limits are at least what its request holds.
        engine
            .set_max_string_size(limits.max_string_bytes.max(request_sizes.strings))
            .set_max_array_size(limits.max_array_len.max(request_sizes.arrays))
            .set_max_map_size(limits.max_map_len.max(request_sizes.maps));
        lock(&self.state.frame_memory).clear();
        self.state
            .max_memory
            .store(limits.max_memory_bytes, Ordering::Relaxed);
        self.state.response_bytes.store(0, Ordering::Relaxed);
        self.scope.clear();
        self.scope.push_dynamic("request", request);
        self.scope.push_constant_dynamic("env", env);
        // One clock read (`start`) sets every time of the run.
        let now = self.state.ns_at(start);
        let wall = u64::try_from(limits.wall_clock.as_nanos()).unwrap_or(u64::MAX);
        self.state
            .deadline_ns
            .store(now.saturating_add(wall), Ordering::Relaxed);
        let inline_deadline = inline.map_or(u64::MAX, |time| {
            let time = u64::try_from(time.as_nanos()).unwrap_or(u64::MAX);
            now.saturating_add(time).min(u64::MAX - 1)
        });
        self.state
            .inline_deadline_ns
            .store(inline_deadline, Ordering::Relaxed);
        self.state
            .stack_base
            .store(stack_position(), Ordering::Relaxed);
        self.state.scan_due.store(false, Ordering::Relaxed);
        self.state.stopped.store(NOT_STOPPED, Ordering::Relaxed);
        self.state
            .next_scan_ns
            .store(now + SCAN_EVERY_NS, Ordering::Relaxed);

        let result = engine.eval_ast_with_scope::<Dynamic>(&mut self.scope, &script.ast);

        self.state.deadline_ns.store(u64::MAX, Ordering::Relaxed);
        self.state
            .inline_deadline_ns
            .store(u64::MAX, Ordering::Relaxed);
        self.scope.clear();
        *lock(&self.state.host) = None;
        let result = match result {
            Err(err) => match *err {
                EvalAltResult::Exit(value, _) | EvalAltResult::Return(value, _) => Ok(value),
                other => Err(other.into()),
            },
            ok => ok,
        };
        // A run stopped by a callback that could not fail (printing) and
        // then ended without another operation still fails.
        let result = match (result, self.state.stopped.load(Ordering::Relaxed)) {
            (Ok(_), STOPPED_BY_TEXT) => Err(EvalAltResult::ErrorTerminated(
                Dynamic::from(TextExhausted),
                Position::NONE,
            )
            .into()),
            (result, _) => result,
        };
        // An answer's JSON text is at most twice the string limit plus
        // 1 MiB: quoting and structure, not six-fold escapes.
        let max_json = engine
            .max_string_size()
            .saturating_mul(2)
            .saturating_add(1024 * 1024);
        // The answer is written out whole (as JSON or text): a value that
        // holds one string many times would be that many times larger.
        let result = result.and_then(|value| {
            let sizes = values::data_sizes(&value);
            check_sizes(engine, sizes)?;
            if sizes.memory > limits.max_memory_bytes.max(request_sizes.memory) {
                return Err(too_large("Memory of the answer"));
            }
            Ok(value)
        });
        let runtime = |message: String| ExecError::runtime(message, (None, None));
        let outcome = match result {
            Ok(value) => into_response(value, max_json).map_err(|message| {
                if message.starts_with(ANSWER_TOO_LARGE) {
                    ExecError::from_eval(&too_large("Length of string"), limits)
                } else {
                    runtime(message)
                }
            }),
            Err(err) => Err(ExecError::from_eval(&err, limits)),
        };
        self.finish(start, outcome)
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
            emitted: std::mem::take(&mut *lock(&self.state.emitted)),
        }
    }
}

/// The engine of one [`Sandbox`], its callbacks sharing `state`; with
/// `scan`, the variable scan (see [`Sandbox::with_stack_limit`]'s comments
/// and [`CompiledScript::needs_scan`]).
fn run_engine(state: &Arc<RunState>, metered: bool, scan: bool) -> Engine {
    let mut engine = sandbox_engine();
    let host_state: Arc<dyn super::host::RunContext> = Arc::clone(state) as _;
    super::host::register(&mut engine, Some(host_state));
    let print_stop = Arc::clone(state);
    bounded::register_printing(&mut engine, move || print_stop.stop(STOPPED_BY_TEXT));

    // `response(...)` values are charged when they are made: they may be
    // built inside a literal or a native loop, where no scan sees them.
    let response_state = Arc::clone(state);
    engine.register_fn(
        "response",
        move |status: i64, body: Dynamic| -> Result<ResponseValue, Box<EvalAltResult>> {
            response_state.charge_response(values::data_sizes(&body).memory)?;
            ResponseValue::new(status, body, None)
        },
    );
    let response_state = Arc::clone(state);
    engine.register_fn(
        "response",
        move |status: i64,
              body: Dynamic,
              headers: Map|
              -> Result<ResponseValue, Box<EvalAltResult>> {
            let bytes = values::data_sizes(&body).memory
                + values::data_sizes(&Dynamic::from_map(headers.clone())).memory;
            response_state.charge_response(bytes)?;
            ResponseValue::new(status, body, Some(headers))
        },
    );
    for with_payload in [false, true] {
        let emit_state = Arc::clone(state);
        if with_payload {
            engine.register_fn(
                "emit",
                move |topic: &str, payload: Dynamic| -> Result<(), Box<EvalAltResult>> {
                    emit_state.emit(topic, &payload)
                },
            );
        } else {
            engine.register_fn(
                "emit",
                move |topic: &str| -> Result<(), Box<EvalAltResult>> {
                    emit_state.emit(topic, &Dynamic::UNIT)
                },
            );
        }
    }
    let progress_state = Arc::clone(state);
    engine.on_progress(move |ops| {
        // Every operation: is the script's recursion (calls, closures,
        // nested expressions, native callbacks into the script) about to
        // exhaust the thread's stack? The call-depth limit normally stops
        // it first; this backs it up whatever the frame sizes (a debug
        // build's are several times a release build's).
        if ops % STACK_CHECK_EVERY != 0 {
            return None;
        }
        // A run stopped once stays stopped: every later check stops it
        // again, so a native function that calls back into the script and
        // ignores the error (or a `try`/`catch` around a size error) cannot
        // carry on past a limit for more than a few operations per call.
        match progress_state.stopped.load(Ordering::Relaxed) {
            NOT_STOPPED => {}
            STOPPED_BY_CLOCK => return Some(Dynamic::from(WallClock)),
            STOPPED_BY_STACK => return Some(Dynamic::from(StackExhausted)),
            STOPPED_BY_TEXT => return Some(Dynamic::from(TextExhausted)),
            STOPPED_BY_BUDGET => return Some(Dynamic::from(OverBudget)),
            _ => return Some(Dynamic::from(MemoryExhausted)),
        }
        let base = progress_state.stack_base.load(Ordering::Relaxed);
        if base.abs_diff(stack_position()) > progress_state.stack_limit.load(Ordering::Relaxed) {
            progress_state.stop(STOPPED_BY_STACK);
            return Some(Dynamic::from(StackExhausted));
        }
        // An inline attempt reads the clock at every stack check: its
        // budget is about a hundred microseconds, and the async worker it
        // holds serves other requests.
        let inline_deadline = progress_state.inline_deadline_ns.load(Ordering::Relaxed);
        if inline_deadline != u64::MAX && progress_state.now_ns() >= inline_deadline {
            progress_state.stop(STOPPED_BY_BUDGET);
            return Some(Dynamic::from(OverBudget));
        }
        // Every allocation of this run, wherever it is held.
        if metered
            && ops.is_multiple_of(METER_CHECK_EVERY)
            && let Some(balance) = meter_balance()
        {
            let used = balance.wrapping_sub(progress_state.meter_base.load(Ordering::Relaxed));
            // A balance below the start (values freed) wraps to a huge
            // number: only a positive difference is a use.
            if (used as i64) > 0 && used > progress_state.max_memory.load(Ordering::Relaxed) as u64
            {
                progress_state.stop(STOPPED_BY_MEMORY);
                return Some(Dynamic::from(MemoryExhausted));
            }
        }
        if ops % CLOCK_CHECK_EVERY != 0 {
            return None;
        }
        let now = progress_state.now_ns();
        if now >= progress_state.next_scan_ns.load(Ordering::Relaxed) {
            progress_state.scan_due.store(true, Ordering::Relaxed);
        }
        let deadline = progress_state.deadline_ns.load(Ordering::Relaxed);
        (now >= deadline).then(|| {
            progress_state.stop(STOPPED_BY_CLOCK);
            Dynamic::from(WallClock)
        })
    });
    if scan {
        // rhai checks the size of a whole array or map when it grows through
        // a method (`push`, `+=`, a property set), but `m[key] = value` and
        // `a[i] = value` only check the new element: a loop of index
        // assignments can build a map of millions of keys, or an array of
        // thousands of 1 MiB strings, unchecked, until the value is next used
        // whole. So about once a millisecond of running (and never more than
        // a tenth of the time), the next variable access re-checks every
        // variable in scope against the size limits. Variable access is the
        // one hook that sees the scope.
        let scan_state = Arc::clone(state);
        #[allow(deprecated)] // `on_var` is stable, only flagged as "volatile".
        engine.on_var(move |_name, _index, context| {
            if !scan_state.scan_due.load(Ordering::Relaxed) {
                return Ok(None);
            }
            scan_state.scan_due.store(false, Ordering::Relaxed);
            let started = scan_state.now_ns();
            let engine = context.engine();
            let level = context.call_level();
            let allowance = *lock(&scan_state.request_sizes);
            let env_allowance = *lock(&scan_state.env_sizes);
            let mut frame = 0_usize;
            // A size error stops the run for good (see `stopped`): a script's
            // `try`/`catch` cannot keep it going.
            let checked = (|| {
                for (name, _, value) in context.scope().iter_raw() {
                    let mut sizes = values::data_sizes(value);
                    if level == 0 && name == "request" {
                        sizes = sizes.less(allowance);
                    } else if level == 0 && name == "env" {
                        sizes = sizes.less(env_allowance);
                    }
                    check_sizes(engine, sizes)?;
                    frame = frame.saturating_add(sizes.memory);
                }
                if let Some(this) = context.this_ptr() {
                    let sizes = values::data_sizes(this);
                    check_sizes(engine, sizes)?;
                    frame = frame.saturating_add(sizes.memory);
                }
                let total = {
                    let mut frames = lock(&scan_state.frame_memory);
                    // Deeper frames measured earlier have returned since.
                    frames.resize(level + 1, 0);
                    frames[level] = frame;
                    frames.iter().fold(0_usize, |a, b| a.saturating_add(*b))
                };
                let total = total.saturating_add(scan_state.response_bytes.load(Ordering::Relaxed));
                if total > scan_state.max_memory.load(Ordering::Relaxed) {
                    return Err(too_large("Memory of variables"));
                }
                Ok(())
            })();
            if let Err(err) = checked {
                scan_state.stop(STOPPED_BY_MEMORY);
                return Err(err);
            }
            let now = scan_state.now_ns();
            let pause = (now - started)
                .saturating_mul(10)
                .clamp(SCAN_EVERY_NS, SCAN_AT_MOST_EVERY_NS);
            scan_state
                .next_scan_ns
                .store(now.saturating_add(pause), Ordering::Relaxed);
            Ok(None)
        });
    }
    let print_state = Arc::clone(state);
    engine.on_print(move |text| print_state.log().push(text));
    let debug_state = Arc::clone(state);
    engine.on_debug(move |text, _source, pos: Position| {
        let line = match pos.line() {
            Some(line) => format!("[debug line {line}] {text}"),
            None => format!("[debug] {text}"),
        };
        debug_state.log().push(&line);
    });

    engine
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::{Sandbox, literal_longer_than};
    use crate::executor::{InlineBudget, Limits, ScriptRequest, compile};

    /// A sandbox with a host function `effect()` that has an effect (a
    /// count), behind the effect gate, on both its engines.
    fn with_effect() -> (Sandbox, Arc<AtomicUsize>) {
        let mut sandbox = Sandbox::new();
        let effects = Arc::new(AtomicUsize::new(0));
        let engines = std::iter::once(&mut sandbox.scanning).chain(sandbox.plain.as_mut());
        for engine in engines {
            let (state, effects) = (Arc::clone(&sandbox.state), Arc::clone(&effects));
            engine.register_fn("effect", move || -> Result<(), Box<rhai::EvalAltResult>> {
                state.before_effect()?;
                effects.fetch_add(1, Ordering::Relaxed);
                Ok(())
            });
        }
        (sandbox, effects)
    }

    #[test]
    fn an_effect_moves_an_inline_attempt_to_the_pool_before_it_happens() {
        let (mut sandbox, effects) = with_effect();
        let budget = InlineBudget::default();
        let limits = Limits::default();
        let request = ScriptRequest::default();
        // `try` cannot keep the attempt going past the gate.
        let script = compile(
            r#"print("before"); try { effect() } catch { print("caught") } print("after"); 1"#,
            &limits,
        )
        .unwrap();
        assert!(
            sandbox
                .try_inline(&script, &request, &limits, &budget, None)
                .is_none()
        );
        assert_eq!(
            effects.load(Ordering::Relaxed),
            0,
            "abandoned before the effect"
        );
        let run = sandbox.run(&script, request.clone(), &limits);
        assert_eq!(run.outcome.unwrap().body_text(), Some("1"));
        assert_eq!(run.logs, ["before", "after"]);
        assert_eq!(
            effects.load(Ordering::Relaxed),
            1,
            "the pool's run has it once"
        );
        // Without an effect, the same sandbox answers inline.
        let plain = compile(r#"print("x"); 2"#, &limits).unwrap();
        let run = sandbox
            .try_inline(&plain, &request, &limits, &budget, None)
            .unwrap();
        assert_eq!(
            (run.outcome.unwrap().body_text(), run.logs),
            (Some("2"), vec!["x".to_owned()])
        );
    }

    #[test]
    fn assignments_into_values_need_the_scan() {
        let scans = |src: &str| compile(src, &Limits::default()).unwrap().needs_scan();
        assert!(!scans(
            "let x = 1; x = 2; x += 3; let a = [1]; a.push(2); a"
        ));
        assert!(scans("let a = [1]; a[0] = 2;"));
        assert!(scans("let m = #{}; m.k = 1;"));
        assert!(scans("let m = #{k: [1]}; m.k[0] += 1;"));
        assert!(scans("fn f(m) { m[\"k\"] = 1 } 1"));
        assert!(scans("let f = |m| { m[0] = 1; m }; 1"));
        assert!(scans("fn grow() { this[\"k\"] = 1 } 1"));
    }

    #[test]
    fn long_literals_are_found_without_the_tokenizer() {
        let long = "x".repeat(100);
        assert_eq!(
            literal_longer_than(&format!("let s = \"{long}\";"), 99),
            Some((1, 9))
        );
        assert_eq!(
            literal_longer_than(&format!("let s = \"{long}\";"), 100),
            None
        );
        assert_eq!(
            literal_longer_than(&format!("1;\n  `{long}`"), 50),
            Some((2, 3))
        );
        // Escapes, comments and short literals around a long comment.
        let src =
            format!("let a = \"a\\\"b\"; // {long}\n/* /* {long} */ */ let c = 'x'; \"{long}");
        assert_eq!(literal_longer_than(&src, 99), Some((2, 127)));
        assert_eq!(literal_longer_than(&src[..src.len() - 100], 10), None);
    }
}
