//! End-to-end: the event engine over HTTP, on both stores. `/async` and its
//! jobs (the stored request, the result, idempotency keys, retries with
//! backoff, dead jobs and their replay after a fix, 5xx answers as
//! failures), per-second schedules and time zones, topics with `emit` and
//! subscriptions (only successful runs' events count), permissions, bad
//! input and the queue cap.

#[macro_use]
mod support;

use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, Timelike};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::TestServer;

/// The longest wait for a job to reach a state.
const WAIT: Duration = Duration::from_secs(15);
/// The pause between two looks at a job.
const POLL: Duration = Duration::from_millis(25);

/// Retries come quickly.
fn fast_retries(c: &mut picloud::server::ServerConfig) {
    c.retry_base = Duration::from_millis(20);
}

/// Retries come after 100 ms, 200 ms, …: long enough to measure.
fn measurable_retries(c: &mut picloud::server::ServerConfig) {
    c.retry_base = Duration::from_millis(100);
}

/// A failed job waits a minute for its retry: it sits queued.
fn slow_retries(c: &mut picloud::server::ServerConfig) {
    c.retry_base = Duration::from_secs(60);
}

fn admin(app: &str, rest: &str) -> String {
    format!("/api/v1/admin/apps/{app}{rest}")
}

/// The answer to an `/async` call.
struct Reply {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

/// Sends `POST /async/{path}` with `headers` and `body`.
async fn send_async(
    s: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> Reply {
    let mut req = s.client.post(s.url(&format!("/async/{path}")));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body read");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON body for {status}: {text}"))
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// `POST /async/{path}`, expecting 202; returns the job id.
async fn enqueue(s: &TestServer, path: &str, headers: &[(&str, &str)]) -> String {
    let reply = send_async(s, path, headers, None).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{path}: {}", reply.body);
    reply.body["job_id"].as_str().expect("a job id").to_owned()
}

async fn job(s: &TestServer, app: &str, id: &str) -> Value {
    let (status, job) = s
        .get(&admin(app, &format!("/jobs/{id}")), &s.owner_token)
        .await;
    assert_eq!(status, StatusCode::OK, "job {id}: {job}");
    job
}

/// Polls the job until `done` holds (at most [`WAIT`]).
async fn wait_job(
    s: &TestServer,
    app: &str,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let job = job(s, app, id).await;
        if done(&job) {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} is not {what} after {WAIT:?}: {job:#}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Polls the job until its status is `status`; a job that ends in another
/// state fails at once.
async fn wait_status(s: &TestServer, app: &str, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let job = job(s, app, id).await;
        if job["status"] == status {
            return job;
        }
        let finished =
            ["succeeded", "dead", "cancelled"].contains(&job["status"].as_str().unwrap());
        assert!(
            !finished,
            "job {id} ended {} instead of {status}: {job:#}",
            job["status"]
        );
        assert!(
            Instant::now() < deadline,
            "job {id} is not {status} after {WAIT:?}: {job:#}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// `GET …/jobs?{query}` as the owner.
async fn jobs(s: &TestServer, app: &str, query: &str) -> Vec<Value> {
    let (status, list) = s
        .get(&admin(app, &format!("/jobs?{query}")), &s.owner_token)
        .await;
    assert_eq!(status, StatusCode::OK, "jobs?{query}: {list}");
    list.as_array().expect("an array").clone()
}

/// Polls the listing until `done` holds (at most [`WAIT`]).
async fn wait_jobs(
    s: &TestServer,
    app: &str,
    query: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let list = jobs(s, app, query).await;
        if done(&list) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "jobs?{query}: not {what} after {WAIT:?}: {list:#?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

fn time(v: &Value) -> DateTime<FixedOffset> {
    let text = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// A job's result body, parsed as JSON.
fn result_json(job: &Value) -> Value {
    let body = job["result"]["body"]
        .as_str()
        .unwrap_or_else(|| panic!("no result body: {job:#}"));
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"))
}

fn deployed(reply: (StatusCode, Value)) {
    assert!(
        reply.0 == StatusCode::CREATED || reply.0 == StatusCode::OK,
        "deploy: {} {}",
        reply.0,
        reply.1
    );
}

fn is_error(body: &Value) -> bool {
    body["error"].as_str().is_some_and(|e| !e.is_empty())
}

async fn an_async_call_is_202_then_succeeds_with_its_request_and_result(s: TestServer) {
    s.create_app("shop").await;
    deployed(
        s.deploy(
            "shop",
            "echo",
            r#"print("hi"); #{ event: request.event, method: request.method, path: request.path, query: request.query, body: request.body }"#,
        )
        .await,
    );
    deployed(s.deploy("shop", "kind", "request.event.kind").await);
    // A plain /run is an HTTP event.
    let (status, _, body) = s.run(Method::GET, "/run/shop/kind", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "http"));

    let bearer = format!("Bearer {}", s.owner_token);
    let reply = send_async(
        &s,
        "shop/echo/a/b?x=1&y=two",
        &[
            ("content-type", "application/json"),
            ("authorization", &bearer),
        ],
        Some(r#"{"n": 42}"#.to_owned()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(reply.body["status"], "queued");
    let id = reply.body["job_id"].as_str().unwrap().to_owned();
    uuid::Uuid::parse_str(&id).expect("the job id is a UUID");
    let location = reply.headers["location"].to_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/v1/admin/apps/shop/jobs/{id}"));

    let done = wait_status(&s, "shop", &id, "succeeded").await;
    // The Location answers the same job.
    let (status, at_location) = s.get(&location, &s.owner_token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(at_location["id"], json!(id));
    assert_eq!(done["id"], json!(id));
    assert_eq!(done["script"], "echo");
    assert_eq!(done["kind"], "async");
    assert_eq!(done["attempt"], 1);
    assert_eq!(done["max_attempts"], 3);
    for field in ["created_at", "run_at", "updated_at"] {
        time(&done[field]);
    }
    for field in ["schedule", "scheduled_at", "topic", "event_id", "payload"] {
        assert_eq!(done[field], Value::Null, "{field}: {done:#}");
    }
    // The stored request, without the PiCloud token.
    let request = &done["request"];
    assert_eq!(request["method"], "POST");
    assert_eq!(request["path"], "/a/b");
    assert_eq!(request["query"], json!([["x", "1"], ["y", "two"]]));
    assert_eq!(request["body"], r#"{"n": 42}"#);
    assert_eq!(request["headers"]["content-type"], "application/json");
    assert!(
        request["headers"].get("authorization").is_none(),
        "{request:#}"
    );
    assert!(!done.to_string().contains(&s.owner_token));
    // One attempt, with its logs.
    let attempts = done["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{done:#}");
    let first = &attempts[0];
    assert_eq!(first["attempt"], 1);
    assert_eq!(first["version"], 1);
    assert_eq!(first["status"], "succeeded");
    assert_eq!(first["http_status"], 200);
    assert_eq!(first["error"], Value::Null);
    assert_eq!(first["logs"], json!(["hi"]));
    assert!(first["duration_us"].is_u64(), "{first}");
    time(&first["at"]);
    // The result, and what the script saw.
    assert_eq!(done["result"]["status"], 200);
    let seen = result_json(&done);
    assert_eq!(
        seen["event"],
        json!({ "kind": "async", "job_id": id, "attempt": 1 })
    );
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/a/b");
    assert_eq!(seen["query"], json!({ "x": "1", "y": "two" }));
    assert_eq!(seen["body"], r#"{"n": 42}"#);

    // The listing: newest first, without logs.
    let second = enqueue(&s, "shop/kind", &[]).await;
    let done2 = wait_status(&s, "shop", &second, "succeeded").await;
    assert_eq!(done2["result"]["body"], "async");
    let list = jobs(&s, "shop", "").await;
    let ids: Vec<&str> = list.iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [second.as_str(), id.as_str()], "newest first");
    assert_eq!(list[1]["attempts"][0]["logs"], json!([]));
    assert_eq!(list[1]["kind"], "async");
    assert_eq!(jobs(&s, "shop", "script=echo").await.len(), 1);
    assert_eq!(jobs(&s, "shop", "status=succeeded&limit=1").await.len(), 1);
    assert_eq!(jobs(&s, "shop", "status=dead").await.len(), 0);

    // Unknown or malformed ids: 404.
    for bad in [uuid::Uuid::new_v4().to_string(), "nope".to_owned()] {
        let (status, body) = s
            .get(&admin("shop", &format!("/jobs/{bad}")), &s.owner_token)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}: {body}");
        assert!(is_error(&body), "{body}");
    }
    // A finished job can be deleted.
    let (status, _) = s
        .delete(&admin("shop", &format!("/jobs/{second}")), &s.owner_token)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = s
        .get(&admin("shop", &format!("/jobs/{second}")), &s.owner_token)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn the_same_idempotency_key_gives_one_job(s: TestServer) {
    s.create_app("shop").await;
    deployed(s.deploy("shop", "pay", "\"paid\"").await);
    deployed(s.deploy("shop", "refund", "\"refunded\"").await);
    let key = [("idempotency-key", "order-42")];
    let first = enqueue(&s, "shop/pay", &key).await;
    let again = enqueue(&s, "shop/pay", &key).await;
    assert_eq!(first, again, "the same key gives the first job");
    wait_status(&s, "shop", &first, "succeeded").await;
    let third = enqueue(&s, "shop/pay", &key).await;
    assert_eq!(first, third, "also once the first job has run");
    let list = jobs(&s, "shop", "script=pay").await;
    assert_eq!(list.len(), 1, "{list:#?}");
    // Another key, or the same key on another script: a new job.
    let other = enqueue(&s, "shop/pay", &[("idempotency-key", "order-43")]).await;
    assert_ne!(other, first);
    let elsewhere = enqueue(&s, "shop/refund", &key).await;
    assert_ne!(elsewhere, first);
    assert_eq!(jobs(&s, "shop", "script=pay").await.len(), 2);
    assert_eq!(jobs(&s, "shop", "").await.len(), 3);
}

async fn a_failing_job_is_dead_after_max_attempts_with_growing_backoff(s: TestServer) {
    s.create_app("shop").await;
    deployed(s.deploy("shop", "boom", "throw \"boom\"").await);
    let id = enqueue(&s, "shop/boom", &[("picloud-max-attempts", "3")]).await;
    let dead = wait_status(&s, "shop", &id, "dead").await;
    assert_eq!(dead["attempt"], 3);
    assert_eq!(dead["max_attempts"], 3);
    let attempts = dead["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "{dead:#}");
    for (n, a) in attempts.iter().enumerate() {
        assert_eq!(a["attempt"], n + 1, "{a}");
        assert_eq!(a["status"], "failed", "{a}");
        assert_eq!(a["version"], 1, "{a}");
        assert_eq!(a["http_status"], 500, "{a}");
        assert!(a["error"].as_str().unwrap().contains("boom"), "{a}");
    }
    let at: Vec<_> = attempts.iter().map(|a| time(&a["at"])).collect();
    let gap1 = (at[1] - at[0]).to_std().unwrap();
    let gap2 = (at[2] - at[1]).to_std().unwrap();
    assert!(gap1 >= Duration::from_millis(80), "gap 1: {gap1:?}");
    assert!(gap2 >= Duration::from_millis(150), "gap 2: {gap2:?}");
    // Dead jobs are listed.
    let listed = jobs(&s, "shop", "status=dead").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], json!(id));
}

async fn a_dead_job_replayed_after_a_fix_runs_the_new_version(s: TestServer) {
    s.create_app("shop").await;
    deployed(s.deploy("shop", "flaky", "throw \"broken\"").await);
    let id = enqueue(&s, "shop/flaky", &[("picloud-max-attempts", "3")]).await;
    wait_status(&s, "shop", &id, "dead").await;
    let (status, body) = s.deploy("shop", "flaky", "\"fixed\"").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["live_version"], 2);
    let retry = admin("shop", &format!("/jobs/{id}/retry"));
    let (status, body) = s.post(&retry, &s.owner_token, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["id"], json!(id), "the same job");
    assert_eq!(body["status"], "queued");
    let done = wait_status(&s, "shop", &id, "succeeded").await;
    assert_eq!(done["attempt"], 4, "{done:#}");
    let attempts = done["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 4, "{done:#}");
    let versions: Vec<u64> = attempts
        .iter()
        .map(|a| a["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [1, 1, 1, 2]);
    assert_eq!(attempts[3]["attempt"], 4);
    assert_eq!(attempts[3]["status"], "succeeded");
    assert_eq!(done["result"], json!({ "status": 200, "body": "fixed" }));
    // A succeeded job can be replayed too; the numbering goes on.
    let (status, body) = s.post(&retry, &s.owner_token, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let again = wait_job(&s, "shop", &id, "succeeded at attempt 5", |j| {
        j["status"] == "succeeded" && j["attempt"] == 5
    })
    .await;
    assert_eq!(again["attempts"].as_array().unwrap().len(), 5);
}

async fn a_5xx_answer_is_a_failed_attempt(s: TestServer) {
    s.create_app("shop").await;
    deployed(s.deploy("shop", "down", "response(503, \"no\")").await);
    let id = enqueue(&s, "shop/down", &[("picloud-max-attempts", "2")]).await;
    let dead = wait_status(&s, "shop", &id, "dead").await;
    assert_eq!(dead["max_attempts"], 2);
    let attempts = dead["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{dead:#}");
    for a in attempts {
        assert_eq!(a["status"], "failed", "{a}");
        assert_eq!(a["http_status"], 503, "{a}");
    }
    assert_eq!(dead["result"], json!({ "status": 503, "body": "no" }));
}

async fn a_per_second_schedule_fires_once_per_tick(s: TestServer) {
    s.create_app("shop").await;
    deployed(s.deploy("shop", "tick", "request.event").await);
    let path = admin("shop", "/schedules/every-second");
    let (status, body) = s
        .call(
            Method::PUT,
            &path,
            Some(&s.owner_token),
            Some(json!({ "script": "tick", "cron": "* * * * * *", "payload": { "a": 1 } })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"], "every-second");
    assert_eq!(body["script"], "tick");
    assert_eq!(body["cron"], "* * * * * *");
    assert_eq!(body["timezone"], "UTC");
    assert_eq!(body["payload"], json!({ "a": 1 }));
    assert_eq!(body["enabled"], true);
    assert_eq!(body["max_attempts"], 3);
    time(&body["next_run_at"]);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (status, seen) = s.get(&path, &s.owner_token).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    time(&seen["last_run_at"]);
    assert!(seen["last_status"].is_string(), "{seen}");
    let (status, list) = s.get(&admin("shop", "/schedules"), &s.owner_token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let (status, _) = s.delete(&path, &s.owner_token).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = s.delete(&path, &s.owner_token).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "idempotent");
    let (status, _) = s.get(&path, &s.owner_token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let list = wait_jobs(&s, "shop", "script=tick", "all succeeded", |l| {
        l.iter().all(|j| j["status"] == "succeeded")
    })
    .await;
    assert!((2..=5).contains(&list.len()), "{list:#?}");
    let mut ticks = Vec::new();
    for j in &list {
        assert_eq!(j["kind"], "cron", "{j}");
        assert_eq!(j["schedule"], "every-second", "{j}");
        let at = time(&j["scheduled_at"]);
        assert_eq!(at.nanosecond(), 0, "a whole second: {j}");
        ticks.push(at);
        // What the script saw.
        let one = job(&s, "shop", j["id"].as_str().unwrap()).await;
        let event = result_json(&one);
        assert_eq!(event["kind"], "cron", "{event}");
        assert_eq!(event["schedule"], "every-second");
        assert_eq!(event["payload"], json!({ "a": 1 }));
        assert_eq!(event["job_id"], j["id"]);
        assert_eq!(event["attempt"], 1);
        assert_eq!(time(&event["scheduled_at"]), at);
        assert!(
            event["scheduled_at"].as_str().unwrap().ends_with('Z'),
            "UTC: {event}"
        );
    }
    ticks.sort();
    for pair in ticks.windows(2) {
        assert_eq!(
            (pair[1] - pair[0]).num_milliseconds(),
            1000,
            "one job per tick: {ticks:?}"
        );
    }
    // Deleted: no more ticks.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(jobs(&s, "shop", "script=tick").await.len(), list.len());
}

async fn put_schedule(s: &TestServer, name: &str, body: Value) -> (StatusCode, Value) {
    let path = admin("shop", &format!("/schedules/{name}"));
    s.call(Method::PUT, &path, Some(&s.owner_token), Some(body))
        .await
}

async fn schedules_take_a_zone_and_refuse_bad_expressions(s: TestServer) {
    s.create_app("shop").await;
    deployed(s.deploy("shop", "tick", "request.event").await);
    let tokyo = json!({ "script": "tick", "cron": "0 9 * * *", "timezone": "Asia/Tokyo" });
    let (status, body) = put_schedule(&s, "tokyo", tokyo.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["timezone"], "Asia/Tokyo");
    let next = time(&body["next_run_at"]).with_timezone(&chrono::Utc);
    assert_eq!(
        (next.hour(), next.minute(), next.second()),
        (0, 0, 0),
        "09:00 in Tokyo is 00:00 UTC: {next}"
    );
    assert!(next > chrono::Utc::now(), "{next}");
    assert_eq!(body["last_run_at"], Value::Null);
    let (status, body) = put_schedule(&s, "tokyo", tokyo).await;
    assert_eq!(status, StatusCode::OK, "replaced: {body}");
    let (status, body) = put_schedule(
        &s,
        "tokyo",
        json!({ "script": "tick", "cron": "0 9 * * *", "timezone": "Asia/Tokyo", "enabled": false }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["enabled"], false);

    for (cron, zone) in [
        ("not a cron", "UTC"),
        ("* * *", "UTC"),
        ("61 * * * *", "UTC"),
        ("0 0 30 2 *", "UTC"),
        ("0 9 * * *", "Mars/Olympus"),
    ] {
        let (status, body) = put_schedule(
            &s,
            "bad",
            json!({ "script": "tick", "cron": cron, "timezone": zone }),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{cron} in {zone}: {body}"
        );
        assert!(is_error(&body), "{body}");
    }
    let (status, body) =
        put_schedule(&s, "bad", json!({ "script": "ghost", "cron": "0 9 * * *" })).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["error"].as_str().unwrap().contains("ghost"), "{body}");
    // Nothing of the refused ones was stored.
    let (status, list) = s.get(&admin("shop", "/schedules"), &s.owner_token).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tokyo"]);
    let (status, _) = s
        .get(&admin("shop", "/schedules/bad"), &s.owner_token)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn emit_fires_subscribers_only_from_successful_runs(s: TestServer) {
    s.create_app("shop").await;
    deployed(s.deploy("shop", "consumer", "request.event").await);
    deployed(
        s.deploy("shop", "producer", "emit(\"order.paid\", #{n: 1}); \"ok\"")
            .await,
    );
    deployed(
        s.deploy("shop", "failer", "emit(\"order.paid\", 1); throw \"x\"")
            .await,
    );
    let sub = admin("shop", "/subscriptions/on-paid");
    let body = json!({ "topic": "order.paid", "script": "consumer" });
    let (status, created) = s
        .call(Method::PUT, &sub, Some(&s.owner_token), Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], "on-paid");
    assert_eq!(created["topic"], "order.paid");
    assert_eq!(created["script"], "consumer");
    assert_eq!(created["max_attempts"], 3);
    time(&created["created_at"]);
    time(&created["updated_at"]);
    let (status, _) = s
        .call(Method::PUT, &sub, Some(&s.owner_token), Some(body))
        .await;
    assert_eq!(status, StatusCode::OK, "replaced");
    let (status, list) = s
        .get(&admin("shop", "/subscriptions"), &s.owner_token)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");

    // A /run's events are stored before its answer.
    let (status, _, body) = s.run(Method::POST, "/run/shop/producer", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    let list = jobs(&s, "shop", "script=consumer").await;
    assert_eq!(list.len(), 1, "{list:#?}");
    let id = list[0]["id"].as_str().unwrap().to_owned();
    let done = wait_status(&s, "shop", &id, "succeeded").await;
    assert_eq!(done["kind"], "event");
    assert_eq!(done["topic"], "order.paid");
    assert_eq!(done["payload"], json!({ "n": 1 }));
    assert!(done["event_id"].is_string(), "{done:#}");
    assert_eq!(done["request"], Value::Null);
    let event = result_json(&done);
    assert_eq!(event["kind"], "event");
    assert_eq!(event["topic"], "order.paid");
    assert_eq!(event["payload"], json!({ "n": 1 }));
    assert_eq!(event["event_id"], done["event_id"]);
    assert_eq!(event["job_id"], json!(id));
    assert_eq!(event["attempt"], 1);

    // A failed run's events never count.
    let (status, _, _) = s.run(Method::POST, "/run/shop/failer", None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(jobs(&s, "shop", "script=consumer").await.len(), 1);

    // The same through /async: the job's events are stored with its success.
    let producer = enqueue(&s, "shop/producer", &[]).await;
    wait_status(&s, "shop", &producer, "succeeded").await;
    let list = wait_jobs(&s, "shop", "script=consumer", "two succeeded", |l| {
        l.len() == 2 && l.iter().all(|j| j["status"] == "succeeded")
    })
    .await;
    assert_eq!(list[0]["payload"], json!({ "n": 1 }));
    let failer = enqueue(&s, "shop/failer", &[("picloud-max-attempts", "2")]).await;
    wait_status(&s, "shop", &failer, "dead").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(jobs(&s, "shop", "script=consumer").await.len(), 2);

    // Unsubscribed: no more jobs.
    let (status, _) = s.delete(&sub, &s.owner_token).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = s.delete(&sub, &s.owner_token).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "idempotent");
    let (_, list) = s
        .get(&admin("shop", "/subscriptions"), &s.owner_token)
        .await;
    assert_eq!(list, json!([]));
    let (status, _, _) = s.run(Method::POST, "/run/shop/producer", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(jobs(&s, "shop", "script=consumer").await.len(), 2);
}

async fn viewers_read_and_editors_write(s: TestServer) {
    s.create_app("shop").await;
    let (viewer, viewer_token) = s.user("vera", "member").await;
    let (editor, editor_token) = s.user("ed", "member").await;
    s.grant("shop", &viewer, "viewer").await;
    s.grant("shop", &editor, "editor").await;
    deployed(s.deploy("shop", "ok", "\"ok\"").await);
    let id = enqueue(&s, "shop/ok", &[]).await;
    wait_status(&s, "shop", &id, "succeeded").await;

    // A viewer reads.
    for path in [
        "/jobs".to_owned(),
        format!("/jobs/{id}"),
        "/schedules".to_owned(),
        "/subscriptions".to_owned(),
    ] {
        let (status, body) = s.get(&admin("shop", &path), &viewer_token).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    // No token: 401.
    let (status, _) = s
        .call(Method::GET, &admin("shop", "/jobs"), None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A viewer may not write.
    let schedule = admin("shop", "/schedules/nightly");
    let schedule_body = json!({ "script": "ok", "cron": "0 3 * * *" });
    let subscription = admin("shop", "/subscriptions/on-paid");
    let subscription_body = json!({ "topic": "order.paid", "script": "ok" });
    let retry = admin("shop", &format!("/jobs/{id}/retry"));
    let cancel = admin("shop", &format!("/jobs/{id}/cancel"));
    let writes = [
        (Method::PUT, &schedule, Some(schedule_body.clone())),
        (Method::PUT, &subscription, Some(subscription_body.clone())),
        (Method::POST, &retry, Some(json!({}))),
        (Method::POST, &cancel, Some(json!({}))),
    ];
    for (method, path, body) in writes {
        let (status, reply) = s
            .call(method.clone(), path, Some(&viewer_token), body)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {reply}");
    }
    for path in [&schedule, &subscription] {
        let (status, _) = s.delete(path, &viewer_token).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "DELETE {path}");
    }
    let (status, _) = s
        .delete(&admin("shop", &format!("/jobs/{id}")), &viewer_token)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, list) = s.get(&admin("shop", "/schedules"), &viewer_token).await;
    assert_eq!(list, json!([]), "nothing was written");

    // An editor may.
    let (status, body) = s
        .call(
            Method::PUT,
            &schedule,
            Some(&editor_token),
            Some(schedule_body),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = s
        .call(
            Method::PUT,
            &subscription,
            Some(&editor_token),
            Some(subscription_body),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = s.post(&retry, &editor_token, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    wait_job(&s, "shop", &id, "succeeded again", |j| {
        j["status"] == "succeeded" && j["attempt"] == 2
    })
    .await;
    let (status, body) = s.post(&cancel, &editor_token, json!({})).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a finished job is not cancelled: {body}"
    );
    for path in [&schedule, &subscription] {
        let (status, _) = s.delete(path, &editor_token).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "DELETE {path}");
    }
    let (status, _) = s
        .delete(&admin("shop", &format!("/jobs/{id}")), &editor_token)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // A private script's /async needs a token of someone who may view it.
    let (status, body) = s
        .patch(
            &admin("shop", "/scripts/ok"),
            &s.owner_token,
            json!({ "visibility": "private" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, stranger_token) = s.user("stan", "member").await;
    let reply = send_async(&s, "shop/ok", &[], None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    let stranger = format!("Bearer {stranger_token}");
    let reply = send_async(&s, "shop/ok", &[("authorization", &stranger)], None).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    let viewer = format!("Bearer {viewer_token}");
    let id = enqueue(&s, "shop/ok", &[("authorization", &viewer)]).await;
    wait_status(&s, "shop", &id, "succeeded").await;
}

async fn bad_input_is_refused(s: TestServer) {
    s.create_app("shop").await;
    deployed(s.deploy("shop", "ok", "\"ok\"").await);
    // Malformed JSON: 400, a JSON error.
    let resp = s
        .client
        .put(s.url(&admin("shop", "/schedules/nightly")))
        .bearer_auth(&s.owner_token)
        .header("content-type", "application/json")
        .body(r#"{"script": "#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert!(is_error(&body), "{body}");
    // A body over 1 MiB: 413.
    let reply = send_async(&s, "shop/ok", &[], Some("x".repeat(1024 * 1024 + 1))).await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.body
    );
    // Unknown script or app: 404 at once.
    for path in ["shop/ghost", "nowhere/ok"] {
        let reply = send_async(&s, path, &[], None).await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            reply.body
        );
        assert!(is_error(&reply.body), "{}", reply.body);
    }
    // A key of 10 KB, or a bad attempt count: 422.
    let long_key = "k".repeat(10 * 1024);
    let reply = send_async(&s, "shop/ok", &[("idempotency-key", &long_key)], None).await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    assert!(is_error(&reply.body), "{}", reply.body);
    for bad in ["0", "21", "many"] {
        let reply = send_async(&s, "shop/ok", &[("picloud-max-attempts", bad)], None).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            reply.body
        );
    }
    // A bad topic on a subscription: 422.
    let (status, body) = s
        .call(
            Method::PUT,
            &admin("shop", "/subscriptions/bad"),
            Some(&s.owner_token),
            Some(json!({ "topic": "Not A Topic!", "script": "ok" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(jobs(&s, "shop", "").await.len(), 0, "nothing was queued");

    // A running job: retry, cancel and delete are 409.
    let (status, body) = s
        .patch(
            &admin("shop", "/limits"),
            &s.owner_token,
            json!({ "wall_clock_ms": 1500, "max_operations": 5_000_000_000_u64 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    deployed(s.deploy("shop", "spin", "loop {}").await);
    let spin = enqueue(&s, "shop/spin", &[("picloud-max-attempts", "1")]).await;
    wait_status(&s, "shop", &spin, "running").await;
    for action in ["retry", "cancel"] {
        let (status, body) = s
            .post(
                &admin("shop", &format!("/jobs/{spin}/{action}")),
                &s.owner_token,
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{action} running: {body}");
        assert!(is_error(&body), "{body}");
    }
    let (status, _) = s
        .delete(&admin("shop", &format!("/jobs/{spin}")), &s.owner_token)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "delete running");
    let dead = wait_status(&s, "shop", &spin, "dead").await;
    assert_eq!(dead["attempts"].as_array().unwrap().len(), 1);

    // A queued job (a failed one waits a minute for its retry): retry is
    // 409, cancel is 200, then cancel again is 409.
    deployed(s.deploy("shop", "fail", "throw \"x\"").await);
    let waiting = enqueue(&s, "shop/fail", &[("picloud-max-attempts", "3")]).await;
    let queued = wait_job(&s, "shop", &waiting, "queued after one attempt", |j| {
        j["status"] == "queued" && j["attempts"].as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
    assert!(time(&queued["run_at"]) > time(&queued["attempts"][0]["at"]));
    let retry = admin("shop", &format!("/jobs/{waiting}/retry"));
    let cancel = admin("shop", &format!("/jobs/{waiting}/cancel"));
    let (status, body) = s.post(&retry, &s.owner_token, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "retry queued: {body}");
    let (status, _) = s
        .delete(&admin("shop", &format!("/jobs/{waiting}")), &s.owner_token)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "delete queued");
    let (status, body) = s.post(&cancel, &s.owner_token, json!({})).await;
    assert_eq!(status, StatusCode::OK, "cancel queued: {body}");
    assert_eq!(body["status"], "cancelled");
    assert_eq!(job(&s, "shop", &waiting).await["status"], "cancelled");
    let (status, body) = s.post(&cancel, &s.owner_token, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "cancel cancelled: {body}");
    // A cancelled job can be replayed, and deleted once finished.
    let (status, body) = s.post(&retry, &s.owner_token, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    wait_job(&s, "shop", &waiting, "queued after two attempts", |j| {
        j["status"] == "queued" && j["attempts"].as_array().is_some_and(|a| a.len() == 2)
    })
    .await;
    let (status, _) = s.post(&cancel, &s.owner_token, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s
        .delete(&admin("shop", &format!("/jobs/{waiting}")), &s.owner_token)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // An emit flood: the 101st emit is a script error, and no event of the
    // run is stored. 100 are fine.
    deployed(s.deploy("shop", "sink", "\"ok\"").await);
    let (status, body) = s
        .call(
            Method::PUT,
            &admin("shop", "/subscriptions/flood"),
            Some(&s.owner_token),
            Some(json!({ "topic": "flood", "script": "sink" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    deployed(
        s.deploy(
            "shop",
            "flood",
            "for i in 0..101 { emit(\"flood\", i); } \"done\"",
        )
        .await,
    );
    let (status, _, body) = s.run(Method::POST, "/run/shop/flood", None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert!(
        error["error"].as_str().unwrap().starts_with("script error"),
        "{error}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(jobs(&s, "shop", "script=sink").await.len(), 0);
    deployed(
        s.deploy(
            "shop",
            "hundred",
            "for i in 0..100 { emit(\"flood\", i); } \"done\"",
        )
        .await,
    );
    let (status, _, body) = s.run(Method::POST, "/run/shop/hundred", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "done"));
    assert_eq!(jobs(&s, "shop", "script=sink&limit=1000").await.len(), 100);
}

async fn a_full_queue_is_429_and_stores_nothing(s: TestServer) {
    s.create_app("shop").await;
    let limits = admin("shop", "/limits");
    let (_, before) = s.get(&limits, &s.owner_token).await;
    assert_eq!(before["max_queued_jobs"], 10000, "the default: {before}");
    let (status, body) = s
        .patch(&limits, &s.owner_token, json!({ "max_queued_jobs": 2 }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["max_queued_jobs"], 2);
    assert_eq!(
        body["wall_clock_ms"], before["wall_clock_ms"],
        "PATCH keeps the rest"
    );
    deployed(s.deploy("shop", "fail", "throw \"x\"").await);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let id = enqueue(&s, "shop/fail", &[("picloud-max-attempts", "3")]).await;
        // It fails once, then sits queued for a minute.
        wait_job(&s, "shop", &id, "queued after one attempt", |j| {
            j["status"] == "queued" && j["attempts"].as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
        ids.push(id);
    }
    let reply = send_async(&s, "shop/fail", &[], None).await;
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        reply.body
    );
    assert!(is_error(&reply.body), "{}", reply.body);
    let retry_after = reply
        .headers
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap();
    assert!(retry_after.parse::<u64>().is_ok(), "{retry_after}");
    assert_eq!(jobs(&s, "shop", "").await.len(), 2, "nothing was stored");
    // A cancelled job frees its place.
    let (status, _) = s
        .post(
            &admin("shop", &format!("/jobs/{}/cancel", ids[0])),
            &s.owner_token,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    enqueue(&s, "shop/fail", &[]).await;
    assert_eq!(jobs(&s, "shop", "").await.len(), 3);
}

/// Runs each `scenario: configure` against the memory store and against
/// PostgreSQL, on a server configured by `configure`.
macro_rules! on_both_stores_configured {
    ($($name:ident: $configure:ident),+ $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let s = super::TestServer::configured(false, super::$configure)
                        .await
                        .unwrap();
                    super::$name(s).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    if let Some(s) = super::TestServer::configured(true, super::$configure).await {
                        super::$name(s).await;
                    }
                }
            )+
        }
    };
}

on_both_stores_configured!(
    an_async_call_is_202_then_succeeds_with_its_request_and_result: fast_retries,
    the_same_idempotency_key_gives_one_job: fast_retries,
    a_failing_job_is_dead_after_max_attempts_with_growing_backoff: measurable_retries,
    a_dead_job_replayed_after_a_fix_runs_the_new_version: fast_retries,
    a_5xx_answer_is_a_failed_attempt: fast_retries,
    a_per_second_schedule_fires_once_per_tick: fast_retries,
    schedules_take_a_zone_and_refuse_bad_expressions: fast_retries,
    emit_fires_subscribers_only_from_successful_runs: fast_retries,
    viewers_read_and_editors_write: fast_retries,
    bad_input_is_refused: slow_retries,
    a_full_queue_is_429_and_stores_nothing: slow_retries,
);
