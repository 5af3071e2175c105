//! `/metrics` (Prometheus) on its own listener: runs by app, script,
//! status class and trigger, their durations, job outcomes, where runs ran
//! (inline or on the pool), the queue depth and the database pool, read by
//! scraping like Prometheus would; and no listener at all unless asked.
//!
//! The recorder is one per process, shared by every server in it, so one
//! test runs both stores in turn and compares counts before and after.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use support::TestServer;

/// One scrape: each sample by its name and labels (sorted).
type Scrape = BTreeMap<(String, BTreeMap<String, String>), f64>;

/// Parses the text format's samples (comments skipped; label values here
/// hold no quotes or commas).
fn parse(text: &str) -> Scrape {
    let mut samples = Scrape::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split(',')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.split_once('=').expect("label=value");
                (k.to_owned(), v.trim_matches('"').to_owned())
            })
            .collect();
        samples.insert((name.to_owned(), labels), value.parse().expect("a number"));
    }
    samples
}

/// The sample `name{labels}`, if present.
fn sample(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    scrape.get(&(name.to_owned(), labels)).copied()
}

/// The sample, or 0 when absent (a counter not yet incremented).
fn count(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(scrape, name, labels).unwrap_or(0.0)
}

async fn scrape_at(client: &reqwest::Client, addr: SocketAddr) -> Scrape {
    let resp = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    parse(&resp.text().await.unwrap())
}

async fn scrape(s: &TestServer) -> Scrape {
    scrape_at(&s.client, s.server.metrics_addr().expect("metrics on")).await
}

