//! Event engine throughput (not criterion): `/async` enqueue and run of a
//! trivial script, end to end, against plain `/run` of the same script with
//! the same client concurrency, in one run on loopback.
//!
//! ```text
//! cargo bench --bench events                          # memory store
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!   cargo bench --bench events                        # memory and PostgreSQL
//! cargo bench --bench events -- postgres              # only matching stores
//! ```
//!
//! For each store, the server is started in-process (`picloud::server::start`,
//! with the job runner and the scheduler, on 127.0.0.1:0) and a trivial script
//! (`"ok"`) deployed, the app's queue cap raised so the bench measures the
//! engine rather than the cap. Then, with [`TASKS`] concurrent requests on one
//! keep-alive client:
//! - **run baseline**: `POST /run/bench/ok` for [`SECONDS`] s;
//! - **enqueue**: `POST /async/bench/ok` for [`SECONDS`] s, counting the 202s;
//! - **end to end**: every job acknowledged, divided by the time from the
//!   first enqueue to the moment no job is queued or running any more (the
//!   jobs API, polled every [`POLL`] once the load has stopped).
//!
//! Targets (DESIGN.md, "Performance targets"): ≥ 10,000 jobs/s end to end on
//! the memory store and ≥ 3,000 jobs/s on PostgreSQL, on the 2-core machine.

mod stores;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use picloud::server::{RunningServer, ServerConfig};
use serde_json::json;
use tokio::sync::OnceCell;

/// The `picloud` binary's allocator (jemalloc, which the memory meter
/// reads), as the server runs on it.
#[global_allocator]
static ALLOCATOR: picloud_core::executor::meter::MeteredAllocator =
    picloud_core::executor::meter::MeteredAllocator;

/// Seconds of load per measurement.
const SECONDS: u64 = 5;
/// Concurrent requests in flight.
const TASKS: usize = 64;
/// How often the queue is looked at while it drains.
const POLL: Duration = Duration::from_millis(10);
/// The longest a queue may take to drain before the bench gives up.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// What one measurement saw.
struct Load {
    /// Answers with the expected status.
    ok: u64,
    /// Other answers and failed requests.
    errors: u64,
    /// The first unexpected answer, if any.
    first_error: Option<String>,
    /// When the first request was sent.
    started: Instant,
    /// How long the load ran (until the last answer).
    elapsed: Duration,
}

/// Sends `POST {url}` from [`TASKS`] tasks for `seconds`, counting the
/// answers with status `expect`.
async fn drive(client: &reqwest::Client, url: &str, expect: u16, seconds: u64) -> Load {
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(OnceCell::<String>::new());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let (client, url) = (client.clone(), url.to_owned());
        let (ok, errors, first_error) = (ok.clone(), errors.clone(), first_error.clone());
        tasks.spawn(async move {
            let body = json!({ "bench": true }).to_string();
            while Instant::now() < deadline {
                let sent = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(resp) if resp.status().as_u16() == expect => {
                        let _ = resp.bytes().await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(resp) => {
                        let status = resp.status();
                        let text = resp.text().await.unwrap_or_default();
                        let _ = first_error.set(format!("{status} {text}"));
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        let _ = first_error.set(e.to_string());
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Load {
        ok: ok.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        first_error: first_error.get().cloned(),
        started,
        elapsed: started.elapsed(),
    }
}

/// Whether any of the app's jobs is in `status`.
async fn any_in(client: &reqwest::Client, base: &str, token: &str, status: &str) -> bool {
    let jobs: Vec<serde_json::Value> = client
        .get(format!(
            "{base}/api/v1/admin/apps/bench/jobs?status={status}&limit=1"
        ))
        .bearer_auth(token)
        .send()
        .await
        .expect("the jobs API answers")
        .json()
        .await
        .expect("a JSON list");
    !jobs.is_empty()
}

async fn start(database_url: Option<String>, token: &str) -> RunningServer {
    picloud::server::start(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url,
        bootstrap_token: Some(token.to_owned()),
        executor: picloud::server::executor_config(),
        ..ServerConfig::default()
    })
    .await
    .expect("the server starts")
}

async fn measure(label: &str, database_url: Option<String>) {
    let token = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let server = start(database_url, &token).await;
    let base = server.url();
    let client = {
        picloud_core::egress::install_crypto_provider();
        reqwest::Client::builder()
    }
    .pool_max_idle_per_host(TASKS)
    .build()
    .unwrap();
    for _ in 0..200 {
        let ready = client.get(format!("{base}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
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
    // The default cap (10,000 held jobs) would turn a backlog into 429s.
    let resp = client
        .patch(format!("{base}/api/v1/admin/apps/bench/limits"))
        .bearer_auth(&token)
        .json(&json!({ "max_queued_jobs": 1_000_000, "max_queued_bytes": 1_073_741_824u64 }))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert_eq!(
        status,
        200,
        "raise the queue cap: {}",
        resp.text().await.unwrap()
    );
    let resp = client
        .put(format!("{base}/api/v1/admin/apps/bench/scripts/ok"))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body(r#""ok""#)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "deploy: {}", resp.status());

    let run_url = format!("{base}/run/bench/ok");
    let async_url = format!("{base}/async/bench/ok");
    drive(&client, &run_url, 200, 1).await; // warm-up
    let run = drive(&client, &run_url, 200, SECONDS).await;
    let run_rps = run.ok as f64 / run.elapsed.as_secs_f64();

    let enqueue = drive(&client, &async_url, 202, SECONDS).await;
    let enqueue_rate = enqueue.ok as f64 / enqueue.elapsed.as_secs_f64();
    let drain_started = Instant::now();
    let done = loop {
        if !any_in(&client, &base, &token, "queued").await
            && !any_in(&client, &base, &token, "running").await
        {
            break Instant::now();
        }
        assert!(
            drain_started.elapsed() < DRAIN_LIMIT,
            "{label}: the queue did not drain within {DRAIN_LIMIT:?} of the load's end"
        );
        tokio::time::sleep(POLL).await;
    };
    let dead = any_in(&client, &base, &token, "dead").await;
    let end_to_end = enqueue.ok as f64 / (done - enqueue.started).as_secs_f64();
    let target = if label == "memory" { 10_000 } else { 3_000 };
    println!(
        "events {label:<8} enqueue {enqueue_rate:>7.0} jobs/s; end-to-end {end_to_end:>7.0} jobs/s \
         (target {target}); run baseline {run_rps:>7.0} req/s; ratio {:.2}x (enqueue {:.2}x)",
        end_to_end / run_rps,
        enqueue_rate / run_rps,
    );
    println!(
        "events {label:<8} {} jobs acknowledged in {:.1} s, all finished {:.2} s after the load \
         stopped; {} /run answers in {:.1} s; {TASKS} concurrent requests",
        enqueue.ok,
        enqueue.elapsed.as_secs_f64(),
        (done - enqueue.started)
            .saturating_sub(enqueue.elapsed)
            .as_secs_f64(),
        run.ok,
        run.elapsed.as_secs_f64(),
    );
    for (what, load) in [("/run", &run), ("/async", &enqueue)] {
        if load.errors > 0 {
            println!(
                "events {label:<8} {what}: {} unexpected answers (first: {})",
                load.errors,
                load.first_error.as_deref().unwrap_or("?")
            );
        }
    }
    if dead {
        println!("events {label:<8} WARNING: some jobs are dead (a trivial script failed)");
    }
    drop(client);
    server.shutdown().await.expect("clean shutdown");
}

fn main() {
    stores::on_each_store("events", measure);
}
