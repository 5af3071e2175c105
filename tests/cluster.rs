//! Cluster mode with the real binary: three `picloud` processes on one
//! fresh PostgreSQL database, started at once.
//!
//! - they all come up, with one owner;
//! - a deploy, a redeploy, a rollback, a limits change, an env change and
//!   a custom domain made on one node are served by every node within a
//!   second;
//! - a revoked token fails on every node at once;
//! - a per-second schedule fires once per tick across the three;
//! - the cluster view lists three nodes;
//! - the change channel survives its connection being killed (a deploy
//!   while it is down is served once it is back);
//! - roles: an `api` node's logs stream shows the runs of the `worker`s;
//! - a node killed (SIGKILL) under 200 async jobs loses none of them.

mod support;

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// One `picloud serve` process.
struct Node {
    child: Child,
    base: String,
    /// Its id, from its ready line.
    id: String,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Node {
    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn kill(&mut self) {
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

async fn spawn(url: &str, token: &str, role: &str) -> Node {
    spawn_with(url, token, role, &[]).await
}

async fn spawn_with(url: &str, token: &str, role: &str, env: &[(&str, &str)]) -> Node {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_picloud"));
    cmd.envs(env.iter().copied());
    cmd.env("PICLOUD_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .env("DATABASE_URL", url)
        .env("PICLOUD_BOOTSTRAP_TOKEN", token)
        .env("PICLOUD_ROLE", role)
        .env("PICLOUD_RETRY_BASE_MS", "100")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("the binary starts");
    let mut reader = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut lines = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (base, id) = loop {
        let line = tokio::time::timeout_at(deadline, reader.next_line())
            .await
            .expect("the node became ready in time")
            .expect("stdout readable")
            .unwrap_or_else(|| panic!("the node exited:\n{}", lines.join("\n")));
        let line = support::strip_ansi(&line);
        lines.push(line.clone());
        if let Some(rest) = line.split("picloud ready on ").nth(1) {
            let base = rest.split_whitespace().next().unwrap().to_owned();
            let id = rest
                .split("node: ")
                .nth(1)
                .and_then(|r| r.split(')').next())
                .expect("the ready line names the node")
                .to_owned();
            break (base, id);
        }
    };
    let lines = Arc::new(Mutex::new(lines));
    let more = lines.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = reader.next_line().await {
            more.lock().unwrap().push(support::strip_ansi(&line));
        }
    });
    Node {
        child,
        base,
        id,
        lines,
    }
}

/// Three nodes started at the same moment.
async fn spawn_three(url: &str, token: &str) -> Vec<Node> {
    let (a, b, c) = tokio::join!(
        spawn(url, token, "all"),
        spawn(url, token, "all"),
        spawn(url, token, "all")
    );
    vec![a, b, c]
}

fn client() -> reqwest::Client {
    picloud_core::egress::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn ready(http: &reqwest::Client, node: &Node) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(node.url("/readyz")).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} not ready:\n{}",
            node.base,
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
    raw: Option<&str>,
) -> (u16, Value) {
    let mut req = http.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    if let Some(r) = raw {
        req = req.body(r.to_owned());
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn deploy(http: &reqwest::Client, node: &Node, token: &str, name: &str, source: &str) {
    let (status, body) = call(
        http,
        reqwest::Method::PUT,
        node.url(&format!("/api/v1/admin/apps/shop/scripts/{name}")),
        token,
        None,
        Some(source),
    )
    .await;
    assert!(
        status == 200 || status == 201,
        "deploy {name}: {status} {body}"
    );
}

async fn create_app(http: &reqwest::Client, node: &Node, token: &str) {
    let (status, body) = call(
        http,
        reqwest::Method::POST,
        node.url("/api/v1/admin/apps"),
        token,
        Some(json!({ "slug": "shop", "name": "Shop" })),
        None,
    )
    .await;
    assert_eq!(status, 201, "create app: {body}");
}

/// `GET /run/shop/{script}` on `node`: the status and the JSON body.
async fn run(http: &reqwest::Client, node: &Node, script: &str) -> (u16, Value) {
    let resp = http
        .get(node.url(&format!("/run/shop/{script}")))
        .send()
        .await
        .expect("run sent");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Waits until `check` holds for `/run/shop/{script}` on every node, and
/// asserts that it took at most a second from `since`.
async fn on_every_node_within_a_second(
    http: &reqwest::Client,
    nodes: &[Node],
    script: &str,
    what: &str,
    since: Instant,
    check: impl Fn(u16, &Value) -> bool,
) {
    for node in nodes {
        let mut last = (0, Value::Null);
        loop {
            let (status, body) = run(http, node, script).await;
            if check(status, &body) {
                break;
            }
            last = (status, body);
            assert!(
                since.elapsed() < Duration::from_secs(1),
                "{what}: {} still answers {} {} after {:?}",
                node.base,
                last.0,
                last.1,
                since.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = last;
    }
}

async fn pg(url: &str) -> sqlx::PgPool {
    sqlx::PgPool::connect(url).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_started_at_once_share_every_change() {
    let Some(url) = picloud::store::postgres::testing::empty_database_url().await else {
        return;
    };
    let token = support::random_token();
    let http = client();
    let nodes = spawn_three(&url, &token).await;
    for node in &nodes {
        ready(&http, node).await;
    }
    let db = pg(&url).await;
    let owners: i64 =
        sqlx::query_scalar("SELECT count(*) FROM admin_users WHERE instance_role = 'owner'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(owners, 1, "exactly one bootstrap owner");
    // The bootstrap token works on every node.
    for node in &nodes {
        let (status, _) = call(
            &http,
            reqwest::Method::GET,
            node.url("/api/v1/admin/apps"),
            &token,
            None,
            None,
        )
        .await;
        assert_eq!(status, 200, "{}:\n{}", node.base, node.log());
    }

    // Deploy, redeploy, rollback: made on node 0, served everywhere.
    let a = &nodes[0];
    create_app(&http, a, &token).await;
    let since = Instant::now();
    deploy(&http, a, &token, "hello", "#{ v: 1 }").await;
    on_every_node_within_a_second(&http, &nodes, "hello", "deploy", since, |s, b| {
        s == 200 && b["v"] == 1
    })
    .await;
    let since = Instant::now();
    deploy(&http, a, &token, "hello", "#{ v: 2 }").await;
    on_every_node_within_a_second(&http, &nodes, "hello", "redeploy", since, |s, b| {
        s == 200 && b["v"] == 2
    })
    .await;
    let since = Instant::now();
    let (status, body) = call(
        &http,
        reqwest::Method::POST,
        a.url("/api/v1/admin/apps/shop/scripts/hello/rollback"),
        &token,
        Some(json!({ "version": 1 })),
        None,
    )
    .await;
    assert_eq!(status, 200, "rollback: {body}");
    on_every_node_within_a_second(&http, &nodes, "hello", "rollback", since, |s, b| {
        s == 200 && b["v"] == 1
    })
    .await;

    // A limits change: a loop that fits the defaults, then does not.
    deploy(
        &http,
        a,
        &token,
        "busy",
        "let n = 0; for i in 0..2000 { n += i } #{ n: n }",
    )
    .await;
    on_every_node_within_a_second(&http, &nodes, "busy", "deploy", Instant::now(), |s, _| {
        s == 200
    })
    .await;
    let since = Instant::now();
    let (status, body) = call(
        &http,
        reqwest::Method::PATCH,
        a.url("/api/v1/admin/apps/shop/limits"),
        &token,
        Some(json!({ "max_operations": 500 })),
        None,
    )
    .await;
    assert_eq!(status, 200, "limits: {body}");
    on_every_node_within_a_second(&http, &nodes, "busy", "limits", since, |s, _| s != 200).await;

    // An env change and a custom domain, made on node 0, on every node.
    deploy(&http, a, &token, "greet", "#{ greeting: env.GREETING }").await;
    on_every_node_within_a_second(&http, &nodes, "greet", "deploy", Instant::now(), |s, _| {
        s == 200
    })
    .await;
    let since = Instant::now();
    let (status, body) = call(
        &http,
        reqwest::Method::PUT,
        a.url("/api/v1/admin/apps/shop/env/GREETING"),
        &token,
        Some(json!({ "value": "hej" })),
        None,
    )
    .await;
    assert!(status == 200 || status == 201, "env: {body}");
    on_every_node_within_a_second(&http, &nodes, "greet", "env", since, |s, b| {
        s == 200 && b["greeting"] == "hej"
    })
    .await;
    let since = Instant::now();
    let (status, body) = call(
        &http,
        reqwest::Method::POST,
        a.url("/api/v1/admin/apps/shop/domains"),
        &token,
        Some(json!({ "hostname": "shop.example.com" })),
        None,
    )
    .await;
    assert_eq!(status, 201, "domain: {body}");
    for node in &nodes {
        loop {
            let r = http
                .get(node.url("/hello"))
                .header("host", "shop.example.com")
                .send()
                .await
                .unwrap();
            if r.status() == 200 {
                break;
            }
            assert!(
                since.elapsed() < Duration::from_secs(1),
                "domain: {} still answers {}",
                node.base,
                r.status()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    // A revoked token fails on every node at once.
    let (status, created) = call(
        &http,
        reqwest::Method::POST,
        a.url("/api/v1/admin/tokens"),
        &token,
        Some(json!({ "name": "ci" })),
        None,
    )
    .await;
    assert_eq!(status, 201, "token: {created}");
    let second = created["token"].as_str().unwrap().to_owned();
    let id = created["record"]["id"]
        .as_str()
        .or_else(|| created["id"].as_str())
        .unwrap()
        .to_owned();
    for node in &nodes {
        let (status, _) = call(
            &http,
            reqwest::Method::GET,
            node.url("/api/v1/admin/apps"),
            &second,
            None,
            None,
        )
        .await;
        assert_eq!(status, 200);
    }
    let (status, _) = call(
        &http,
        reqwest::Method::DELETE,
        nodes[1].url(&format!("/api/v1/admin/tokens/{id}")),
        &token,
        None,
        None,
    )
    .await;
    assert_eq!(status, 204);
    for node in &nodes {
        let (status, body) = call(
            &http,
            reqwest::Method::GET,
            node.url("/api/v1/admin/apps"),
            &second,
            None,
            None,
        )
        .await;
        assert_eq!(status, 401, "revoked on {}: {body}", node.base);
    }

    // A per-second schedule: one job per tick, across the three.
    deploy(&http, a, &token, "tick", "#{ ok: true }").await;
    let (status, body) = call(
        &http,
        reqwest::Method::PUT,
        nodes[2].url("/api/v1/admin/apps/shop/schedules/every-second"),
        &token,
        Some(json!({ "script": "tick", "cron": "* * * * * *" })),
        None,
    )
    .await;
    assert!(status == 200 || status == 201, "schedule: {body}");
    tokio::time::sleep(Duration::from_secs(11)).await;
    let (status, _) = call(
        &http,
        reqwest::Method::DELETE,
        a.url("/api/v1/admin/apps/shop/schedules/every-second"),
        &token,
        None,
        None,
    )
    .await;
    assert!(status == 204 || status == 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ticks: Vec<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
        "SELECT scheduled_at FROM jobs WHERE kind = 'cron' ORDER BY scheduled_at",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let distinct: HashSet<_> = ticks.iter().collect();
    assert_eq!(distinct.len(), ticks.len(), "a tick fired twice: {ticks:?}");
    assert!(ticks.len() >= 9, "about 10 ticks in 11 s: {ticks:?}");
    for w in ticks.windows(2) {
        assert_eq!(
            (w[1] - w[0]).num_seconds(),
            1,
            "a tick was missed between {} and {}",
            w[0],
            w[1]
        );
    }
    let succeeded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE kind = 'cron' AND status = 'succeeded'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(
        usize::try_from(succeeded).unwrap(),
        ticks.len(),
        "every tick ran"
    );

    // The cluster view lists the three, each alive.
    let (status, view) = call(
        &http,
        reqwest::Method::GET,
        nodes[1].url("/api/v1/admin/cluster"),
        &token,
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "{view}");
    let listed = view["nodes"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "{view}");
    let ids: HashSet<&str> = listed.iter().map(|n| n["id"].as_str().unwrap()).collect();
    for node in &nodes {
        assert!(ids.contains(node.id.as_str()), "{} in {view}", node.id);
    }
    assert!(
        listed
            .iter()
            .all(|n| n["gone"] == false && n["role"] == "all")
    );

    // The app deleted on one node is gone from every node.
    let since = Instant::now();
    let (status, _) = call(
        &http,
        reqwest::Method::DELETE,
        nodes[2].url("/api/v1/admin/apps/shop"),
        &token,
        None,
        None,
    )
    .await;
    assert_eq!(status, 204);
    on_every_node_within_a_second(&http, &nodes, "hello", "app delete", since, |s, _| s == 404)
        .await;
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_change_channel_was_cut_resynchronises() {
    let Some(url) = picloud::store::postgres::testing::empty_database_url().await else {
        return;
    };
    let token = support::random_token();
    let http = client();
    let a = spawn(&url, &token, "all").await;
    let b = spawn(&url, &token, "all").await;
    ready(&http, &a).await;
    ready(&http, &b).await;
    create_app(&http, &a, &token).await;
    deploy(&http, &a, &token, "hello", "#{ v: 1 }").await;
    let both = [a, b];
    on_every_node_within_a_second(&http, &both, "hello", "deploy", Instant::now(), |s, v| {
        s == 200 && v["v"] == 1
    })
    .await;
    let [a, b] = both;

    // Cut b's listener, and keep it from coming back: no new connection
    // to the database is allowed (the nodes' pools keep theirs).
    let admin = pg(&picloud::store::postgres::testing::database_url().unwrap()).await;
    let db_name = url.rsplit('/').next().unwrap().to_owned();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE \"{db_name}\" ALLOW_CONNECTIONS false"
    )))
    .execute(&admin)
    .await
    .unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND query LIKE 'LISTEN%'",
    )
    .bind(format!("picloud-{}", b.id))
    .fetch_all(&admin)
    .await
    .unwrap();
    assert_eq!(killed, vec![true], "b's listener was found and killed");

    // A deploy while b hears nothing: b keeps serving what it had.
    deploy(&http, &a, &token, "hello", "#{ v: 2 }").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(run(&http, &a, "hello").await.1["v"], 2);
    assert_eq!(
        run(&http, &b, "hello").await.1["v"],
        1,
        "b has no change channel now"
    );

    // Connections allowed again: b reconnects, re-reads everything, and
    // serves the new version.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE \"{db_name}\" ALLOW_CONNECTIONS true"
    )))
    .execute(&admin)
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = run(&http, &b, "hello").await;
        if status == 200 && body["v"] == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "b never resynchronised: {status} {body}\n{}",
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        b.log().contains("resynchronising"),
        "b says it resynchronised:\n{}",
        b.log()
    );
    admin.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_split_the_routes_and_the_api_node_streams_the_workers_runs() {
    // The memory store refuses any role but `all`, clearly.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_picloud"))
        .args(["serve", "--role", "worker", "--listen", "127.0.0.1:0"])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--role worker needs PostgreSQL"),
        "a clear refusal: {err}"
    );

    let Some(url) = picloud::store::postgres::testing::empty_database_url().await else {
        return;
    };
    let token = support::random_token();
    let http = client();
    let api = spawn(&url, &token, "api").await;
    let (w1, w2) = tokio::join!(spawn(&url, &token, "worker"), spawn(&url, &token, "worker"));
    for node in [&api, &w1, &w2] {
        ready(&http, node).await;
    }
    create_app(&http, &api, &token).await;
    deploy(&http, &api, &token, "hello", "print(\"hi\"); #{ v: 1 }").await;

    // Each role serves its routes only.
    let deadline = Instant::now() + Duration::from_secs(2);
    for w in [&w1, &w2] {
        loop {
            let (status, _) = run(&http, w, "hello").await;
            if status == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "the worker serves the script");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (status, _) = call(
            &http,
            reqwest::Method::GET,
            w.url("/api/v1/admin/apps"),
            &token,
            None,
            None,
        )
        .await;
        assert_eq!(status, 404, "a worker serves no admin API");
    }
    assert_eq!(
        run(&http, &api, "hello").await.0,
        404,
        "an api node runs no scripts"
    );

    // The api node's logs stream shows what both workers ran.
    let mut stream = http
        .get(api.url("/api/v1/admin/apps/shop/logs/stream"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (w, id) in [(&w1, "from-w1"), (&w2, "from-w2")] {
        let r = http
            .get(w.url("/run/shop/hello"))
            .header("x-request-id", id)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !(seen.contains("from-w1") && seen.contains("from-w2")) {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .unwrap_or_else(|_| panic!("the stream showed both workers' runs: {seen}"))
            .unwrap()
            .expect("the stream stays open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("hi"), "with their logs: {seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_loses_no_acknowledged_job() {
    let Some(url) = picloud::store::postgres::testing::empty_database_url().await else {
        return;
    };
    let token = support::random_token();
    let http = client();
    let mut nodes = spawn_three(&url, &token).await;
    for node in &nodes {
        ready(&http, node).await;
    }
    create_app(&http, &nodes[0], &token).await;
    // Some work per job, so that the killed node dies holding leases.
    deploy(
        &http,
        &nodes[0],
        &token,
        "work",
        "let n = 0; for i in 0..20000 { n += i } #{ n: n }",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut acknowledged = Vec::new();
    for i in 0..200 {
        if i == 100 {
            nodes[2].kill();
        }
        // Round robin over the nodes alive.
        let alive = if i < 100 { 3 } else { 2 };
        let node = &nodes[i % alive];
        let resp = http
            .post(node.url("/async/shop/work"))
            .json(&json!({ "i": i }))
            .send()
            .await;
        if let Ok(r) = resp
            && r.status() == 202
        {
            let body: Value = r.json().await.unwrap();
            let id = body["job_id"]
                .as_str()
                .or_else(|| body["id"].as_str())
                .unwrap_or_else(|| panic!("a job id in {body}"))
                .to_owned();
            acknowledged.push(id);
        }
    }
    assert!(
        acknowledged.len() >= 190,
        "the live nodes acknowledged their requests: {}",
        acknowledged.len()
    );

    // Every acknowledged job succeeds, the killed node's among them once
    // their leases run out.
    let db = pg(&url).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let rows: Vec<(uuid::Uuid, String)> = sqlx::query_as("SELECT id, status FROM jobs")
            .fetch_all(&db)
            .await
            .unwrap();
        let status: HashMap<String, String> = rows
            .into_iter()
            .map(|(id, s)| (id.to_string(), s))
            .collect();
        let done = acknowledged
            .iter()
            .filter(|id| status.get(*id).map(String::as_str) == Some("succeeded"))
            .count();
        if done == acknowledged.len() {
            break;
        }
        let missing: Vec<_> = acknowledged
            .iter()
            .filter(|id| !status.contains_key(*id))
            .collect();
        assert!(missing.is_empty(), "acknowledged jobs lost: {missing:?}");
        assert!(
            Instant::now() < deadline,
            "{done} of {} acknowledged jobs succeeded",
            acknowledged.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // No attempt recorded as succeeded twice, and no job succeeded twice.
    let (status, _) = call(
        &http,
        reqwest::Method::GET,
        nodes[0].url("/api/v1/admin/apps/shop"),
        &token,
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    for id in &acknowledged {
        let (status, job) = call(
            &http,
            reqwest::Method::GET,
            nodes[0].url(&format!("/api/v1/admin/apps/shop/jobs/{id}")),
            &token,
            None,
            None,
        )
        .await;
        assert_eq!(status, 200, "{job}");
        let attempts = job["attempts"].as_array().expect("attempts");
        let succeeded = attempts
            .iter()
            .filter(|a| a["status"] == "succeeded")
            .count();
        assert_eq!(succeeded, 1, "job {id} succeeded once: {job}");
        let numbers: HashSet<_> = attempts.iter().map(|a| a["attempt"].clone()).collect();
        assert_eq!(
            numbers.len(),
            attempts.len(),
            "no attempt recorded twice: {job}"
        );
    }
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_reports_not_ready_first_serves_what_is_in_flight_then_leaves() {
    let Some(url) = picloud::store::postgres::testing::empty_database_url().await else {
        return;
    };
    let token = support::random_token();
    let http = client();
    let stays = spawn(&url, &token, "all").await;
    let mut leaves = spawn_with(&url, &token, "all", &[("PICLOUD_DRAIN_DELAY_MS", "1500")]).await;
    ready(&http, &stays).await;
    ready(&http, &leaves).await;
    create_app(&http, &stays, &token).await;
    deploy(&http, &stays, &token, "hello", "#{ v: 1 }").await;
    let cluster = |node: &Node| {
        let (http, token, url) = (
            http.clone(),
            token.clone(),
            node.url("/api/v1/admin/cluster"),
        );
        async move {
            let (status, view) = call(&http, reqwest::Method::GET, url, &token, None, None).await;
            assert_eq!(status, 200, "{view}");
            view["nodes"].as_array().unwrap().len()
        }
    };
    assert_eq!(cluster(&stays).await, 2);

    let pid = leaves.child.id().unwrap();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Not ready at once, while it still serves.
    let resp = http.get(leaves.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("draining"),
        "{body}"
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let (status, body) = run(&http, &leaves, "hello").await;
        if status == 200 {
            assert_eq!(body["v"], 1);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "served while draining: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let exit = tokio::time::timeout(Duration::from_secs(15), leaves.child.wait())
        .await
        .expect("it stops in time")
        .unwrap();
    assert!(exit.success(), "exit status {exit}");
    // It left the cluster view.
    assert_eq!(cluster(&stays).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_memory_server_lists_itself_alive_and_only_owners_see_the_cluster() {
    let s = support::TestServer::memory().await;
    let (status, view) = s.get("/api/v1/admin/cluster", &s.owner_token).await;
    assert_eq!(status, 200, "{view}");
    let nodes = view["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{view}");
    assert_eq!(nodes[0]["role"], "all");
    assert_eq!(nodes[0]["gone"], false, "itself, alive: {view}");
    assert_eq!(view["queue"]["queued"], 0);
    // InstanceManageUsers: a plain member may not see it.
    s.create_user("mia", "member").await;
    let token = s.login("mia").await;
    let (status, body) = s.get("/api/v1/admin/cluster", &token).await;
    assert_eq!(status.as_u16(), 403, "{body}");
    s.shutdown().await;
}
