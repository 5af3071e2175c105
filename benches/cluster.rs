//! Cluster load (not criterion): three real `picloud` nodes on one fresh
//! PostgreSQL database against one of them alone, measured with `wrk` in the
//! same run.
//!
//! ```text
//! apt-get install wrk
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!   cargo bench --bench cluster                 # every request
//! cargo bench --bench cluster -- "GET app"      # only matching lines
//! ```
//!
//! The nodes are the release `picloud` binary that cargo builds for the
//! bench (`picloud serve --listen 127.0.0.1:PORT`, with `DATABASE_URL` and
//! `PICLOUD_BOOTSTRAP_TOKEN`). Node 1 starts first, and the app and its
//! trivial script are created through it; nodes 2 and 3 start after that,
//! so they compile the live script at start-up (a node already running
//! would not see the deploy until the change channel between nodes exists).
//! Each request is then measured twice per round:
//! - **one node**: one `wrk` against node 1;
//! - **three nodes**: one `wrk` per node, all at once, their req/s summed.
//!
//! Requests: `GET /run/shop/hello` (a trivial script, no token) and
//! `GET /api/v1/admin/apps/shop` with the owner's bearer token (a token
//! lookup and an app lookup on PostgreSQL, nothing cached).
//!
//! The load generators run on the same machine as the nodes and PostgreSQL,
//! and take CPU from them: on a 2-core machine three nodes cannot be faster
//! than one, and the ratio says how much the cluster costs rather than how
//! it scales. The output says so.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Seconds per `wrk` run.
const SECONDS: &str = "3";
/// Rounds of (one node, three nodes) per request; medians are reported.
const ROUNDS: usize = 3;
/// Connections of each `wrk`.
const CONNECTIONS: &str = "32";
/// The trivial script.
const HELLO: &str = r#"#{ hello: "world" }"#;

/// The requests measured: name, path, whether the owner's token is sent.
const REQUESTS: [(&str, &str, bool); 2] = [
    ("GET /run hello", "/run/shop/hello", false),
    ("GET app", "/api/v1/admin/apps/shop", true),
];

/// The command line's filter (the first argument that is not a flag).
fn selected(line: &str) -> bool {
    std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .is_none_or(|f| line.contains(&f))
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Requests per second reported by one `wrk` run against `url`.
fn wrk(url: &str, token: Option<&str>) -> f64 {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t1", "-c", CONNECTIONS, "-d", &format!("{SECONDS}s")]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = cmd.arg(url).output().expect("wrk runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("Non-2xx"),
        "wrk saw errors for {url}:\n{text}"
    );
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"))
}

/// `wrk` against every url at once; the req/s of each.
fn wrk_together(urls: &[String], token: Option<&str>) -> Vec<f64> {
    std::thread::scope(|s| {
        let runs: Vec<_> = urls
            .iter()
            .map(|url| s.spawn(move || wrk(url, token)))
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    })
}

/// A `picloud serve` process, killed when dropped.
struct Node {
    child: Child,
    base: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port on 127.0.0.1 (bound and released).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Starts the release binary on `database_url` and waits until its
/// `/readyz` answers 200.
async fn start_node(client: &reqwest::Client, database_url: &str, token: &str) -> Node {
    let listen = format!("127.0.0.1:{}", free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_picloud"))
        .args(["serve", "--listen", &listen])
        .env("DATABASE_URL", database_url)
        .env("PICLOUD_BOOTSTRAP_TOKEN", token)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("the picloud binary starts");
    let mut node = Node {
        child,
        base: format!("http://{listen}"),
    };
    for _ in 0..600 {
        let ready = client.get(format!("{}/readyz", node.base)).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            return node;
        }
        if let Ok(Some(status)) = node.child.try_wait() {
            panic!("node {} exited before it was ready: {status}", node.base);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("node {} not ready after 30 s", node.base);
}

/// Asserts that `GET {base}{path}` answers 200.
async fn expect_ok(client: &reqwest::Client, base: &str, path: &str, token: Option<&str>) {
    let mut req = client.get(format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200, "GET {base}{path}");
}

async fn run(database_url: String) {
    let token = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let client = {
        picloud_core::egress::install_crypto_provider();
        reqwest::Client::new()
    };
    let first = start_node(&client, &database_url, &token).await;
    let resp = client
        .post(format!("{}/api/v1/admin/apps", first.base))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "slug": "shop", "name": "Shop" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "create the app");
    let resp = client
        .put(format!(
            "{}/api/v1/admin/apps/shop/scripts/hello",
            first.base
        ))
        .bearer_auth(&token)
        .body(HELLO)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "deploy hello");
    // Started after the deploy: they compile the live script at start-up.
    let second = start_node(&client, &database_url, &token).await;
    let third = start_node(&client, &database_url, &token).await;
    let nodes = [first, second, third];
    for node in &nodes {
        for (_, path, auth) in REQUESTS {
            expect_ok(&client, &node.base, path, auth.then_some(token.as_str())).await;
        }
    }

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "cluster   {cores} cores shared by 3 nodes, PostgreSQL and the wrk load generators \
         (one wrk per node, {CONNECTIONS} connections each): the generators take CPU from \
         the nodes, so on this machine the ratio is the cluster's cost, not its scaling"
    );
    for (name, path, auth) in REQUESTS {
        if !selected(name) {
            continue;
        }
        let urls: Vec<String> = nodes.iter().map(|n| format!("{}{path}", n.base)).collect();
        let token = auth.then(|| token.clone());
        let (one, three, parts) = tokio::task::spawn_blocking(move || {
            let token = token.as_deref();
            wrk_together(&urls, token); // warm-up
            let (mut one, mut three) = (Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                one.push(wrk(&urls[0], token));
                three.push(wrk_together(&urls, token));
            }
            let sum = |parts: &Vec<f64>| parts.iter().sum::<f64>();
            three.sort_by(|a, b| sum(a).total_cmp(&sum(b)));
            let middle = three[three.len() / 2].clone();
            (median(one), sum(&middle), middle)
        })
        .await
        .unwrap();
        let parts = parts
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(" + ");
        println!(
            "cluster   {name:<16} one node {one:>7.0} req/s   three nodes {three:>7.0} req/s \
             ({parts})   ratio {:.2}x",
            three / one
        );
    }
    drop(nodes);
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and friends.
    }
    if Command::new("wrk").arg("--version").output().is_err() {
        println!("cluster: SKIPPED (wrk not installed: apt-get install wrk)");
        return;
    }
    if picloud::store::postgres::testing::database_url().is_none() {
        println!("cluster: SKIPPED (set DATABASE_URL; a cluster needs PostgreSQL)");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = picloud::store::postgres::testing::fresh_database_url()
            .await
            .expect("a fresh database");
        run(url).await;
    });
}
