//! Script execution speed: what the sandbox costs, what the pool costs, and
//! how long compiling takes.
//!
//! - `cpu/plain`: a bare `Engine::new_raw()` + standard package running the
//!   AST, no limits, no callbacks: the baseline.
//! - `cpu/sandboxed`: the same AST through [`Sandbox::run`] on this thread:
//!   every limit set, the wall-clock and stack checks in `on_progress`,
//!   request and response conversion. Target (DESIGN.md): at most 1.10× the
//!   baseline. The ratio is measured again at the end, interleaved, and
//!   printed.
//! - `pool/*`: [`RhaiExecutor::execute`] from a Tokio runtime with the fast
//!   path off: the hand-off to a worker thread and back, for a trivial
//!   script and the CPU script.
//! - `inline/*`: the fast path. One inline run of a trivial script (against
//!   the same script through the pool), and one attempt abandoned past the
//!   budget followed by its run on the pool (against the pool run alone,
//!   and against a run sent straight to the pool while its script cools
//!   down).
//! - `compile/200 lines`: [`compile`] of a 200-line script (helper thread
//!   included).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;

/// The binary's allocator: the sandbox's memory meter is then part of what
/// is measured (plain `eval_ast` runs on the same allocator).
#[global_allocator]
static ALLOCATOR: picloud_core::executor::meter::MeteredAllocator =
    picloud_core::executor::meter::MeteredAllocator;
use picloud_core::executor::rhai::packages::{Package, StandardPackage};
use picloud_core::executor::rhai::{Dynamic, Engine, Scope};
use picloud_core::executor::{
    CompiledScript, ExecutorConfig, InlineBudget, Invocation, Limits, RhaiExecutor, Sandbox,
    ScriptRequest, compile,
};

/// Counts primes below 5 000 by trial division: loops, arithmetic,
/// comparisons, variables; no allocation.
const PRIMES: &str = r#"
let count = 0;
for n in 2..5000 {
    let is_prime = true;
    let d = 2;
    while d * d <= n {
        if n % d == 0 { is_prime = false; break; }
        d += 1;
    }
    if is_prime { count += 1; }
}
count
"#;

/// Recursive Fibonacci: script function calls.
const FIB: &str = "fn fib(n) { if n < 2 { n } else { fib(n - 1) + fib(n - 2) } } fib(18)";

const TRIVIAL: &str = r#"#{ ok: true, method: request.method }"#;

/// Past the inline budget's 5 000 operations, early: some 6 000.
const OVER_BUDGET: &str = r#"let n = 0; for i in 0..2000 { n += i } #{ n: n }"#;

fn plain_engine() -> Engine {
    let mut engine = Engine::new_raw();
    engine.register_global_module(StandardPackage::new().as_shared_module());
    engine
}

/// A 200-line script: functions, maps, loops, string work.
fn two_hundred_lines() -> String {
    let mut src = String::new();
    for i in 0..40 {
        src.push_str(&format!(
            "fn handler_{i}(req, n) {{\n    let out = #{{ id: {i}, path: req.path }};\n    for k in 0..n {{ out[`k${{k}}`] = k * {i} + 1; }}\n    out\n}}\n"
        ));
    }
    assert_eq!(src.lines().count(), 200);
    src
}

fn request() -> ScriptRequest {
    ScriptRequest {
        method: "GET".into(),
        path: "/".into(),
        ..ScriptRequest::default()
    }
}

const TENANTS: [&str; 8] = ["a", "b", "c", "d", "e", "f", "g", "h"];

fn bench(c: &mut Criterion, rt: &tokio::runtime::Runtime, executor: &Arc<RhaiExecutor>) {
    let limits = Limits::default();
    let plain = plain_engine();
    let mut sandbox = Sandbox::new();

    for (name, source) in [("primes", PRIMES), ("fib", FIB)] {
        let script = compile(source, &limits).expect("compiles");
        let mut g = c.benchmark_group(format!("cpu/{name}"));
        g.bench_function("plain eval_ast", |b| {
            b.iter(|| {
                plain
                    .eval_ast_with_scope::<Dynamic>(&mut Scope::new(), black_box(script.ast()))
                    .expect("runs")
            })
        });
        g.bench_function("sandboxed Sandbox::run", |b| {
            b.iter(|| {
                let inv = sandbox.run(black_box(&script), request(), &limits);
                assert!(inv.outcome.is_ok());
                inv
            })
        });
        g.bench_function("pool RhaiExecutor::execute", |b| {
            b.to_async(rt).iter(|| async {
                executor
                    .execute("bench", &script, request(), &limits)
                    .await
                    .expect("runs")
            })
        });
        g.finish();
    }

    let trivial = compile(TRIVIAL, &limits).expect("compiles");
    let mut g = c.benchmark_group("trivial");
    g.bench_function("sandboxed Sandbox::run", |b| {
        b.iter(|| sandbox.run(black_box(&trivial), request(), &limits))
    });
    g.bench_function("pool RhaiExecutor::execute", |b| {
        b.to_async(rt).iter(|| async {
            executor
                .execute("bench", &trivial, request(), &limits)
                .await
                .expect("runs")
        })
    });
    // Throughput: 64 requests in flight from 8 tenants, per batch.
    g.throughput(criterion::Throughput::Elements(64));
    g.bench_function("pool, 64 concurrent", |b| {
        b.to_async(rt).iter(|| async {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..64 {
                let (executor, trivial) = (Arc::clone(executor), trivial.clone());
                set.spawn(async move {
                    executor
                        .execute(TENANTS[i % TENANTS.len()], &trivial, request(), &limits)
                        .await
                        .expect("runs")
                });
            }
            while let Some(done) = set.join_next().await {
                done.expect("joins");
            }
        })
    });
    g.finish();
    bench_inline(c, rt, executor);

    let source = two_hundred_lines();
    let mut g = c.benchmark_group("compile");
    g.bench_function("200 lines", |b| {
        b.iter(|| compile(black_box(&source), &limits).expect("compiles"))
    });
    g.finish();
}

