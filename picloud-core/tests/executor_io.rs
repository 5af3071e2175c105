//! The executor's contract with the transport: what a script sees
//! (`request`), what its result becomes (`ScriptResponse`), and how compile
//! and runtime errors are reported (DESIGN.md "Scripts and invocation").

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use picloud_core::executor::{
    CompileError, ExecError, ExecErrorKind, Executor, ExecutorConfig, Invocation, LimitKind,
    Limits, RhaiExecutor, Sandbox, ScriptRequest, ScriptResponse, compile,
};
use serde_json::{Value, json};

fn executor() -> RhaiExecutor {
    RhaiExecutor::new(ExecutorConfig::with_workers(2)).expect("executor starts")
}

fn get(path: &str) -> ScriptRequest {
    ScriptRequest {
        method: "GET".into(),
        path: path.into(),
        ..ScriptRequest::default()
    }
}

async fn run_with(ex: &RhaiExecutor, source: &str, request: ScriptRequest) -> Invocation {
    let limits = Limits::default();
    let script = compile(source, &limits).expect("compiles");
    ex.execute("app", &script, request, &limits)
        .await
        .expect("runs on the pool")
}

async fn respond(source: &str) -> ScriptResponse {
    run_with(&executor(), source, get("/"))
        .await
        .outcome
        .expect("script succeeds")
}