/// Scrapes until `done` holds (a job's outcome is counted just after its
/// completion is stored, so just after the job reads as finished).
async fn scrape_until(s: &TestServer, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = scrape(s).await;
        if done(&now) {
            return now;
        }
        assert!(Instant::now() < deadline, "{what}: not within 20 s");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn wait_job(s: &TestServer, app: &str, id: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, job) = s
            .get(
                &format!("/api/v1/admin/apps/{app}/jobs/{id}"),
                &s.owner_token,
            )
            .await;
        assert_eq!(code, StatusCode::OK, "{job}");
        if job["status"] == status {
            return;
        }
        assert!(Instant::now() < deadline, "job {id} not {status}: {job:#}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn enqueue(s: &TestServer, path: &str, max_attempts: &str) -> String {
    let resp = s
        .client
        .post(s.url(&format!("/async/{path}")))
        .header("picloud-max-attempts", max_attempts)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let body: Value = resp.json().await.unwrap();
    body["job_id"].as_str().unwrap().to_owned()
}

const OUTCOMES: &str = "picloud_job_outcomes_total";

/// Runs scripts of a fresh app `app` over `/run` and `/async` and checks
/// what one scrape says of them, and of the node.
async fn scenario(s: TestServer, app: &str, postgres: bool) {
    let before = scrape(&s).await;
    s.create_app(app).await;
    for (name, source) in [
        ("hello", r#""hi""#),
        ("teapot", r#"response(418, "short and stout")"#),
        ("boom", r#"throw "boom""#),
    ] {
        let (status, body) = s.deploy(app, name, source).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    for _ in 0..3 {
        let (status, _, body) = s.run(Method::GET, &format!("/run/{app}/hello"), None).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "hi"));
    }
    let (status, _, _) = s
        .run(Method::GET, &format!("/run/{app}/teapot"), None)
        .await;
    assert_eq!(status.as_u16(), 418);
    let ok = enqueue(&s, &format!("{app}/hello"), "1").await;
    let doomed = enqueue(&s, &format!("{app}/boom"), "2").await;
    wait_job(&s, app, &ok, "succeeded").await;
    wait_job(&s, app, &doomed, "dead").await;

    let outcome = |scrape: &Scrape, outcome: &str| {
        count(scrape, OUTCOMES, &[("outcome", outcome)])
            - count(&before, OUTCOMES, &[("outcome", outcome)])
    };
    // The job of `hello` succeeded; `boom` failed, was retried, then died.
    let now = scrape_until(&s, "the job outcomes", |m| {
        outcome(m, "succeeded") >= 1.0 && outcome(m, "dead") >= 1.0
    })
    .await;
    assert_eq!(
        ["succeeded", "retried", "dead"].map(|o| outcome(&now, o)),
        [1.0, 1.0, 1.0]
    );

    let runs = |script: &str, status: &str, trigger: &str| {
        sample(
            &now,
            "picloud_invocations_total",
            &[
                ("app", app),
                ("script", script),
                ("status", status),
                ("trigger", trigger),
            ],
        )
    };
    assert_eq!(runs("hello", "2xx", "http"), Some(3.0));
    assert_eq!(runs("teapot", "4xx", "http"), Some(1.0));
    assert_eq!(runs("hello", "2xx", "async"), Some(1.0));
    assert_eq!(runs("boom", "5xx", "async"), Some(2.0));
    assert_eq!(runs("boom", "5xx", "http"), None);

    // Durations: one series per script, with the configured buckets.
    let hist = |suffix: &str, extra: &[(&str, &str)]| {
        let mut labels = vec![("app", app), ("script", "hello")];
        labels.extend_from_slice(extra);
        sample(
            &now,
            &format!("picloud_invocation_duration_seconds{suffix}"),
            &labels,
        )
    };
    assert_eq!(hist("_count", &[]), Some(4.0));
    assert_eq!(hist("_bucket", &[("le", "+Inf")]), Some(4.0));
    assert_eq!(hist("_bucket", &[("le", "30")]), Some(4.0));
    assert!(hist("_bucket", &[("le", "0.0005")]).is_some());
    assert!(hist("_sum", &[]).unwrap() > 0.0);

    // Where they ran: the server's own counts, every run counted once.
    let stats = s.server.executor_stats().unwrap();
    let inline = sample(&now, "picloud_runs_total", &[("path", "inline")]).unwrap();
    let pool = sample(&now, "picloud_runs_total", &[("path", "pool")]).unwrap();
    assert_eq!(
        (inline, pool),
        (stats.inline_completed as f64, stats.pool_runs as f64)
    );
    assert_eq!(inline + pool, 7.0, "3 + 1 runs, 1 + 2 attempts");
    assert!(sample(&now, "picloud_executor_workers", &[("state", "idle")]).is_some());
    assert_eq!(sample(&now, "picloud_executor_queued", &[]), Some(0.0));

    // The queue: nothing waits, one dead job is kept.
    assert_eq!(sample(&now, "picloud_jobs_queued", &[]), Some(0.0));
    assert_eq!(sample(&now, "picloud_jobs_running", &[]), Some(0.0));
    assert_eq!(sample(&now, "picloud_jobs_dead", &[]), Some(1.0));

    // The database pool, on PostgreSQL only.
    let max = sample(&now, "picloud_db_pool_max_connections", &[]);
    let idle = sample(&now, "picloud_db_pool_connections", &[("state", "idle")]);
    let in_use = sample(&now, "picloud_db_pool_connections", &[("state", "in_use")]);
    if postgres {
        let (max, idle, in_use) = (max.unwrap(), idle.unwrap(), in_use.unwrap());
        assert!(
            max >= 1.0 && idle + in_use <= max,
            "{idle} + {in_use} of {max}"
        );
    } else {
        assert_eq!((max, idle, in_use), (None, None, None));
    }

    // Only `GET /metrics` is served there, and never the API.
    let addr = s.server.metrics_addr().unwrap();
    for (method, path) in [
        (Method::GET, "/"),
        (Method::GET, "/healthz"),
        (Method::GET, "/api/v1/admin/apps"),
        (Method::POST, "/metrics"),
    ] {
        let resp = s
            .client
            .request(method.clone(), format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{method} {path}");
        let body: Value = resp.json().await.expect("a JSON 404");
        assert!(body["error"].is_string(), "{body}");
    }

    // It stops with the server.
    s.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

fn with_metrics(c: &mut picloud::server::ServerConfig) {
    c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    c.retry_base = Duration::from_millis(20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_count_runs_jobs_and_the_nodes_state() {
    let memory = TestServer::configured(false, with_metrics).await.unwrap();
    scenario(memory, "metered-memory", false).await;
    if let Some(postgres) = TestServer::configured(true, with_metrics).await {
        scenario(postgres, "metered-postgres", true).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_metrics_listener_unless_configured() {
    let s = TestServer::memory().await;
    assert_eq!(s.server.metrics_addr(), None);
    s.shutdown().await;
}
