//! No starvation: while one app fills the executor's pool with infinite
//! loops, another app's trivial script still answers. In its own test binary,
//! so that no other test competes for the CPU while it measures.

mod support;

use std::time::{Duration, Instant};

use support::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_apps_infinite_loops_do_not_starve_another_app() {
    let s = std::sync::Arc::new(TestServer::memory().await);
    s.create_app("evil").await;
    s.create_app("good").await;
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
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..5 {
        let started = Instant::now();
        let resp = s.client.get(s.url("/run/good/s")).send().await.unwrap();
        let elapsed = started.elapsed();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "still here");
        // The same bound as the hostile corpus: an answer within 2 s. It is
        // usually a few milliseconds; CI machines under load are slower.
        println!("the good app answered in {elapsed:?}");
        assert!(
            elapsed < Duration::from_secs(2),
            "the good app waited {elapsed:?}"
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
