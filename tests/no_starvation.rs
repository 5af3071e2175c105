//! No starvation: while one app fills its share of the executor's pool with
//! infinite loops, and more of them wait, another app's trivial script still
//! gets a worker and answers. In its own test binary, so that no other test
//! competes for the CPU while it measures.
//!
//! The inline fast path is off: with it, the good app's trivial script
//! would answer on the async task and never need a worker (that case is
//! `while_one_app_floods_the_pool_another_apps_hello_answers_inline`, in
//! `picloud-core/tests/executor_inline.rs`).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use picloud_core::executor::{ExecutorConfig, ExecutorStats, Limits};
use reqwest::{Method, StatusCode};
use serde_json::json;
use support::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_apps_infinite_loops_do_not_starve_another_app() {
    let executor = ExecutorConfig {
        inline: None,
        ..ExecutorConfig::with_workers(4)
    };
    let share = executor.per_tenant_max_in_flight;
    let s = Arc::new(
        TestServer::configured(false, |c| c.executor = executor)
            .await
            .expect("a memory server"),
    );
    let stats = || -> ExecutorStats { s.server.executor_stats().expect("the executor counts") };
    s.create_app("evil").await;
    s.create_app("good").await;
    // The evil app's loops end on its wall clock, never on the operation
    // count (which a loop reaches sooner, and sooner on a faster machine).
    let evil_wall_clock = Duration::from_millis(500);
    let (status, body) = s
        .call(
            Method::PUT,
            "/api/v1/admin/apps/evil/limits",
            Some(&s.owner_token),
            Some(json!({
                "wall_clock_ms": evil_wall_clock.as_millis(),
                "max_operations": Limits::MAX_OPERATIONS,
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for (app, src) in [("evil", "loop {}"), ("good", "\"still here\"")] {
        let resp = s
            .client
            .put(s.url(&format!("/api/v1/admin/apps/{app}/scripts/s")))
            .bearer_auth(&s.owner_token)
            .body(src)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
    }
    // Flood: far more infinite loops than there are workers.
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..24 {
        let s = s.clone();
        flood.spawn(async move {
            s.client
                .get(s.url("/run/evil/s"))
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    // The flood holds its whole share of the workers, and more loops wait.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = stats();
        if now.running == share && now.queued > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the flood never filled its share of the pool: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Had the good app waited for a worker to come free, it would have
    // waited for one of the evil app's loops to end: what is left of the
    // earliest one's wall clock, which can be just under a whole one (or for
    // all of them, a dozen wall clocks, without a share per app). Half a
    // wall clock keeps that case apart; a pass takes milliseconds.
    for _ in 0..5 {
        let started = Instant::now();
        let resp = s.client.get(s.url("/run/good/s")).send().await.unwrap();
        let elapsed = started.elapsed();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "still here");
        println!("the good app answered in {elapsed:?}");
        assert!(
            elapsed < evil_wall_clock / 2,
            "the good app waited {elapsed:?}, against the evil app's wall clock of {evil_wall_clock:?}"
        );
        let during = stats();
        assert!(
            during.queued > 0,
            "the flood had drained before the good app was served: {during:?}"
        );
    }
    let mut statuses = Vec::new();
    while let Some(r) = flood.join_next().await {
        statuses.push(r.unwrap().as_u16());
    }
    // Every loop ended with a limit (504) or was refused at once (503).
    assert!(
        statuses.iter().all(|s| *s == 504 || *s == 503),
        "{statuses:?}"
    );
}
