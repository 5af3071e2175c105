//! KV throughput (not criterion): `/run` of a script that does one
//! `kv::get` and one `kv::set`, against `/run` of hello, with the same
//! client concurrency, in one run on loopback, on each store.
//!
//! ```text
//! cargo bench --bench kv                           # memory store
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!   cargo bench --bench kv                         # memory and PostgreSQL
//! cargo bench --bench kv -- postgres               # only matching stores
//! ```
//!
//! Hello runs inline (the fast path); the KV script moves to the pool at its
//! first call (an effect), so the ratio prices both the store and the
//! hand-off. Each request of the KV script writes one of [`KEYS`] keys, so
//! writes spread the way a real app's do (one hot key would measure the
//! per-app lock instead).

mod stores;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use picloud::server::ServerConfig;
use serde_json::json;

#[global_allocator]
static ALLOCATOR: picloud_core::executor::meter::MeteredAllocator =
    picloud_core::executor::meter::MeteredAllocator;

/// Seconds of load per measurement.
const SECONDS: u64 = 5;
/// Concurrent requests in flight.
const TASKS: usize = 64;
/// Distinct keys the KV script writes.
const KEYS: u64 = 1000;

/// `GET {url}?k=N` from [`TASKS`] tasks for `seconds`: (answers 200, others).
async fn drive(client: &reqwest::Client, url: &str, seconds: u64) -> (f64, u64) {
    let ok = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS as u64 {
        let (client, url, ok, bad) = (client.clone(), url.to_owned(), ok.clone(), bad.clone());
        tasks.spawn(async move {
            let mut i = t;
            while Instant::now() < deadline {
                i = (i + TASKS as u64) % KEYS;
                match client.get(format!("{url}?k={i}")).send().await {
                    Ok(r) if r.status() == 200 => {
                        let _ = r.bytes().await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    (
        ok.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64(),
        bad.load(Ordering::Relaxed),
    )
}

async fn measure(label: &str, database_url: Option<String>) {
    let token = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let server = picloud::server::start(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url,
        bootstrap_token: Some(token.clone()),
        executor: picloud::server::executor_config(),
        ..ServerConfig::default()
    })
    .await
    .expect("the server starts");
    let base = server.url();
    picloud_core::egress::install_crypto_provider();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(TASKS)
        .build()
        .unwrap();
    for _ in 0..200 {
        if client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let resp = client
        .post(format!("{base}/api/v1/admin/apps"))
        .bearer_auth(&token)
        .json(&json!({ "slug": "bench", "name": "Bench" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "create the app");
    for (name, source) in [
        ("hello", r#""hello""#),
        (
            "kv",
            r#"let k = "key:" + request.query.k; let n = kv::get(k) ?? 0; kv::set(k, n + 1); "ok""#,
        ),
    ] {
        let resp = client
            .put(format!("{base}/api/v1/admin/apps/bench/scripts/{name}"))
            .bearer_auth(&token)
            .header("content-type", "text/plain")
            .body(source)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "deploy {name}");
    }
    let hello = format!("{base}/run/bench/hello");
    let kv = format!("{base}/run/bench/kv");
    drive(&client, &hello, 1).await;
    drive(&client, &kv, 1).await;
    let (hello_rps, hello_bad) = drive(&client, &hello, SECONDS).await;
    let (kv_rps, kv_bad) = drive(&client, &kv, SECONDS).await;
    println!(
        "kv {label:<8} get+set {kv_rps:>7.0} req/s; hello baseline {hello_rps:>7.0} req/s; \
         ratio {:.2}x; {TASKS} concurrent requests, {KEYS} keys",
        kv_rps / hello_rps
    );
    if hello_bad + kv_bad > 0 {
        println!("kv {label:<8} unexpected answers: hello {hello_bad}, kv {kv_bad}");
    }
    drop(client);
    server.shutdown().await.expect("clean shutdown");
}

fn main() {
    stores::on_each_store("kv", measure);
}
