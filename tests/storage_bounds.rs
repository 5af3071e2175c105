//! End-to-end: what one app can store is bounded, on both stores.
//!
//! - Invocation logs: an app with `max_output_bytes` at the maximum floods a
//!   script with huge lines; its retained bytes stay within the per-script
//!   bound, and another app's script, invoked meanwhile, keeps every record
//!   up to the count bound. `?limit=1` answers one record.
//! - Script sources: deploys stop at the app's storage quota with a clear
//!   422 JSON error; deleting a script frees its bytes; the script detail
//!   lists versions with their sizes, never their sources.

#[macro_use]
mod support;

use std::time::Duration;

use picloud::ports::{
    INVOCATION_BYTES_PER_SCRIPT, INVOCATION_RECORD_MAX_BYTES, INVOCATIONS_KEPT,
    SOURCE_BYTES_PER_APP,
};
use picloud::scripts::MAX_SOURCE_BYTES;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::TestServer;

/// Prints 64 lines of 256 KiB: 16 MiB, the most `max_output_bytes` allows.
const FLOOD: &str = r#"
let line = "x";
while line.len() < 262144 { line += line; }
for i in 0..64 { print(line); }
"flooded"
"#;

/// Bytes an invocation record holds: its log lines and its error.
fn record_bytes(r: &Value) -> usize {
    let logs: usize = r["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().len())
        .sum();
    logs + r["error"].as_str().map_or(0, str::len)
}

impl TestServer {
    async fn invocations(&self, app: &str, script: &str, limit: usize) -> Vec<Value> {
        let (status, body) = self
            .get(
                &format!("/api/v1/admin/apps/{app}/scripts/{script}/invocations?limit={limit}"),
                &self.owner_token,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body.as_array().unwrap().clone()
    }

    async fn run_ok(&self, path: &str) {
        let resp = self.client.get(self.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
    }
}

async fn a_log_flood_stays_within_its_bounds_and_spares_other_apps(s: TestServer) {
    s.create_app("flood").await;
    s.create_app("victim").await;
    let (status, body) = s
        .call(
            Method::PUT,
            "/api/v1/admin/apps/flood/limits",
            Some(&s.owner_token),
            Some(json!({ "max_output_bytes": 16 * 1024 * 1024 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        s.deploy("flood", "loud", FLOOD).await.0,
        StatusCode::CREATED
    );
    let (status, _) = s
        .deploy("victim", "quiet", r#"print("hi " + request.query.n); "ok""#)
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let rounds = 12;
    let per_round = 10;
    for round in 0..rounds {
        s.run_ok("/run/flood/loud").await;
        for i in 0..per_round {
            s.run_ok(&format!("/run/victim/quiet?n={}", round * per_round + i))
                .await;
        }
    }
    let last = format!("hi {}", rounds * per_round - 1);
    // Records reach the log in the background: wait for the last one.
    let mut victim = Vec::new();
    for _ in 0..250 {
        victim = s.invocations("victim", "quiet", 100).await;
        if victim.first().is_some_and(|r| r["logs"] == json!([last])) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        victim.len(),
        INVOCATIONS_KEPT,
        "the victim keeps 100 records"
    );
    for (k, r) in victim.iter().enumerate() {
        let n = rounds * per_round - 1 - k;
        assert_eq!(
            r["logs"],
            json!([format!("hi {n}")]),
            "newest first, none lost"
        );
    }

    let flood = s.invocations("flood", "loud", 100).await;
    assert!(!flood.is_empty(), "the flooding script is still logged");
    let retained: usize = flood.iter().map(record_bytes).sum();
    assert!(
        retained <= INVOCATION_BYTES_PER_SCRIPT,
        "{retained} bytes retained for one script"
    );
    for r in &flood {
        assert!(record_bytes(r) <= INVOCATION_RECORD_MAX_BYTES);
        let logs = r["logs"].as_array().unwrap();
        assert!(logs[0].as_str().unwrap().starts_with("xxxx"));
        let marker = logs.last().unwrap().as_str().unwrap();
        assert!(marker.starts_with("[log truncated"), "{marker}");
        assert_eq!(r["status"], 200);
    }

    // `?limit=1` is the newest record alone.
    let one = s.invocations("victim", "quiet", 1).await;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0], victim[0]);
    let one = s.invocations("flood", "loud", 1).await;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0], flood[0]);
    s.shutdown().await;
}

/// `source` (from [`source_of`]) with `i` written into its first comment:
/// the same length, a different source.
fn numbered(source: &str, i: usize) -> String {
    source.replacen("xxx", &format!("{i:03}"), 1)
}

/// A source of exactly `len` bytes that compiles (to 1): comment lines.
fn source_of(len: usize) -> String {
    let mut src = String::from("1\n");
    let line = format!("// {}\n", "x".repeat(1021));
    while src.len() + line.len() <= len {
        src.push_str(&line);
    }
    let rest = len - src.len();
    if rest >= 3 {
        src.push_str("//");
        src.push_str(&"x".repeat(rest - 3));
        src.push('\n');
    } else {
        src.push_str(&" ".repeat(rest));
    }
    assert_eq!(src.len(), len);
    src
}

async fn deploys_stop_at_the_quota_and_deleting_a_script_frees_it(s: TestServer) {
    s.create_app("shop").await;
    let size = MAX_SOURCE_BYTES - 64;
    let fit = usize::try_from(SOURCE_BYTES_PER_APP).unwrap() / size;
    let big = source_of(size);
    for i in 0..fit {
        // Versions of a few scripts: every version counts.
        // Each version differs (an identical upload stores nothing).
        let (status, body) = s
            .deploy("shop", &format!("big{}", i % 4), &numbered(&big, i))
            .await;
        assert!(status.is_success(), "deploy {i}: {status} {body}");
    }
    let (_, usage) = s.get("/api/v1/admin/apps/shop/usage", &s.owner_token).await;
    assert_eq!(usage["script_source_bytes"], json!(fit * size));
    assert_eq!(
        usage["script_source_bytes_quota"],
        json!(SOURCE_BYTES_PER_APP)
    );

    // The next one would pass the quota: a clear 422, and nothing stored.
    let (status, body) = s.deploy("shop", "extra", &big).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("storage quota exceeded"), "{error}");
    assert!(error.contains(&SOURCE_BYTES_PER_APP.to_string()), "{error}");
    let (status, body) = s.deploy("shop", "big1", &numbered(&big, 999)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _) = s
        .get("/api/v1/admin/apps/shop/scripts/extra", &s.owner_token)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Viewers cannot delete; editors can; a second delete is still 204.
    let (vera, vera_token) = s.user("vera", "member").await;
    s.grant("shop", &vera, "viewer").await;
    let (status, body) = s
        .delete("/api/v1/admin/apps/shop/scripts/big0", &vera_token)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (ed, ed_token) = s.user("ed", "member").await;
    s.grant("shop", &ed, "editor").await;
    let (_, before) = s
        .get("/api/v1/admin/apps/shop/scripts/big0", &s.owner_token)
        .await;
    let versions = before["versions"].as_array().unwrap().len();
    s.run_ok("/run/shop/big0").await;
    for _ in 0..2 {
        let (status, body) = s
            .delete("/api/v1/admin/apps/shop/scripts/big0", &ed_token)
            .await;
        assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    }
    let (status, _) = s
        .get("/api/v1/admin/apps/shop/scripts/big0", &s.owner_token)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let resp = s.client.get(s.url("/run/shop/big0")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "no longer served");
    let (status, _) = s
        .delete("/api/v1/admin/apps/nope/scripts/big0", &s.owner_token)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Its bytes are free again.
    let (_, usage) = s.get("/api/v1/admin/apps/shop/usage", &s.owner_token).await;
    assert_eq!(usage["script_source_bytes"], json!((fit - versions) * size));
    let (status, body) = s.deploy("shop", "extra", &big).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    s.run_ok("/run/shop/extra").await;
    s.shutdown().await;
}

async fn the_script_detail_lists_versions_without_sources(s: TestServer) {
    s.create_app("shop").await;
    let sources = ["\"one\"", "\"version two\""];
    for src in sources {
        assert!(s.deploy("shop", "v", src).await.0.is_success());
    }
    let (status, detail) = s
        .get("/api/v1/admin/apps/shop/scripts/v", &s.owner_token)
        .await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    let versions = detail["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    for (v, src) in versions.iter().zip(sources) {
        assert_eq!(v["size_bytes"], json!(src.len()));
        assert!(v.get("source").is_none(), "no source in a listing: {v}");
        assert!(v["created_at"].is_string() && v["created_by"].is_string());
    }
    assert_eq!(versions[1]["live"], true);
    let (_, v1) = s
        .get(
            "/api/v1/admin/apps/shop/scripts/v/versions/1",
            &s.owner_token,
        )
        .await;
    assert_eq!(v1["source"], sources[0]);
    assert_eq!(v1["size_bytes"], json!(sources[0].len()));
    s.shutdown().await;
}

on_both_stores!(
    a_log_flood_stays_within_its_bounds_and_spares_other_apps,
    deploys_stop_at_the_quota_and_deleting_a_script_frees_it,
    the_script_detail_lists_versions_without_sources,
);