fn json_body(r: &ScriptResponse) -> Value {
    serde_json::from_slice(&r.body).expect("JSON body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_string_is_200_text_plain() {
    let r = respond(r#""hello""#).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type.as_deref(), Some("text/plain; charset=utf-8"));
    assert_eq!(r.body_text(), Some("hello"));
    assert!(r.headers.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_an_array_a_number_and_a_bool_are_200_json() {
    for (source, expected) in [
        (
            "#{a: 1, b: [true, ()], c: \"x\"}",
            json!({"a": 1, "b": [true, null], "c": "x"}),
        ),
        ("[1, 2.5, 'c', #{}]", json!([1, 2.5, "c", {}])),
        ("40 + 2", json!(42)),
        ("0.5", json!(0.5)),
        ("true", json!(true)),
    ] {
        let r = respond(source).await;
        assert_eq!(r.status, 200, "{source}");
        assert_eq!(
            r.content_type.as_deref(),
            Some("application/json"),
            "{source}"
        );
        assert_eq!(json_body(&r), expected, "{source}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unit_is_204_without_body() {
    for source in ["()", "let x = 1;", ""] {
        let r = respond(source).await;
        assert_eq!(r.status, 204, "{source:?}");
        assert_eq!(r.content_type, None);
        assert!(r.body.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_with_a_string_body_keeps_it_as_text() {
    let r = respond(r#"response(201, "x")"#).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.content_type.as_deref(), Some("text/plain; charset=utf-8"));
    assert_eq!(r.body_text(), Some("x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_with_a_map_body_and_headers_is_json_with_those_headers() {
    let r = respond(r#"response(200, #{a: 1}, #{"X-A": "b", "x-n": 7})"#).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    assert_eq!(json_body(&r), json!({"a": 1}));
    assert_eq!(
        r.headers,
        vec![
            ("x-a".to_owned(), "b".to_owned()),
            ("x-n".to_owned(), "7".to_owned())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_type_header_overrides_the_default() {
    let r = respond(r#"response(200, "<p>hi</p>", #{"content-type": "text/html"})"#).await;
    assert_eq!(r.content_type.as_deref(), Some("text/html"));
    assert!(r.headers.is_empty());
    assert_eq!(r.body_text(), Some("<p>hi</p>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_edge_cases() {
    // Unit body: no body, no content type.
    let r = respond("response(202, ())").await;
    assert_eq!(
        (r.status, r.content_type.as_deref(), r.body.len()),
        (202, None, 0)
    );
    // 204 and 304 never carry a body.
    let r = respond(r#"response(204, "ignored")"#).await;
    assert_eq!(
        (r.status, r.content_type.as_deref(), r.body.len()),
        (204, None, 0)
    );
    // A BLOB is raw bytes.
    let r = respond("let b = blob(3, 0x41); response(200, b)").await;
    assert_eq!(r.content_type.as_deref(), Some("application/octet-stream"));
    assert_eq!(r.body, b"AAA");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_refuses_bad_status_and_headers_with_the_line() {
    let ex = executor();
    for (source, needle) in [
        ("\nresponse(99, \"x\")", "status 99"),
        ("\nresponse(600, \"x\")", "status 600"),
        (
            "\nresponse(200, \"x\", #{\"bad header\": \"v\"})",
            "header name",
        ),
        (
            "\nresponse(200, \"x\", #{\"x-a\": \"a\\nb\"})",
            "control character",
        ),
        (
            "\nresponse(200, \"x\", #{\"x-a\": [1]})",
            "must be a string",
        ),
    ] {
        let err = run_with(&ex, source, get("/")).await.outcome.unwrap_err();
        let ExecError::Runtime { message, line, .. } = &err else {
            panic!("{source}: {err:?}")
        };
        assert!(message.contains(needle), "{source}: {message}");
        assert_eq!(*line, Some(2), "{source}");
        assert_eq!(err.kind(), ExecErrorKind::Runtime);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_without_a_json_form_are_runtime_errors() {
    let ex = executor();
    for (source, needle) in [
        ("Fn(\"f\")", "type Fn"),
        ("|x| x", "type Fn"),
        ("timestamp()", "timestamp"),
        ("[1.0 / 0.0]", "inf"),
        ("response(200, #{f: Fn(\"f\")})", "type Fn"),
    ] {
        let err = run_with(&ex, source, get("/")).await.outcome.unwrap_err();
        assert!(
            matches!(&err, ExecError::Runtime { message, .. } if message.contains(needle)),
            "{source}: {err:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_sees_every_request_field() {
    let mut request = ScriptRequest {
        method: "POST".into(),
        path: "/orders/7".into(),
        headers: BTreeMap::from([
            ("content-type".into(), "application/json".into()),
            ("x-trace".into(), "abc".into()),
        ]),
        body: r#"{"item": "pen", "qty": 3, "tags": ["a"]}"#.into(),
        ..ScriptRequest::default()
    };
    request.set_query_pairs([
        ("page".into(), "2".into()),
        ("q".into(), "a b".into()),
        ("page".into(), "9".into()),
    ]);
    let source = r#"
        #{
            method: request.method,
            path: request.path,
            page: request.query.page,
            q: request.query["q"],
            pages: request.query_all.page,
            qs: request.query_all.q,
            trace: request.headers["x-trace"],
            body_len: request.body.len(),
            item: request.json.item,
            qty: request.json.qty + 1,
            tags: request.json.tags,
        }
    "#;
    let r = run_with(&executor(), source, request)
        .await
        .outcome
        .unwrap();
    assert_eq!(
        json_body(&r),
        json!({
            "method": "POST", "path": "/orders/7", "page": "2", "q": "a b",
            "pages": ["2", "9"], "qs": ["a b"],
            "trace": "abc", "body_len": 40, "item": "pen", "qty": 4, "tags": ["a"],
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_is_unit_when_the_body_is_empty_or_not_json() {
    let ex = executor();
    for body in ["", "not json", "{\"a\": ", "   "] {
        let request = ScriptRequest {
            body: body.into(),
            ..get("/")
        };
        let r = run_with(&ex, "type_of(request.json)", request)
            .await
            .outcome
            .unwrap();
        assert_eq!(r.body_text(), Some("()"), "{body:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_names_reach_the_script_as_given_lowercase() {
    let request = ScriptRequest {
        headers: BTreeMap::from([("accept".into(), "text/html".into())]),
        ..get("/")
    };
    let r = run_with(&executor(), "request.headers.keys()", request)
        .await
        .outcome
        .unwrap();
    assert_eq!(json_body(&r), json!(["accept"]));
}

#[test]
fn a_syntax_error_is_a_compile_error_with_line_and_column() {
    let err = compile("let x = 1;\nlet y = (2 + ;\n", &Limits::default()).unwrap_err();
    assert_eq!(err.line, Some(2), "{err:?}");
    assert!(err.column.is_some(), "{err:?}");
    assert_eq!(err.limit, None);
    assert!(!err.message.is_empty());
    assert!(err.to_string().contains("line 2"), "{err}");
}

#[test]
fn compile_errors_for_a_missing_brace_and_an_unknown_token() {
    for (source, line) in [("fn f() {\n  1\n", 3), ("let a = 1;\nlet b = 2 @ 3;", 2)] {
        let err: CompileError = compile(source, &Limits::default()).unwrap_err();
        assert_eq!(err.line, Some(line), "{source}: {err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_error_reports_the_line() {
    let source = "let a = 1;\nlet b = a.nope();\nb";
    let inv = run_with(&executor(), source, get("/")).await;
    let err = inv.outcome.unwrap_err();
    assert!(
        matches!(&err, ExecError::Runtime { message, line: Some(2), .. } if message.contains("nope")),
        "{err:?}"
    );
    assert_eq!(err.line(), Some(2));
    // `a.nope()`: the column of the call, 1-based.
    assert_eq!(err.column(), Some(11), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "script error: {}",
            match &err {
                ExecError::Runtime { message, .. } => message.clone(),
                _ => unreachable!(),
            }
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_inside_a_function_names_it_and_points_at_its_line() {
    let source = "fn checkout(cart) {\n  cart.total / 0\n}\ncheckout(#{total: 5})";
    let err = run_with(&executor(), source, get("/"))
        .await
        .outcome
        .unwrap_err();
    let ExecError::Runtime { message, line, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(message.contains("Division by zero"), "{message}");
    assert!(message.contains("checkout"), "{message}");
    assert_eq!(*line, Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thrown_values_are_runtime_errors() {
    let ex = executor();
    let err = run_with(&ex, "throw \"out of stock\"", get("/"))
        .await
        .outcome
        .unwrap_err();
    assert!(
        matches!(&err, ExecError::Runtime { message, .. } if message == "out of stock"),
        "{err:?}"
    );
    let err = run_with(&ex, "throw #{code: 7}", get("/"))
        .await
        .outcome
        .unwrap_err();
    assert!(
        matches!(&err, ExecError::Runtime { message, .. } if message.contains("code")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn print_and_debug_go_to_the_invocation_log() {
    let inv = run_with(
        &executor(),
        "print(\"one\");\ndebug(\"two\");\nprint([1, #{a: 2}]);\n\"done\"",
        get("/"),
    )
    .await;
    assert_eq!(inv.outcome.unwrap().body_text(), Some("done"));
    assert_eq!(
        inv.logs,
        vec![
            "one".to_owned(),
            "[debug line 2] \"two\"".to_owned(),
            "[1, #{\"a\": 2}]".to_owned(),
        ]
    );
    assert!(!inv.truncated_logs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_a_failed_run_are_kept() {
    let inv = run_with(&executor(), "print(\"before\"); throw \"boom\"", get("/")).await;
    assert!(inv.outcome.is_err());
    assert_eq!(inv.logs, vec!["before".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_past_the_limit_is_truncated_with_a_marker() {
    let limits = Limits {
        max_output_bytes: 10,
        ..Limits::default()
    };
    let script = compile(
        "print(\"12345678\"); print(\"abcdef\"); print(\"never\"); 1",
        &limits,
    )
    .unwrap();
    let inv = executor()
        .execute("app", &script, get("/"), &limits)
        .await
        .unwrap();
    assert!(inv.outcome.is_ok());
    assert!(inv.truncated_logs);
    assert_eq!(inv.logs[..2], ["12345678".to_owned(), "ab".to_owned()]);
    assert!(inv.logs[2].contains("output truncated"), "{:?}", inv.logs);
    assert_eq!(inv.logs.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_and_top_level_return_answer_with_their_value() {
    assert_eq!(
        json_body(&respond("exit(#{a: 1}); 2").await),
        json!({"a": 1})
    );
    assert_eq!(json_body(&respond("return 3; 4").await), json!(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parse_json_and_to_json_are_strict_json() {
    let r = respond(r#"let v = parse_json(`{"a": [1, null]}`); v.b = "x"; v.to_json()"#).await;
    assert_eq!(r.body_text(), Some(r#"{"a":[1,null],"b":"x"}"#));
    let ex = executor();
    let err = run_with(&ex, "parse_json(`{\"a\": sleep(1)}`)", get("/"))
        .await
        .outcome
        .unwrap_err();
    assert!(
        matches!(&err, ExecError::Runtime { message, .. } if message.contains("invalid JSON")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn array_and_map_equality_keep_rhai_semantics() {
    let r = respond("[[1, 2.0] == [1, 2], #{a: [1]} == #{a: [1]}, [1] != [\"1\"], #{a: 1} != #{b: 1}, 2 in [[1], 2]]").await;
    assert_eq!(json_body(&r), json!([true, true, true, true, true]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_duration_is_measured() {
    let started = Instant::now();
    let inv = run_with(
        &executor(),
        "let x = 0; for i in 0..1000 { x += i; } x",
        get("/"),
    )
    .await;
    let outside = started.elapsed();
    assert_eq!(inv.outcome.unwrap().body_text(), Some("499500"));
    // The run's own time: some, but never more than the caller waited.
    assert!(inv.duration > Duration::ZERO);
    assert!(
        inv.duration <= outside,
        "{:?}, but the caller waited {outside:?}",
        inv.duration
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_executor_works_behind_the_trait_object() {
    let ex: std::sync::Arc<dyn Executor> = std::sync::Arc::new(executor());
    let limits = Limits::default();
    let script = compile("request.path", &limits).unwrap();
    let inv = ex
        .execute("app", &script, get("/x"), &limits)
        .await
        .unwrap();
    assert_eq!(inv.outcome.unwrap().body_text(), Some("/x"));
}

#[test]
fn the_sandbox_runs_on_the_current_thread_and_is_reusable() {
    let limits = Limits::default();
    let mut sandbox = Sandbox::new();
    let script = compile("request.method + \" \" + request.path", &limits).unwrap();
    for path in ["/a", "/b"] {
        let inv = sandbox.run(&script, get(path), &limits);
        assert_eq!(
            inv.outcome.unwrap().body_text(),
            Some(format!("GET {path}").as_str())
        );
    }
    // State does not leak between runs: a variable from one run is gone.
    let set = compile("let leaked = 1; leaked", &limits).unwrap();
    // Strict variables refuse `leaked` at compile time; a version stored
    // before them compiles leniently and must still not see it.
    assert!(compile("leaked", &limits).is_err());
    let read = picloud_core::executor::compile_with(
        "leaked",
        &limits,
        &picloud_core::executor::CompileBudget::default().lenient(),
    )
    .unwrap();
    assert!(sandbox.run(&set, get("/"), &limits).outcome.is_ok());
    assert!(sandbox.run(&read, get("/"), &limits).outcome.is_err());
}

#[test]
fn limits_deserialize_with_defaults_and_validate() {
    let limits: Limits =
        serde_json::from_str(r#"{"wall_clock_ms": 250, "max_call_depth": 16}"#).unwrap();
    assert_eq!(limits.wall_clock, Duration::from_millis(250));
    assert_eq!(limits.max_call_depth, 16);
    assert_eq!(limits.max_string_bytes, Limits::default().max_string_bytes);
    assert!(limits.validate().is_ok());
    assert!(Limits::default().validate().is_ok());
    assert!(serde_json::from_str::<Limits>(r#"{"nope": 1}"#).is_err());

    let zero = Limits {
        max_operations: 0,
        ..Limits::default()
    };
    assert_eq!(zero.validate().unwrap_err().field, "max_operations");
    let deep = Limits {
        max_call_depth: 100_000,
        ..Limits::default()
    };
    assert_eq!(deep.validate().unwrap_err().field, "max_call_depth");
    assert_eq!(deep.clamped().max_call_depth, Limits::MAX_CALL_DEPTH);
    let slow = Limits {
        wall_clock: Duration::from_secs(3600),
        ..Limits::default()
    };
    assert_eq!(slow.validate().unwrap_err().field, "wall_clock_ms");
    assert_eq!(slow.clamped().wall_clock, Limits::MAX_WALL_CLOCK);
    let round_trip: Limits =
        serde_json::from_value(serde_json::to_value(Limits::default()).unwrap()).unwrap();
    assert_eq!(round_trip, Limits::default());
}

#[test]
fn error_kinds_for_the_transport() {
    let limit = |limit| ExecError::LimitExceeded {
        limit,
        message: String::new(),
        line: None,
        column: None,
    };
    assert_eq!(limit(LimitKind::WallClock).kind(), ExecErrorKind::Timeout);
    assert_eq!(limit(LimitKind::Operations).kind(), ExecErrorKind::Timeout);
    assert_eq!(
        limit(LimitKind::CallDepth).kind(),
        ExecErrorKind::LimitExceeded
    );
    assert_eq!(ExecError::Overloaded.kind(), ExecErrorKind::Overloaded);
    assert_eq!(
        ExecError::Internal("x".into()).kind(),
        ExecErrorKind::Internal
    );
}

/// The sandbox replaces the standard functions that compare, search, sort,
/// split and replace (see `executor::bounded`): their answers are rhai's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bounded_standard_functions_keep_rhais_semantics() {
    let cases = [
        ("let a = [3, 1, 2]; a.sort(); a", json!([1, 2, 3])),
        (
            "let a = [\"b\", \"c\", \"a\"]; a.sort_desc(); a",
            json!(["c", "b", "a"]),
        ),
        ("let a = [1.5, -2.0]; a.order()", json!([-2.0, 1.5])),
        ("[true, false].order_desc()", json!([true, false])),
        (
            "let a = [3, 1, 2]; a.sort(|x, y| y - x); a",
            json!([3, 2, 1]),
        ),
        ("[3, 1, 2].order(|x, y| x < y)", json!([1, 2, 3])),
        ("let a = [1, 1, 2, 1]; a.dedup(); a", json!([1, 2, 1])),
        (
            "let a = [1, 2, 3, 4]; a.dedup(|x, y| x + 1 == y); a",
            json!([1, 3]),
        ),
        ("[1, 2, 3].index_of(2)", json!(1)),
        ("[1, 2, 3, 2].index_of(2, 2)", json!(3)),
        ("[1, 2, 3, 2].index_of(2, -1)", json!(3)),
        ("[1, 2, 3].index_of(9)", json!(-1)),
        ("[1, 2, 3].index_of(1, 7)", json!(-1)),
        ("[1, 2, 3].index_of(|x| x > 1)", json!(1)),
        ("[[1], \"a\"].contains([1])", json!(true)),
        ("2 in [1, 2]", json!(true)),
        ("1.0 in [1, 2]", json!(true)),
        ("\"x\" in [1, 2]", json!(false)),
        ("[1, [2]] == [1, [2]]", json!(true)),
        ("#{a: 1} != #{a: 2}", json!(true)),
        ("\"a,b,,c\".split(\",\")", json!(["a", "b", "", "c"])),
        ("\"a,b,c\".split(\",\", 2)", json!(["a", "b,c"])),
        ("\"a,b,c\".split_rev(',')", json!(["c", "b", "a"])),
        ("\"a,b,c\".split_rev(\",\", 2)", json!(["c", "a,b"])),
        ("\"ab\".split(\"\")", json!(["", "a", "b", ""])),
        ("\"  a  b \".split()", json!(["a", "b"])),
        ("\"abc\".split(\"x\")", json!(["abc"])),
        ("\"\".split(\",\")", json!([""])),
        ("\"héllo\".to_chars().len()", json!(5)),
        ("\"ab\".to_blob().len()", json!(2)),
        (
            "let s = \"a-b-c\"; s.replace(\"-\", \"+=\"); s",
            json!("a+=b+=c"),
        ),
        ("let s = \"aXa\"; s.replace('a', \"bb\"); s", json!("bbXbb")),
        ("let s = \"ab\"; s.replace(\"\", \"-\"); s", json!("-a-b-")),
        ("let s = \"abc\"; s.replace('b', 'x'); s", json!("axc")),
        (
            "parse_json(\"[1, {\\\"a\\\": [true]}]\")",
            json!([1, {"a": [true]}]),
        ),
        ("`${[1, \"a\"]}`", json!("[1, \"a\"]")),
        ("#{a: [1]}.to_json()", json!("{\"a\":[1]}")),
    ];
    let ex = executor();
    for (source, expected) in cases {
        let inv = run_with(&ex, source, get("/")).await;
        let response = inv.outcome.unwrap_or_else(|e| panic!("{source}: {e:?}"));
        let body: Value = if response.content_type.as_deref() == Some("text/plain; charset=utf-8") {
            Value::String(String::from_utf8(response.body.clone()).unwrap())
        } else {
            json_body(&response)
        };
        assert_eq!(body, expected, "{source}");
    }
    let mixed = run_with(&ex, "let a = [1, \"a\"]; a.sort(); a", get("/")).await;
    assert!(
        matches!(&mixed.outcome, Err(ExecError::Runtime { message, .. }) if message.contains("different types")),
        "{:?}",
        mixed.outcome
    );
    // A comparer's error ends the sort (rhai's own sort ignored it).
    let failing = run_with(
        &ex,
        "let a = [3, 1, 2]; a.sort(|x, y| throw \"no\"); a",
        get("/"),
    )
    .await;
    assert!(
        matches!(&failing.outcome, Err(ExecError::Runtime { message, .. }) if message.contains("no")),
        "{:?}",
        failing.outcome
    );
}