/// One successful run through `ex`.
async fn run(ex: &RhaiExecutor, script: &CompiledScript) -> Invocation {
    let inv = ex
        .execute("bench", script, request(), &Limits::default())
        .await
        .expect("runs");
    assert!(inv.outcome.is_ok());
    inv
}

/// The fast path: an inline run, and an abandoned attempt plus its pool run.
fn bench_inline(c: &mut Criterion, rt: &tokio::runtime::Runtime, pool: &Arc<RhaiExecutor>) {
    let limits = Limits::default();
    let executor = |cooldown: Duration| {
        RhaiExecutor::new(ExecutorConfig {
            inline: Some(InlineBudget {
                cooldown,
                ..InlineBudget::default()
            }),
            ..ExecutorConfig::default()
        })
        .expect("executor")
    };
    // No cool-down: every run is attempted inline first.
    let eager = executor(Duration::ZERO);
    let cooling = executor(Duration::from_secs(3600));
    let trivial = compile(TRIVIAL, &limits).expect("compiles");
    let over = compile(OVER_BUDGET, &limits).expect("compiles");
    let mut g = c.benchmark_group("inline");
    g.bench_function("trivial: inline run", |b| {
        b.to_async(rt).iter(|| run(&eager, &trivial))
    });
    g.bench_function("trivial: pool run", |b| {
        b.to_async(rt).iter(|| run(pool, &trivial))
    });
    g.bench_function("over budget: abandoned attempt + pool run", |b| {
        b.to_async(rt).iter(|| run(&eager, &over))
    });
    g.bench_function("over budget: pool run", |b| {
        b.to_async(rt).iter(|| run(pool, &over))
    });
    rt.block_on(run(&cooling, &over)); // abandoned once: cooling down now
    g.bench_function("over budget: cooling down, straight to the pool", |b| {
        b.to_async(rt).iter(|| run(&cooling, &over))
    });
    g.finish();
    let (e, c) = (eager.stats(), cooling.stats());
    assert_eq!(
        e.inline_abandoned, e.pool_runs,
        "every over-budget run was attempted"
    );
    assert_eq!(c.inline_abandoned, 1, "then cooled down: {c:?}");
}

/// The sandbox-overhead ratio, measured interleaved so that both sides see
/// the same machine state: the median of per-round ratios.
fn overhead_ratio(source: &str, rounds: usize) -> (f64, Duration, Duration) {
    let limits = Limits::default();
    let script = compile(source, &limits).expect("compiles");
    let plain = plain_engine();
    let mut sandbox = Sandbox::new();
    let mut ratios = Vec::with_capacity(rounds);
    let (mut plain_total, mut sandbox_total) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        let t = Instant::now();
        let _ = black_box(
            plain
                .eval_ast_with_scope::<Dynamic>(&mut Scope::new(), script.ast())
                .expect("runs"),
        );
        let p = t.elapsed();
        let t = Instant::now();
        black_box(sandbox.run(&script, request(), &limits));
        let s = t.elapsed();
        plain_total += p;
        sandbox_total += s;
        ratios.push(s.as_secs_f64() / p.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    let n = u32::try_from(rounds).unwrap_or(u32::MAX);
    (ratios[rounds / 2], plain_total / n, sandbox_total / n)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .expect("runtime");
    // The pool alone (the fast path has its own group).
    let executor = Arc::new(
        RhaiExecutor::new(ExecutorConfig {
            inline: None,
            ..ExecutorConfig::default()
        })
        .expect("executor"),
    );
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    bench(&mut c, &rt, &executor);
    c.final_summary();

    println!("\nsandbox overhead (median of interleaved rounds; target <= 1.10):");
    for (name, source) in [("primes", PRIMES), ("fib", FIB)] {
        let (ratio, plain, sandboxed) = overhead_ratio(source, 200);
        println!(
            "  {name:>6}: plain {plain:>10.2?}  sandboxed {sandboxed:>10.2?}  ratio {ratio:.3}"
        );
    }
}
