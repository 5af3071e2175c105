//! The fast path: a run is attempted inline under the budget and moves to
//! the pool past it, and a script cannot tell which path it took (every
//! output form, the logs and the errors are the same). Paths are observed
//! through [`ExecutorStats`]; no test measures speed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use picloud_core::executor::{
    CompiledScript, ExecError, ExecErrorKind, ExecutorConfig, ExecutorStats, InlineBudget,
    Invocation, LimitKind, Limits, RhaiExecutor, ScriptRequest, compile,
};

/// Taken by the tests that keep the pool busy, so that another test's
/// loops do not slow down the one that measures a wall clock.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A budget that a short script meets even on a loaded, debug-built test
/// machine (the time is generous; operations decide).
fn budget() -> InlineBudget {
    InlineBudget {
        time: Duration::from_millis(250),
        cooldown: Duration::ZERO,
        ..InlineBudget::default()
    }
}

fn inline_executor(budget: InlineBudget) -> RhaiExecutor {
    RhaiExecutor::new(ExecutorConfig {
        inline: Some(budget),
        ..ExecutorConfig::with_workers(2)
    })
    .unwrap()
}

fn pool_executor() -> RhaiExecutor {
    RhaiExecutor::new(ExecutorConfig {
        inline: None,
        ..ExecutorConfig::with_workers(2)
    })
    .unwrap()
}

fn request(path: &str) -> ScriptRequest {
    ScriptRequest {
        method: "POST".into(),
        path: path.into(),
        query: [("q".to_owned(), "1".to_owned())].into(),
        query_repeated: Default::default(),
        headers: [("x-h".to_owned(), "v".to_owned())].into(),
        body: r#"{"n": 2}"#.into(),
        event: None,
    }
}

/// The change in the path counters between two snapshots.
fn paths(before: ExecutorStats, after: ExecutorStats) -> (u64, u64, u64, u64) {
    (
        after.inline_completed - before.inline_completed,
        after.inline_abandoned - before.inline_abandoned,
        after.inline_skipped - before.inline_skipped,
        after.pool_runs - before.pool_runs,
    )
}

/// What a run answered, without its duration.
fn answer(
    inv: &Invocation,
) -> (
    Result<picloud_core::executor::ScriptResponse, ExecError>,
    Vec<String>,
    bool,
) {
    (inv.outcome.clone(), inv.logs.clone(), inv.truncated_logs)
}

/// Every output form, logs and errors (DESIGN.md "Scripts and invocation").
const CORPUS: &[&str] = &[
    r#""plain text""#,
    r#"#{ hello: "world", n: request.json.n, q: request.query.q, h: request.headers["x-h"] }"#,
    r#"[1, 2.5, true, (), "x"]"#,
    "42",
    "()",
    r#"response(201, "created", #{ "x-a": "1", "content-type": "text/csv" })"#,
    r#"response(202, #{ ok: true })"#,
    r#"response(200, blob(3, 65))"#,
    r#"response(204, ())"#,
    "print(\"one\");\ndebug(\"two\");\nrequest.method + request.path",
    "let x = 1;\nx + \"a\" * 2",
    "throw \"no\";",
    "print(\"before\");\nlet m = #{};\nm.missing.deeper",
    "exit(\"early\"); 1",
    r#"fn f(x) { if x == 0 { throw "deep" } f(x - 1) } f(5)"#,
    "response(99, ())",
    "Fn(\"nope\")",
    r#"for i in 0..50 { print(`line ${i} ` + "x".pad(40, "x")) } "logged""#,
];

