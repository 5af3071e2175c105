//! A hostile-script corpus over HTTP: each script ends with a clear JSON
//! error, a 422 at deploy or a 5xx naming the limit at run time, within 2 s,
//! and the server keeps serving. (`tests/no_starvation.rs` floods the pool.)

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::TestServer;

/// How a hostile script must end.
#[derive(Debug, Clone, Copy)]
enum Ends {
    /// Refused at deploy (422), the message containing one of these.
    AtDeploy(&'static [&'static str]),
    /// Deployed, then a 5xx at run time, the message containing one of these.
    AtRun(&'static [&'static str]),
}

fn nested(open: &str, inner: &str, close: &str, depth: usize) -> String {
    format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
}

fn corpus() -> Vec<(&'static str, String, Ends)> {
    use Ends::*;
    const TIME: &[&str] = &["wall clock", "operations"];
    let mut c: Vec<(&'static str, String, Ends)> = vec![
        ("infinite loop", "loop {}".into(), AtRun(TIME)),
        (
            "while true",
            "while true { let x = 1; }".into(),
            AtRun(TIME),
        ),
        (
            "huge for range",
            "let n = 0; for i in 0..9223372036854775807 { n += 1; } n".into(),
            AtRun(TIME),
        ),
        (
            "unbounded recursion",
            "fn f(x) { f(x + 1) } f(0)".into(),
            AtRun(&["call depth", "stack"]),
        ),
        (
            "mutual recursion",
            "fn a(x) { b(x + 1) } fn b(x) { a(x + 1) } a(0)".into(),
            AtRun(&["call depth", "stack"]),
        ),
        (
            "recursion through function pointers",
            "fn r(n) { let g = Fn(\"r\"); g.call(n + 1) } r(0)".into(),
            AtRun(&["call depth", "stack"]),
        ),
        (
            "recursion through closures",
            "fn apply(f, n) { f.call(f, n) } let c = |me, n| apply(me, n + 1); apply(c, 0)".into(),
            AtRun(&["call depth", "stack"]),
        ),
        (
            "deep but finite recursion",
            "fn d(n) { if n == 0 { 0 } else { 1 + d(n - 1) } } d(100000)".into(),
            AtRun(&["call depth", "stack"]),
        ),
        (
            "string doubling bomb",
            "let s = \"x\"; loop { s += s; }".into(),
            AtRun(&["string", "wall clock", "operations"]),
        ),
        (
            "string append bomb",
            "let s = \"\"; loop { s += \"0123456789abcdef\"; }".into(),
            AtRun(&["string", "wall clock", "operations"]),
        ),
        (
            "array push bomb",
            "let a = []; loop { a.push(1); }".into(),
            AtRun(&["array", "wall clock", "operations"]),
        ),
        (
            "array doubling bomb",
            "let a = [1, 2]; loop { a += a; }".into(),
            AtRun(&["array", "wall clock", "operations"]),
        ),
        (
            "map bomb",
            "let m = #{}; let i = 0; loop { m[`k${i}`] = i; i += 1; }".into(),
            AtRun(&["map", "wall clock", "operations"]),
        ),
        (
            "nested arrays",
            "let a = []; loop { a = [a, a]; }".into(),
            AtRun(&["array", "wall clock", "operations"]),
        ),
        (
            "nested maps",
            "let m = #{}; loop { m = #{ l: m, r: m }; }".into(),
            AtRun(&["map", "wall clock", "operations"]),
        ),
        (
            "print flood",
            "loop { print(\"spam spam spam spam\"); }".into(),
            AtRun(TIME),
        ),
        ("sleep", "sleep(10); 1".into(), AtRun(&["sleep"])),
        (
            "integer overflow",
            "let x = 9223372036854775807; x + 1".into(),
            AtRun(&["overflow", "arithmetic"]),
        ),
        (
            "power overflow",
            "let x = 2; x ** 100000".into(),
            AtRun(&["overflow", "arithmetic", "power"]),
        ),
        (
            "division by zero",
            "let z = 0; 1 / z".into(),
            AtRun(&["zero"]),
        ),
        ("eval", "eval(\"40 + 2\")".into(), AtDeploy(&["eval"])),
        (
            "import",
            "import \"std\" as std; 1".into(),
            AtDeploy(&["import", "module"]),
        ),
    ];
    c.push((
        "huge string literal",
        format!("let s = \"{}\"; s.len()", "x".repeat(1_500_000)),
        Ends::AtDeploy(&["string"]),
    ));
    c.push((
        "huge array literal",
        format!("let a = [{}]; a.len()", "1,".repeat(100_000)),
        Ends::AtDeploy(&["array"]),
    ));
    c.push((
        "deeply nested parentheses",
        nested("(", "1", ")", 10_000),
        Ends::AtDeploy(&["deep", "depth"]),
    ));
    c.push((
        "deeply nested blocks",
        nested("{ ", "1", " }", 10_000),
        Ends::AtDeploy(&["deep", "depth"]),
    ));
    c.push((
        "deeply nested array literal",
        nested("[", "1", "]", 10_000),
        Ends::AtDeploy(&["deep", "depth"]),
    ));
    c.push((
        "too many functions",
        (0..400)
            .map(|i| format!("fn f{i}() {{ {i} }}\n"))
            .collect::<String>()
            + "1",
        Ends::AtDeploy(&["function"]),
    ));
    c.push((
        "too many variables",
        (0..2000)
            .map(|i| format!("let v{i} = {i};\n"))
            .collect::<String>()
            + "1",
        Ends::AtRun(&["variable"]),
    ));
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_hostile_script_ends_in_a_clear_json_error_within_two_seconds() {
    let s = TestServer::memory().await;
    s.create_app("evil").await;
    let corpus = corpus();
    assert!(corpus.len() >= 20);
    for (i, (what, source, ends)) in corpus.into_iter().enumerate() {
        let name = format!("s{i}");
        let started = Instant::now();
        let resp = s
            .client
            .put(s.url(&format!("/api/v1/admin/apps/evil/scripts/{name}")))
            .bearer_auth(&s.owner_token)
            .body(source)
            .send()
            .await
            .unwrap();
        let deploy_status = resp.status();
        let deploy_body: Value = resp.json().await.unwrap();
        let (status, body) = match ends {
            Ends::AtDeploy(_) => (deploy_status, deploy_body),
            Ends::AtRun(_) => {
                assert_eq!(deploy_status, 201, "{what}: deploy failed: {deploy_body}");
                let started = Instant::now();
                let resp = s
                    .client
                    .get(s.url(&format!("/run/evil/{name}")))
                    .send()
                    .await
                    .unwrap();
                let status = resp.status();
                let body: Value = resp
                    .json()
                    .await
                    .unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
                assert!(
                    started.elapsed() < Duration::from_secs(2),
                    "{what}: took {:?}",
                    started.elapsed()
                );
                (status, body)
            }
        };
        let message = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no error in {body}"));
        let lower = message.to_lowercase();
        let (expect_status, needles) = match ends {
            Ends::AtDeploy(n) => (deploy_status == 422, n),
            Ends::AtRun(n) => (status.is_server_error(), n),
        };
        assert!(expect_status, "{what}: status {status} ({body})");
        assert!(
            needles.iter().any(|n| lower.contains(n)),
            "{what}: {message:?} names none of {needles:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{what}: {:?}",
            started.elapsed()
        );
        println!("{what:<36} {status} {message}");
    }
    // The server is fine.
    s.create_app("after").await;
    let resp = s.client.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}
