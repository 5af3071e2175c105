//! The fast path through `/run`, on both stores: a script under the inline
//! budget and the same script over it answer the same HTTP response and
//! leave the same invocation record; an abandoned attempt leaves nothing;
//! a loop still gets its whole wall clock on the pool. Paths are read from
//! the server's executor stats.

mod support;

use std::time::Duration;

use picloud::server::ServerConfig;
use picloud_core::executor::{ExecutorStats, InlineBudget};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::TestServer;

/// The budget's operations decide; its time is generous for a debug build
/// on a loaded machine, and there is no cool-down between attempts.
fn steady(config: &mut ServerConfig) {
    config.executor.inline = Some(InlineBudget {
        time: Duration::from_millis(250),
        cooldown: Duration::ZERO,
        ..InlineBudget::default()
    });
}

fn stats(s: &TestServer) -> ExecutorStats {
    s.server
        .executor_stats()
        .expect("the server's executor counts")
}

/// Status, content type, the script's own header and the body of a `/run`.
async fn call(s: &TestServer, path: &str) -> (StatusCode, String, Option<String>, String) {
    let resp = s
        .client
        .post(s.url(path))
        .header("x-in", "v")
        .body(r#"{"n": 3}"#)
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (ct, mine) = (header("content-type").unwrap_or_default(), header("x-mine"));
    (resp.status(), ct, mine, resp.text().await.unwrap())
}

/// The newest `n` invocation records of `app/script`, once there are `n`.
async fn records(s: &TestServer, app: &str, script: &str, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let (status, body) = s
            .get(
                &format!("/api/v1/admin/apps/{app}/scripts/{script}/invocations?limit=50"),
                &s.owner_token,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let list = body.as_array().unwrap().clone();
        if list.len() >= n {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("fewer than {n} records for {app}/{script}");
}

/// A record without what differs from run to run.
fn essence(record: &Value) -> Value {
    json!({
        "status": record["status"],
        "logs": record["logs"],
        "error": record["error"],
    })
}

const CORPUS: &[&str] = &[
    r#""text""#,
    r#"#{ n: request.json.n, h: request.headers["x-in"], m: request.method, p: request.path }"#,
    r#"response(201, "made", #{ "x-mine": "1", "content-type": "text/csv" })"#,
    r#"response(202, #{ ok: true }, #{ "x-mine": "2" })"#,
    "()",
    "print(\"a\");\ndebug(\"b\");\n[1, 2, 3]",
    "print(\"before\");\nthrow \"bad\";",
    "let m = #{};\nm.x.y",
    "response(1000, ())",
];

async fn under_and_over_the_budget_answer_and_record_the_same(s: TestServer) {
    s.create_app("shop").await;
    for (i, source) in CORPUS.iter().enumerate() {
        let long = format!("let z = 0; for i in 0..3000 {{ z += 1 }} {source}");
        for (name, source) in [
            (format!("u{i}"), source.to_string()),
            (format!("o{i}"), long),
        ] {
            let (status, body) = s.deploy("shop", &name, &source).await;
            assert_eq!(status, StatusCode::CREATED, "{source}: {body}");
        }
        let before = stats(&s);
        let short = call(&s, &format!("/run/shop/u{i}/x")).await;
        let mid = stats(&s);
        let long = call(&s, &format!("/run/shop/o{i}/x")).await;
        let after = stats(&s);
        assert_eq!(short, long, "{source}");
        assert_eq!(
            (
                mid.inline_completed - before.inline_completed,
                mid.pool_runs - before.pool_runs
            ),
            (1, 0),
            "{source} runs inline"
        );
        assert_eq!(
            (
                after.inline_abandoned - mid.inline_abandoned,
                after.pool_runs - mid.pool_runs
            ),
            (1, 1),
            "{source} moves to the pool"
        );
        let (u, o) = (
            records(&s, "shop", &format!("u{i}"), 1).await,
            records(&s, "shop", &format!("o{i}"), 1).await,
        );
        assert_eq!((u.len(), o.len()), (1, 1), "one record each: {source}");
        assert_eq!(essence(&u[0]), essence(&o[0]), "{source}");
    }
}

async fn a_script_that_prints_then_passes_the_budget_records_only_the_pool_runs_logs(
    s: TestServer,
) {
    s.create_app("shop").await;
    let source =
        "print(\"start\");\nlet n = 0;\nfor i in 0..10000 { n += i }\nprint(`end ${n}`);\nn";
    assert_eq!(s.deploy("shop", "p", source).await.0, StatusCode::CREATED);
    let before = stats(&s);
    let (status, _, _, body) = call(&s, "/run/shop/p").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "49995000"));
    assert_eq!(stats(&s).inline_abandoned - before.inline_abandoned, 1);
    records(&s, "shop", "p", 1).await;
    // Had the attempt left a record, it would be written by now too.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let list = records(&s, "shop", "p", 1).await;
    assert_eq!(
        list.len(),
        1,
        "the abandoned attempt has no record: {list:?}"
    );
    assert_eq!(list[0]["logs"], json!(["start", "end 49995000"]));
    assert_eq!(list[0]["status"], 200);
}

async fn an_infinite_loop_is_504_after_its_whole_wall_clock(s: TestServer) {
    s.create_app("shop").await;
    let (status, body) = s
        .call(
            reqwest::Method::PUT,
            "/api/v1/admin/apps/shop/limits",
            Some(&s.owner_token),
            Some(json!({ "wall_clock_ms": 300, "max_operations": 5_000_000_000_u64 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        s.deploy("shop", "spin", "loop {}").await.0,
        StatusCode::CREATED
    );
    let (status, _, _, body) = call(&s, "/run/shop/spin").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["limit"], "wall clock");
    let list = records(&s, "shop", "spin", 1).await;
    assert_eq!(list[0]["status"], 504);
    assert!(
        list[0]["duration_us"].as_u64().unwrap() >= 300_000,
        "the pool's run had its whole wall clock: {}",
        list[0]
    );
    assert_eq!(stats(&s).inline_abandoned, 1);
}

macro_rules! on_both_stores_steady {
    ($($name:ident),+ $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let s = super::TestServer::configured(false, super::steady).await.unwrap();
                    super::$name(s).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    if let Some(s) = super::TestServer::configured(true, super::steady).await {
                        super::$name(s).await;
                    }
                }
            )+
        }
    };
}

on_both_stores_steady!(
    under_and_over_the_budget_answer_and_record_the_same,
    a_script_that_prints_then_passes_the_budget_records_only_the_pool_runs_logs,
    an_infinite_loop_is_504_after_its_whole_wall_clock,
);
