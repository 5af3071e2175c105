//! A hostile corpus: scripts written to hang, exhaust memory or the stack,
//! or escape the sandbox. Each must end with a clear error naming the cause,
//! within 2 s, and the process must survive every one of them (a native stack
//! overflow would abort this test binary, which is the point of running them
//! all in one test).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use picloud_core::executor::{
    CompileBudget, CompileError, ExecError, ExecutorConfig, Invocation, LimitKind, Limits,
    RhaiExecutor, ScriptRequest, compile, compile_with,
};

/// What a hostile script must end in.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Refused at compile time, with this limit (or none) and a message
    /// containing the needle.
    Compile(Option<LimitKind>, &'static str),
    /// Stopped by one of these limits (which one can depend on the build's
    /// speed: a debug build reaches the wall clock sooner).
    Limit(&'static [LimitKind]),
    /// A runtime error whose message contains the needle.
    Runtime(&'static str),
}

use Expect::{Compile, Limit, Runtime};

/// Every allocation is metered, as in the server binary.
#[global_allocator]
static ALLOCATOR: picloud_core::executor::meter::MeteredAllocator =
    picloud_core::executor::meter::MeteredAllocator;
use LimitKind::*;

const TIME: &[LimitKind] = &[WallClock, Operations];

fn corpus() -> Vec<(&'static str, String, Expect)> {
    let nested = |open: &str, mid: &str, close: &str, n: usize| {
        format!("{}{mid}{}", open.repeat(n), close.repeat(n))
    };
    let mut many_fns = String::new();
    for i in 0..300 {
        writeln!(many_fns, "fn f{i}() {{ {i} }}").unwrap();
    }
    many_fns.push_str("f1()");
    let mut many_vars = String::new();
    for i in 0..600 {
        writeln!(many_vars, "let v{i} = {i};").unwrap();
    }
    many_vars.push_str("v1");

    vec![
        ("infinite loop", "loop {}".into(), Limit(TIME)),
        ("while true", "while true {}".into(), Limit(TIME)),
        ("busy for over a huge range", "let x = 0; for i in 0..1000000000000 { x += i; } x".into(), Limit(TIME)),
        ("unbounded recursion", "fn f(x) { f(x + 1) } f(0)".into(), Limit(&[CallDepth, Stack])),
        ("mutual recursion", "fn a(x) { b(x + 1) } fn b(x) { a(x + 1) } a(0)".into(), Limit(&[CallDepth, Stack])),
        ("recursion through a closure", "let g = |x, h| h.call(x + 1, h); g.call(0, g)".into(), Limit(&[CallDepth, Stack])),
        ("recursion through Fn pointers", r#"fn r(f, x) { f.call(f, x + 1) } r(Fn("r"), 0)"#.into(), Limit(&[CallDepth, Stack])),
        (
            "recursion with deep expressions per frame",
            format!("fn f(x) {{ {} }} f(0)", nested("1 + (", "f(x + 1)", ")", 7)),
            Limit(&[CallDepth, Stack]),
        ),
        ("recursion inside map callbacks", "fn f(x) { [x].map(|v| f(v + 1)) } f(0)".into(), Limit(&[CallDepth, Stack])),
        ("string doubling", r#"let s = "x"; loop { s += s; }"#.into(), Limit(&[StringSize])),
        ("string pad bomb", r#""x".pad(100000000, "y")"#.into(), Limit(&[StringSize])),
        ("string built char by char", r#"let s = ""; loop { s += "abcdefghij"; }"#.into(), Limit(&[StringSize, WallClock, Operations])),
        ("array push loop", "let a = []; loop { a.push(1); }".into(), Limit(&[ArraySize])),
        ("array doubling", "let a = [1]; loop { a += a; }".into(), Limit(&[ArraySize])),
        ("array pad of arrays", "let a = []; a.pad(5000, 0); let b = []; b.pad(5000, a); b".into(), Limit(&[ArraySize])),
        ("huge range collected", "let r = []; for x in range(0, 100000000) { r.push(x) } r".into(), Limit(&[ArraySize])),
        ("blob bomb", "blob(100000000)".into(), Limit(&[ArraySize])),
        ("map doubling", "let m = #{a: 1}; loop { let n = #{}; n.x = m; n.y = m; m = n; }".into(), Limit(&[MapSize])),
        ("map of big strings", "let s = \"x\"; s.pad(200000, \"y\"); let m = #{}; for i in 0..100 { m[`k${i}`] = s; } m".into(), Limit(&[StringSize])),
        ("array of big strings", "let s = \"x\"; s.pad(200000, \"y\"); let a = [s]; a.pad(100, s); a".into(), Limit(&[StringSize])),
        // rhai checks only the new element on `m[k] = v` / `a[i] = v`; the
        // sandbox's periodic scan of the variables catches the container.
        ("map grown by index assignment", "let m = #{}; for i in 0..100000000 { m[`k${i}`] = i; } 1".into(), Limit(&[MapSize])),
        (
            "array slots refilled with fresh big strings",
            "let a = []; a.pad(10000, 0); let s = \"y\"; for i in 0..19 { s += s; } for i in 0..10000 { a[i] = s + i; } 1".into(),
            Limit(&[StringSize]),
        ),
        (
            "a method growing `this` by index",
            "fn grow(s) { let i = 0; while i < 10000 { this[`k${i}`] = s + i; i += 1; } } let m = #{}; let s = \"y\"; for i in 0..19 { s += s; } m.grow(s); 1".into(),
            Limit(&[StringSize]),
        ),
        ("deeply nested arrays", "let a = []; loop { a = [a]; }".into(), Limit(&[ArraySize, WallClock, Operations])),
        (
            "printing and comparing deep data",
            "let a = []; for i in 0..400 { a = [a]; } print(a); debug(a); let s = `${a}`; a == a".into(),
            Runtime("nested more than"),
        ),
        ("returning deep data", "let a = #{}; for i in 0..400 { a = #{a: a}; } a".into(), Runtime("nested more than")),
        ("throwing deep data", "let a = []; for i in 0..400 { a = [a]; } throw a".into(), Runtime("[...]")),
        ("5 MB string literal", format!("let s = \"{}\"; s.len()", "x".repeat(5_000_000)), Compile(Some(StringSize), "string")),
        (
            "100k-element array literal",
            format!("let a = [{}]; a.len()", vec!["1"; 100_000].join(",")),
            Compile(Some(ArraySize), "array"),
        ),
        ("10 000 nested parentheses", nested("(", "1", ")", 10_000), Compile(Some(ExprDepth), "nested too deeply")),
        ("10 000 nested blocks", nested("{", "1", "}", 10_000), Compile(Some(ExprDepth), "nested too deeply")),
        ("10 000 nested additions", nested("1 + (", "1", ")", 10_000), Compile(Some(ExprDepth), "nested too deeply")),
        ("10 000 nested map literals", nested("#{a: ", "1", "}", 10_000), Compile(Some(ExprDepth), "nested too deeply")),
        ("nested interpolation", nested("`${", "1", "}`", 2_000), Compile(Some(ExprDepth), "nested too deeply")),
        ("eval", r#"eval("1")"#.into(), Compile(None, "eval")),
        ("import", r#"import "x" as y; 1"#.into(), Compile(None, "import")),
        ("eval through a function pointer", r#"call(Fn("eval"), "1")"#.into(), Runtime("eval")),
        ("sleep", "sleep(10)".into(), Runtime("sleep is not available")),
        ("sleep with a float", "sleep(0.5)".into(), Runtime("sleep is not available")),
        ("parse_json that calls functions", "parse_json(`{\"a\": sleep(10)}`)".into(), Runtime("invalid JSON")),
        ("print flood", r#"loop { print("all work and no play makes jack a dull boy"); }"#.into(), Limit(TIME)),
        ("integer overflow", "9223372036854775807 + 1".into(), Runtime("overflow")),
        ("integer overflow at run time", "let x = 9223372036854775807; x * 2".into(), Runtime("overflow")),
        ("division by zero", "let x = 0; 1 / x".into(), Runtime("Division by zero")),
        ("modulo by zero", "let x = 0; 1 % x".into(), Runtime("zero")),
        ("float division by zero answered", "1.0 / 0.0".into(), Runtime("inf")),
        ("too many functions", many_fns, Compile(Some(Functions), "functions")),
        ("too many closures", format!("let v = [{}]; 1", vec!["|x| x"; 300].join(",")), Compile(Some(Functions), "functions")),
        ("too many variables", many_vars, Limit(&[Variables])),
        ("variables via recursion", "fn f(a, b, c, d, e, g, h, i) { f(a, b, c, d, e, g, h, i) } f(1, 2, 3, 4, 5, 6, 7, 8)".into(), Limit(&[Variables, CallDepth, Stack])),
        // Finding 1 of the hardening issue: a chain of closures millions deep
        // whose recursive drop overflowed the stack. Closures cannot capture.
        ("closure chain", "let f = 0; loop { let g = f; f = || g; }".into(), Limit(TIME)),
        ("closure capturing a variable", "let g = 1; let f = || g; f.call()".into(), Runtime("not found")),
        // Finding 2: closures and curried pointers hid data from every size limit.
        (
            "closures holding fresh strings",
            "let s = \"y\"; for i in 0..19 { s += s; } let f = 0; for i in 0..100000 { let g = [f, s + i]; f = || g; } 1".into(),
            Limit(&[WallClock, Operations, StringSize, Memory]),
        ),
        ("a closure in a map that holds it", "let a = #{ big: \"x\" + request.path }; let f = || a; a.f = f; a.g = a; a.f.call()".into(), Runtime("not found")),
        ("curry", "let f = Fn(\"x\"); f = f.curry(1); 1".into(), Compile(None, "curry")),
        ("curry as a function", "fn x(a) { a } let f = curry(Fn(\"x\"), 1); f.call()".into(), Compile(None, "curry")),
        ("a long function name", "let s = \"y\"; for i in 0..19 { s += s; } Fn(s)".into(), Runtime("at most 256 bytes")),
        (
            "function pointers in a literal",
            format!("let s = \"x\"; s.pad(1000, \"y\"); [{}]", (0..300).map(|i| format!("Fn(s + \"{i}\")")).collect::<Vec<_>>().join(",")),
            Runtime("at most 256 bytes"),
        ),
        (
            "responses held in an array",
            "let s = \"y\"; for i in 0..19 { s += s; } let a = []; for i in 0..1000 { a.push(response(200, s + i)); } 1".into(),
            Limit(&[StringSize, Memory]),
        ),
        (
            "responses in a literal",
            format!("let s = \"y\"; for i in 0..19 {{ s += s; }} [{}]", (0..200).map(|i| format!("response(200, s + \"{i}\")")).collect::<Vec<_>>().join(",")),
            Limit(&[Memory]),
        ),
        (
            "many variables of big strings",
            format!("let s = \"y\"; for i in 0..19 {{ s += s; }} {} 1", (0..300).map(|i| format!("let v{i} = s + \"{i}\";")).collect::<String>()),
            Limit(&[Memory]),
        ),
        (
            "big strings in every frame of a recursion",
            "fn f(n) { let s = \"y\"; for i in 0..19 { s += s; } let a = s + n; let b = s + n + 1; if n > 0 { f(n - 1) } else { loop { a.len(); } } } f(60)".into(),
            Limit(&[Memory]),
        ),
        (
            "a native loop building big strings",
            "let a = []; a.pad(2000, \"x\"); let b = a.map(|x| { let s = \"y\"; for i in 0..19 { s += s; } s + x }); b.len()".into(),
            Limit(&[Memory]),
        ),
        // One native call that multiplies its input: nothing between
        // operations can stop it, so each checks its result's size first.
        (
            "replace multiplying a string",
            "let s = \"a\"; while s.len < 1000000 { s += s; } let t = \"a\"; while t.len < 4096 { t += t; } t.replace(\"a\", s)".into(),
            Limit(&[StringSize]),
        ),
        (
            "replace a char by a big string",
            "let s = \"a\"; while s.len < 100000 { s += s; } let t = \"a\"; while t.len < 4096 { t += t; } t.replace('a', s)".into(),
            Limit(&[StringSize]),
        ),
        ("replace the empty string", "let s = \"a\"; while s.len < 1000 { s += s; } let t = \"a\"; while t.len < 100000 { t += t; } t.replace(\"\", s)".into(), Limit(&[StringSize])),
        ("split between every character", "let s = \"a\"; while s.len < 1000000 { s += s; } s.split(\"\")".into(), Limit(&[ArraySize])),
        ("split on a dense delimiter", "let s = \",\"; while s.len < 1000000 { s += s; } s.split(',').len()".into(), Limit(&[ArraySize])),
        ("split_rev with segments", "let s = \",\"; while s.len < 1000000 { s += s; } s.split_rev(\",\", 1000000).len()".into(), Limit(&[ArraySize])),
        ("split on whitespace", "let s = \" a\"; while s.len < 1000000 { s += s; } s.split().len()".into(), Limit(&[ArraySize])),
        ("to_chars of a big string", "let s = \"a\"; while s.len < 1000000 { s += s; } s.to_chars().len()".into(), Limit(&[ArraySize])),
        ("to_blob of a big string", "let s = \"a\"; while s.len < 1000000 { s += s; } s.to_blob().len()".into(), Limit(&[ArraySize])),
        ("parse_json of many empty maps", "let s = \"{},\"; while s.len < 500000 { s += s; } parse_json(\"[\" + s + \"{}]\").len()".into(), Limit(&[ArraySize])),
        // rhai shares strings: an array can hold one big string many times,
        // and printing it writes every copy.
        (
            "printing one big string held many times",
            "let s = \"y\"; while s.len < 1000000 { s += s; } let a = []; a.pad(9000, 0); for i in 0..9000 { a[i] = s; } a.to_string().len()".into(),
            Limit(&[StringSize, Memory]),
        ),
        (
            "interpolating one big string held many times",
            "let s = \"y\"; while s.len < 1000000 { s += s; } let a = []; a.pad(9000, 0); for i in 0..9000 { a[i] = s; } `${a}`.len()".into(),
            Limit(&[StringSize, Memory]),
        ),
        (
            "to_json of one big string held many times",
            "let s = \"y\"; while s.len < 1000000 { s += s; } let m = #{}; for i in 0..9000 { m[`k${i}`] = s; } m.to_json().len()".into(),
            Limit(&[StringSize, Memory]),
        ),
        (
            "answering with one big string held many times",
            "let s = \"y\"; while s.len < 1000000 { s += s; } let a = []; a.pad(3000, 0); for i in 0..3000 { a[i] = s; } a".into(),
            Limit(&[StringSize, Memory]),
        ),
        (
            "responding with one big string held many times",
            "let s = \"y\"; while s.len < 1000000 { s += s; } let a = []; a.pad(3000, 0); for i in 0..3000 { a[i] = s; } response(200, a)".into(),
            Limit(&[StringSize, Memory]),
        ),
        (
            "searching one big string held many times",
            "let s = \"y\"; while s.len < 1000000 { s += s; } let a = []; a.pad(9000, 0); for i in 0..9000 { a[i] = s; } a.contains(\"x\")".into(),
            Limit(&[StringSize, Memory]),
        ),
        (
            "sorting one big string held many times",
            "let s = \"y\"; while s.len < 1000000 { s += s; } let a = []; a.pad(9000, 0); for i in 0..9000 { a[i] = s; } a.sort(); 1".into(),
            Limit(&[StringSize, Memory]),
        ),
        (
            "comparing one big string held many times",
            "let s = \"y\"; while s.len < 1000000 { s += s; } let a = []; a.pad(9000, 0); for i in 0..9000 { a[i] = s; } a == a".into(),
            Limit(&[StringSize, Memory]),
        ),
        (
            "a comparer past the wall clock",
            "let a = []; for i in 0..10000 { a.push(i) } loop { a.sort(|x, y| { let j = 0; while j < 300 { j += 1; } y - x }) }".into(),
            Limit(TIME),
        ),
        (
            "a dedup comparer past the wall clock",
            "let a = []; a.pad(10000, 1); loop { let b = a; b.dedup(|x, y| { let j = 0; while j < 3000 { j += 1; } false }) }".into(),
            Limit(TIME),
        ),
        // Escaping writes up to six bytes for one.
        ("an answer of control characters", "let s = \"\"; s.pad(1000000, \"\\x01\"); [s]".into(), Limit(&[StringSize])),
        ("a response of control characters", "let s = \"\"; s.pad(1000000, \"\\x01\"); response(200, #{ s: s })".into(), Limit(&[StringSize])),
        ("debug of control characters", "let s = \"\"; s.pad(1000000, \"\\x01\"); debug(s); 1".into(), Limit(&[StringSize])),
        ("printing an array of control characters", "let s = \"\"; s.pad(500000, \"\\x01\"); [s, s].to_string().len()".into(), Limit(&[StringSize])),
        // rhai prints with its own unbounded code when `to_string` fails:
        // interpolation and `+` once went round the checks that way.
        ("concatenating an array of control characters", "let s = \"\"; s.pad(500000, \"\\x01\"); let t = \"\" + [s, s]; 1".into(), Limit(&[StringSize])),
        ("interpolating a map of control characters", "let s = \"\"; s.pad(500000, \"\\x01\"); `${#{a: s, b: s}}`".into(), Limit(&[StringSize])),
        ("appending an array of control characters", "let s = \"\"; s.pad(500000, \"\\x01\"); let t = \"\"; t += [s, s]; 1".into(), Limit(&[StringSize])),
        ("answering with an interpolated shared string", "let s = \"y\"; while s.len < 1000000 { s += s; } let a = []; a.pad(3000, 0); for i in 0..3000 { a[i] = s; } return `${a}`;".into(), Limit(&[StringSize, Memory])),
        // The third attack: rhai re-checks `to_string`'s argument after the
        // call and prints it its own (unbounded) way when that fails; and
        // `to_json` wrote escapes before any check.
        (
            "interpolating a shared string of control characters",
            "let s = \"\"; s.pad(1048576, \"\\x01\"); let a = []; a.pad(14, 0); for i in 0..14 { a[i] = s; } let t = `${a}`; \"ok\"".into(),
            Limit(&[StringSize, Memory]),
        ),
        (
            "concatenating a shared map of control characters",
            "let s = \"\"; s.pad(1048576, \"\\x01\"); let m = #{}; for i in 0..14 { m[`k${i}`] = s; } let t = \"\" + m; \"ok\"".into(),
            Limit(&[StringSize, Memory]),
        ),
        ("to_json of control characters", "let s = \"\"; s.pad(1000000, \"\\x01\"); #{a: s}.to_json().len()".into(), Limit(&[StringSize])),
        // The second attack: heavy native work in a callback whose errors
        // rhai ignores went on for minutes past the wall clock.
        (
            "a heavy dedup comparer",
            "fn cmp(x, y) { let u = \"ΐ\"; u.pad(150000, \"ΐ\"); loop { u.to_upper(); } } let a = []; a.pad(50, 1); a.dedup(|x, y| cmp(x, y)); 1".into(),
            Limit(TIME),
        ),
        (
            "a heavy sort comparer",
            "fn cmp(x, y) { let u = \"ΐ\"; u.pad(150000, \"ΐ\"); loop { u.to_upper(); } } let a = []; a.pad(50, 1); a.sort(|x, y| cmp(x, y)); 1".into(),
            Limit(TIME),
        ),
        (
            "a heavy map drain filter",
            "fn f() { let u = \"ΐ\"; u.pad(150000, \"ΐ\"); loop { u.to_upper(); } } let m = #{}; for i in 0..500 { m[`k${i}`] = i; } m.drain(|k, v| f()); 1".into(),
            Limit(TIME),
        ),
        (
            "a size error caught in a loop",
            "let s = \"y\"; while s.len < 1000000 { s += s; } let m = #{}; let i = 0; loop { try { m[`k${i}`] = s; i += 1; } catch (e) { } }".into(),
            Limit(&[StringSize, Memory, WallClock, Operations]),
        ),
        ("map keys of big strings", "let s = \"y\"; for i in 0..19 { s += s; } let m = #{}; for i in 0..1000 { m[s + i] = 1; } 1".into(), Limit(&[StringSize, Memory])),
    ]
}

enum Ended {
    Compile(CompileError),
    Ran(Invocation),
}

/// Held by the tests that spin workers: the wall-clock test measures time,
/// and on a 2-core machine the corpus's loops would otherwise share its CPU.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn run_one(ex: Arc<RhaiExecutor>, tenant: String, source: String) -> (Ended, Duration) {
    let limits = Limits::default();
    let start = Instant::now();
    // Compiling is synchronous and parses on its own big-stack thread.
    // Leniently: a deploy refuses undefined variables, but a version stored
    // before strict variables still runs, and these are the defences it
    // meets at run time.
    let compiled = tokio::task::spawn_blocking(move || {
        compile_with(&source, &limits, &CompileBudget::default().lenient())
    })
    .await
    .expect("compile does not panic");
    match compiled {
        Err(err) => (Ended::Compile(err), start.elapsed()),
        Ok(script) => {
            let inv = ex
                .execute(&tenant, &script, ScriptRequest::default(), &limits)
                .await
                .expect("the pool runs it");
            let took = inv.duration;
            (Ended::Ran(inv), took)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_script_ends_with_a_clear_error_within_two_seconds() {
    let _serial = SERIAL.lock().await;
    let corpus = corpus();
    assert!(corpus.len() >= 20);
    let ex = Arc::new(
        RhaiExecutor::new(ExecutorConfig {
            queue_capacity: 256,
            per_tenant_max_queued: 256,
            ..ExecutorConfig::with_workers(2)
        })
        .unwrap(),
    );
    let handles: Vec<_> = corpus
        .iter()
        .enumerate()
        .map(|(i, (_, source, _))| {
            tokio::spawn(run_one(
                Arc::clone(&ex),
                format!("tenant-{i}"),
                source.clone(),
            ))
        })
        .collect();

    // Each run ends within twice its wall clock (the limit, plus the time
    // the sandbox takes to notice and unwind); a compile, within the same.
    let bound = 2 * Limits::default().wall_clock;
    let mut failures = Vec::new();
    for ((name, _, expect), handle) in corpus.iter().zip(handles) {
        let (ended, took) = handle.await.expect("no panic");
        if took > bound {
            failures.push(format!("{name}: took {took:?}, more than {bound:?}"));
        }
        let verdict = match (&ended, expect) {
            (Ended::Compile(err), Compile(limit, needle)) => {
                err.limit == *limit && err.message.contains(needle)
            }
            (Ended::Ran(inv), Limit(kinds)) => match &inv.outcome {
                Err(ExecError::LimitExceeded { limit, message, .. }) => {
                    kinds.contains(limit) && message.contains(limit.name())
                }
                _ => false,
            },
            (Ended::Ran(inv), Runtime(needle)) => matches!(
                &inv.outcome,
                Err(ExecError::Runtime { message, .. }) if message.contains(needle)
            ),
            _ => false,
        };
        let what = match &ended {
            Ended::Compile(err) => format!("compile error {err:?}"),
            Ended::Ran(inv) => format!("{:?}", inv.outcome.as_ref().map(|r| r.status)),
        };
        println!("{name:<45} {took:>12.2?}  {what}");
        if !verdict {
            failures.push(format!("{name}: expected {expect:?}, got {what}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_print_flood_is_truncated_and_stopped() {
    let _serial = SERIAL.lock().await;
    let ex = RhaiExecutor::new(ExecutorConfig::with_workers(2)).unwrap();
    let limits = Limits::default();
    let script = compile(
        r#"let i = 0; loop { print(`line ${i}`); i += 1; }"#,
        &limits,
    )
    .unwrap();
    let inv = ex
        .execute("app", &script, ScriptRequest::default(), &limits)
        .await
        .unwrap();
    assert!(matches!(inv.outcome, Err(ExecError::LimitExceeded { .. })));
    assert!(inv.truncated_logs);
    let kept: usize = inv.logs.iter().map(String::len).sum();
    assert!(kept <= limits.max_output_bytes + 100, "{kept}");
    assert!(inv.logs.last().unwrap().contains("output truncated"));
    assert_eq!(inv.logs[0], "line 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operations_limit_stops_a_loop_deterministically() {
    let _serial = SERIAL.lock().await;
    let ex = RhaiExecutor::new(ExecutorConfig::with_workers(2)).unwrap();
    let limits = Limits {
        max_operations: 10_000,
        wall_clock: Duration::from_secs(10),
        ..Limits::default()
    };
    let script = compile("let x = 0; loop { x += 1; }", &limits).unwrap();
    let inv = ex
        .execute("app", &script, ScriptRequest::default(), &limits)
        .await
        .unwrap();
    let err = inv.outcome.unwrap_err();
    assert_eq!(err.limit(), Some(LimitKind::Operations));
    assert!(
        err.to_string().contains("operations limit (10000)"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wall_clock_is_per_app() {
    let _serial = SERIAL.lock().await;
    let ex = RhaiExecutor::new(ExecutorConfig::with_workers(2)).unwrap();
    // The operation count is out of the way: the wall clock ends the loop.
    let limits = Limits {
        wall_clock: Duration::from_millis(300),
        max_operations: Limits::MAX_OPERATIONS,
        ..Limits::default()
    };
    // Twice the app's wall clock is still less than the default one: a run
    // that got the default instead of the app's own would end past it.
    let bound = 2 * limits.wall_clock;
    assert!(bound < Limits::default().wall_clock);
    let script = compile("loop {}", &limits).unwrap();
    let inv = ex
        .execute("app", &script, ScriptRequest::default(), &limits)
        .await
        .unwrap();
    let err = inv.outcome.unwrap_err();
    assert_eq!(err.limit(), Some(LimitKind::WallClock));
    assert!(
        err.to_string().contains("wall clock limit (300 ms)"),
        "{err}"
    );
    assert!(inv.duration >= limits.wall_clock);
    assert!(
        inv.duration < bound,
        "{:?}, against a wall clock of {:?}",
        inv.duration,
        limits.wall_clock
    );
}

#[test]
fn deep_nesting_compiles_to_an_error_on_a_small_stack() {
    // The caller's thread may be a 2 MiB async runtime worker: compile must
    // not parse on it.
    let source = format!("{}1{}", "1 + (".repeat(10_000), ")".repeat(10_000));
    let limits = Limits {
        max_expr_depth: Limits::MAX_EXPR_DEPTH,
        ..Limits::default()
    };
    let err = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || compile(&source, &limits).unwrap_err())
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(err.limit, Some(LimitKind::ExprDepth));
}

/// Rust's `sort_by` may panic on a comparator that is not a total order;
/// rhai catches that panic, and the sandbox's hook keeps it quiet. Either
/// way the run ends as the script's own outcome, never as an engine failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sort_with_an_inconsistent_comparator_is_the_scripts_error() {
    let _serial = SERIAL.lock().await;
    let ex = Arc::new(RhaiExecutor::new(ExecutorConfig::default()).unwrap());
    let source = "let a = []; for i in 0..500 { a.push((i * 7919) % 101) } \
                  a.sort(|x, y| if (x + y) % 3 == 0 { -1 } else { 1 }); a.len()";
    for _ in 0..20 {
        let (ended, _) = run_one(Arc::clone(&ex), "sort".into(), source.into()).await;
        let Ended::Ran(inv) = ended else {
            panic!("it compiles")
        };
        match inv.outcome {
            Ok(_) => {}
            Err(ExecError::Runtime { message, .. }) => {
                assert!(message.contains("comparer"), "{message}")
            }
            Err(other) => panic!("not the script's own outcome: {other:?}"),
        }
    }
}

/// Many trivial statements (`1;1;1;…`, within the source size limit): the
/// compile ends, whatever the work after the parse costs, bounded by the
/// compile budget (the parse is checked token by token; nothing after it
/// may grow faster than the source).
#[test]
fn a_flood_of_trivial_statements_compiles_within_the_budget() {
    let source = "1;".repeat(1_000_000);
    let budget = CompileBudget::default();
    let started = Instant::now();
    let compiled = compile_with(&source, &Limits::default(), &budget);
    let took = started.elapsed();
    eprintln!("{} statements: {took:?}", 1_000_000);
    match compiled {
        Ok(_) => {}
        Err(e) => assert_eq!(e.limit, Some(LimitKind::CompileTime), "{e:?}"),
    }
    // A hang guard, not a speed goal: several times the budget.
    assert!(
        took < picloud_core::executor::DEFAULT_COMPILE_BUDGET * 4,
        "compiling {} bytes took {took:?} (budget {:?})",
        source.len(),
        picloud_core::executor::DEFAULT_COMPILE_BUDGET
    );
}