/// The same script, but over the budget: a loop of some 9 000 operations
/// first, on the first line, so line numbers stay.
fn over(source: &str) -> String {
    format!("let __n = 0; for __i in 0..3000 {{ __n += 1 }} {source}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_and_over_the_budget_answer_exactly_as_the_pool_does() {
    let _serial = SERIAL.lock().await;
    let inline = inline_executor(budget());
    let pool = pool_executor();
    // Small logs, so that truncation is compared too.
    let limits = Limits {
        max_output_bytes: 1024,
        ..Limits::default()
    };
    for source in CORPUS {
        for (variant, source, path) in [
            ("under", source.to_string(), (1, 0, 0, 0)),
            ("over", over(source), (0, 1, 0, 1)),
        ] {
            let script = compile(&source, &limits).unwrap();
            let reference = pool
                .execute("app", &script, request("/p"), &limits)
                .await
                .unwrap();
            let script = compile(&source, &limits).unwrap();
            let before = inline.stats();
            let got = inline
                .execute("app", &script, request("/p"), &limits)
                .await
                .unwrap();
            assert_eq!(
                paths(before, inline.stats()),
                path,
                "{variant}: the path of {source}"
            );
            assert_eq!(answer(&got), answer(&reference), "{variant}: {source}");
        }
    }
    // The pool-only executor never attempted anything inline.
    let stats = pool.stats();
    assert_eq!((stats.inline_completed, stats.inline_abandoned), (0, 0));
    assert_eq!(stats.pool_runs, 2 * CORPUS.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_moves_to_the_pool_and_gets_its_full_wall_clock() {
    let _serial = SERIAL.lock().await;
    let ex = inline_executor(InlineBudget::default());
    let limits = Limits {
        wall_clock: Duration::from_millis(400),
        max_operations: Limits::MAX_OPERATIONS,
        ..Limits::default()
    };
    let script = compile("loop {}", &limits).unwrap();
    let started = Instant::now();
    let inv = ex
        .execute("app", &script, ScriptRequest::default(), &limits)
        .await
        .unwrap();
    let err = inv.outcome.unwrap_err();
    assert_eq!(err.kind(), ExecErrorKind::Timeout, "{err}");
    assert_eq!(err.limit(), Some(LimitKind::WallClock));
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert!(
        inv.duration >= Duration::from_millis(400),
        "{:?}",
        inv.duration
    );
    let stats = ex.stats();
    assert_eq!((stats.inline_abandoned, stats.pool_runs), (1, 1));

    // A long script that finishes: abandoned inline, answered by the pool
    // with its whole result.
    let limits = Limits {
        wall_clock: Duration::from_secs(5),
        ..Limits::default()
    };
    let script = compile("let n = 0; for i in 0..300000 { n += i } n", &limits).unwrap();
    let inv = ex
        .execute("app", &script, ScriptRequest::default(), &limits)
        .await
        .unwrap();
    assert_eq!(inv.outcome.unwrap().body_text(), Some("44999850000"));
    let stats = ex.stats();
    assert_eq!((stats.inline_abandoned, stats.pool_runs), (2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_abandoned_attempt_the_next_calls_skip_inline_then_return_to_it() {
    let _serial = SERIAL.lock().await;
    let cooldown = Duration::from_millis(300);
    let ex = inline_executor(InlineBudget {
        cooldown,
        ..budget()
    });
    let limits = Limits::default();
    let script = compile(
        r#"if request.path == "/slow" { let n = 0; for i in 0..10000 { n += i } n } else { "fast" }"#,
        &limits,
    )
    .unwrap();
    let call = |path: &'static str| {
        let (ex, script) = (&ex, script.clone());
        async move {
            let inv = ex
                .execute("app", &script, request(path), &limits)
                .await
                .unwrap();
            inv.outcome.unwrap().body_text().unwrap().to_owned()
        }
    };
    let s0 = ex.stats();
    assert_eq!(call("/").await, "fast");
    assert_eq!(paths(s0, ex.stats()), (1, 0, 0, 0), "inline at first");
    let abandoned_at = Instant::now();
    assert_eq!(call("/slow").await, "49995000");
    let s1 = ex.stats();
    assert_eq!(paths(s0, s1), (1, 1, 0, 1), "abandoned, then the pool");
    // Cooling down: even a short request goes straight to the pool.
    assert_eq!(call("/").await, "fast");
    assert_eq!(call("/slow").await, "49995000");
    let s2 = ex.stats();
    if abandoned_at.elapsed() < cooldown {
        assert_eq!(paths(s1, s2), (0, 0, 2, 2), "skipped while cooling down");
    }
    // Another version of the script has its own route.
    let other = compile(r#""other""#, &limits).unwrap();
    ex.execute("app", &other, request("/"), &limits)
        .await
        .unwrap();
    assert_eq!(ex.stats().inline_completed, s2.inline_completed + 1);
    // After the cool-down, inline again.
    tokio::time::sleep(cooldown + Duration::from_millis(50)).await;
    let s3 = ex.stats();
    assert_eq!(call("/").await, "fast");
    assert_eq!(
        paths(s3, ex.stats()),
        (1, 0, 0, 0),
        "inline after the cool-down"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_recursion_inline_moves_to_the_pool_and_ends_with_the_stack_limit() {
    let _serial = SERIAL.lock().await;
    // Operations are no object inline: the stack slice is what ends it.
    let ex = inline_executor(InlineBudget {
        operations: u64::MAX,
        ..budget()
    });
    for (depth, source) in [
        (
            Limits::MAX_CALL_DEPTH,
            "fn f(n) { if n == 0 { 0 } else { 1 + f(n - 1) } } f(1000000)",
        ),
        (
            Limits::MAX_CALL_DEPTH,
            "fn f(n) { [n].map(|x| f(x + 1)) } f(0)",
        ),
        (64, "fn f(n) { 1 + (2 * (3 + (4 * (5 + f(n + 1))))) } f(0)"),
    ] {
        let limits = Limits {
            max_call_depth: depth,
            max_operations: Limits::MAX_OPERATIONS,
            ..Limits::default()
        };
        let script = compile(source, &limits).unwrap();
        let before = ex.stats();
        let inv = ex
            .execute("app", &script, ScriptRequest::default(), &limits)
            .await
            .unwrap();
        let err = inv.outcome.unwrap_err();
        assert!(
            matches!(err.limit(), Some(LimitKind::Stack | LimitKind::CallDepth)),
            "{source}: {err}"
        );
        assert_eq!(paths(before, ex.stats()), (0, 1, 0, 1), "{source}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_that_prints_then_passes_the_budget_has_only_its_pool_runs_logs() {
    let _serial = SERIAL.lock().await;
    let ex = inline_executor(budget());
    let limits = Limits::default();
    let script = compile(
        "print(\"start\");\ndebug(request.path);\nlet n = 0;\nfor i in 0..10000 { n += i }\nprint(`end ${n}`);\nn",
        &limits,
    )
    .unwrap();
    let inv = ex
        .execute("app", &script, request("/x"), &limits)
        .await
        .unwrap();
    assert_eq!(inv.outcome.unwrap().body_text(), Some("49995000"));
    assert_eq!(
        inv.logs,
        ["start", "[debug line 2] \"/x\"", "end 49995000"],
        "each line once: the abandoned attempt's are gone"
    );
    assert_eq!((ex.stats().inline_abandoned, ex.stats().pool_runs), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_larger_than_the_budget_goes_straight_to_the_pool() {
    let ex = inline_executor(budget());
    let limits = Limits::default();
    let script = compile("request.body.len()", &limits).unwrap();
    let big = ScriptRequest {
        body: "x".repeat(budget().max_string_bytes + 1),
        ..ScriptRequest::default()
    };
    let inv = ex.execute("app", &script, big, &limits).await.unwrap();
    assert_eq!(inv.outcome.unwrap().body_text(), Some("16385"));
    let stats = ex.stats();
    assert_eq!(
        (
            stats.inline_completed,
            stats.inline_skipped,
            stats.pool_runs
        ),
        (0, 1, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_one_app_floods_the_pool_another_apps_hello_answers_inline() {
    let _serial = SERIAL.lock().await;
    let ex = Arc::new(inline_executor(budget()));
    let limits = Limits {
        wall_clock: Duration::from_secs(1),
        max_operations: Limits::MAX_OPERATIONS,
        ..Limits::default()
    };
    let looping: CompiledScript = compile("loop {}", &limits).unwrap();
    let flood: Vec<_> = (0..16)
        .map(|_| {
            let (ex, looping) = (Arc::clone(&ex), looping.clone());
            tokio::spawn(async move {
                ex.execute("flood", &looping, ScriptRequest::default(), &limits)
                    .await
            })
        })
        .collect();
    // The flood holds its share of the pool.
    let deadline = Instant::now() + Duration::from_secs(5);
    while ex.stats().running == 0 {
        assert!(Instant::now() < deadline, "{:?}", ex.stats());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let hello = compile(r#"#{ hello: "world" }"#, &limits).unwrap();
    let before = ex.stats();
    for _ in 0..50 {
        let inv = ex
            .execute("other", &hello, ScriptRequest::default(), &limits)
            .await
            .unwrap();
        assert_eq!(
            inv.outcome.unwrap().body_text(),
            Some(r#"{"hello":"world"}"#)
        );
    }
    let after = ex.stats();
    assert!(after.running > 0, "the flood was still running: {after:?}");
    assert_eq!(
        after.inline_completed - before.inline_completed,
        50,
        "every hello answered inline, none waited for the pool: {after:?}"
    );
    for handle in flood {
        match handle.await.unwrap() {
            Ok(inv) => assert_eq!(inv.outcome.unwrap_err().kind(), ExecErrorKind::Timeout),
            Err(e) => assert_eq!(e, ExecError::Overloaded),
        }
    }
}
