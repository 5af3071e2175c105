//! Three `picloud` nodes on one PostgreSQL database behind Debian's Caddy
//! (2.6.2), configured by the project's own `deploy/Caddyfile`, the file
//! itself, with its ports and certificates set through the environment
//! variables it reads. `/run` keeps answering 200 through Caddy while a
//! node is killed with SIGKILL mid-load; the requests were spread over the
//! nodes; and a custom domain still gets its certificate on demand through
//! the Caddyfile's loopback `ask` site while that node is gone.
//!
//! Caddy is found on the PATH and the database through `DATABASE_URL`.
//! Missing either, the test says so loudly and passes, except under
//! `CI=true`, where it fails. Everything stays on 127.0.0.1: the nodes,
//! Caddy's listeners (`default_bind`), and the certificates, which come
//! from Caddy's internal CA (`local_certs`), so no CA is ever contacted.

use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The app, its script, and the custom domain the test registers.
const APP: &str = "shop";
const SCRIPT: &str = "hello";
const DOMAIN: &str = "shop.example.test";

/// The `caddy` binary, or `None` (after saying so) when it is missing
/// outside CI.
fn caddy() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("caddy"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let message = "caddy is not installed (Debian: apt-get install caddy); \
                       the Caddy cluster test did not run";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
        eprintln!("SKIPPED: {message}");
    }
    found
}

/// A free TCP port on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `picloud serve` process, killed on drop (also when the test fails).
struct Node {
    child: Child,
    /// `127.0.0.1:port`, from its ready line.
    addr: String,
    /// Every line of its standard output (the log), still growing.
    lines: Arc<Mutex<Vec<String>>>,
}

impl Node {
    /// Starts a node on a port of its own choosing, on `database_url`, and
    /// waits for its ready line. It logs every request it serves
    /// (`tower_http=debug`), which is how the test counts them.
    async fn start(database_url: &str, bootstrap_token: &str) -> Node {
        let mut child = Command::new(env!("CARGO_BIN_EXE_picloud"))
            .arg("serve")
            .env("PICLOUD_LISTEN", "127.0.0.1:0")
            .env("DATABASE_URL", database_url)
            .env("PICLOUD_BOOTSTRAP_TOKEN", bootstrap_token)
            // The same master key on every node, as deploy/README.md says.
            .env("PICLOUD_MASTER_KEY", "5a".repeat(32))
            .env("RUST_LOG", "info,tower_http=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the binary starts");
        let mut reader = BufReader::new(child.stdout.take().unwrap()).lines();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let addr = loop {
            let line = tokio::time::timeout_at(deadline, reader.next_line())
                .await
                .expect("the node became ready in time")
                .expect("stdout readable")
                .expect("the node did not exit");
            let ready = line
                .split("picloud ready on http://")
                .nth(1)
                .map(|rest| rest.split_whitespace().next().unwrap().to_owned());
            lines.lock().unwrap().push(line);
            if let Some(addr) = ready {
                break addr;
            }
        };
        // Keep draining stdout so the node never blocks on a full pipe.
        let more = lines.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = reader.next_line().await {
                more.lock().unwrap().push(line);
            }
        });
        Node { child, addr, lines }
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many `/run` requests for the script this node has answered.
    fn runs_served(&self) -> usize {
        let path = format!("uri=/run/{APP}/{SCRIPT}");
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("finished processing request") && l.contains(&path))
            .count()
    }

    /// Waits (up to 30 s) until `/readyz` answers 200: the node reaches
    /// the database and has compiled its live scripts.
    async fn until_ready(&self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = client
                .get(format!("{}/readyz", self.base()))
                .send()
                .await
                .map(|r| r.status().as_u16());
            if matches!(status, Ok(200)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} never became ready ({status:?}):\n{}",
                self.addr,
                self.lines.lock().unwrap().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: no graceful shutdown, connections cut mid-request.
    async fn kill(&mut self) {
        self.child.start_kill().expect("SIGKILL sent");
        self.child.wait().await.expect("the node is reaped");
    }
}

/// Caddy running on deploy/Caddyfile, killed on drop.
struct Caddy(std::process::Child);

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The ports Caddy listens on, all on 127.0.0.1.
struct CaddyPorts {
    /// The instance's own site, plain HTTP (`PICLOUD_SITE`).
    site: u16,
    /// The redirect listener Caddy adds for its HTTPS sites.
    http: u16,
    /// The custom domains (on-demand TLS).
    https: u16,
    /// The loopback site Caddy's `ask` goes to (`PICLOUD_TLS_ASK_PORT`).
    ask: u16,
}

/// Starts Caddy on the project's deploy/Caddyfile, unchanged: the nodes,
/// the ports and the certificate issuer are given through the variables
/// the file reads.
fn start_caddy(caddy: &Path, dir: &Path, nodes: &str, ports: &CaddyPorts) -> Caddy {
    let options = [
        "admin off".to_owned(),
        "default_bind 127.0.0.1".to_owned(),
        // Certificates from Caddy's own CA, not installed anywhere: no
        // ACME, no connection to any certificate authority.
        "local_certs".to_owned(),
        "skip_install_trust".to_owned(),
        format!("http_port {}", ports.http),
        format!("https_port {}", ports.https),
        format!("storage file_system {}", dir.join("storage").display()),
        // Every proxy attempt in the log, the failed ones included.
        "debug".to_owned(),
    ]
    .join("\n\t");
    let log = std::fs::File::create(dir.join("caddy.log")).unwrap();
    let child = StdCommand::new(caddy)
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/Caddyfile"))
        .env("PICLOUD_SITE", format!("http://127.0.0.1:{}", ports.site))
        .env("PICLOUD_API_NODES", nodes)
        .env("PICLOUD_WORKER_NODES", nodes)
        .env("PICLOUD_TLS_ASK_PORT", ports.ask.to_string())
        .env("PICLOUD_CADDY_OPTIONS", options)
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("caddy starts");
    Caddy(child)
}

/// `curl` over HTTPS to `name` on 127.0.0.1:`port` (no DNS): its exit
/// code and what it printed.
fn curl(name: &str, port: u16, path: &str) -> (i32, String) {
    let out = StdCommand::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--insecure", // Caddy's internal CA is not in the system's store
            "--max-time",
            "10",
            "--resolve",
            &format!("{name}:{port}:127.0.0.1"),
            &format!("https://{name}:{port}{path}"),
        ])
        .output()
        .expect("curl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// One request's outcome, as a client of Caddy saw it.
struct Outcome {
    /// When the answer (or the failure) came back.
    at: Instant,
    /// `None` for a 200 with the script's answer; otherwise what came back.
    failure: Option<String>,
}

/// Sends `GET /run/shop/hello` through Caddy, one request after another,
/// until `stop`, and records every outcome.
async fn keep_running(url: String, stop: Arc<AtomicBool>, outcomes: Arc<Mutex<Vec<Outcome>>>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    while !stop.load(Ordering::Relaxed) {
        let failure = match client.get(&url).send().await {
            Ok(resp) => {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_else(|e| e.to_string());
                (status != 200 || body != "hi").then(|| format!("{status}: {body}"))
            }
            Err(e) => Some(format!("transport: {e}")),
        };
        outcomes.lock().unwrap().push(Outcome {
            at: Instant::now(),
            failure,
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_answers_200_through_caddy_while_a_node_is_killed() {
    let Some(caddy) = caddy() else { return };
    let Some(url) = picloud::store::postgres::testing::fresh_database_url().await else {
        return;
    };
    let client = {
        picloud_core::egress::install_crypto_provider();
        reqwest::Client::new()
    };
    let owner = format!("test_{}", uuid::Uuid::new_v4().simple());

    // Node 1 first: it migrates the fresh database and creates the owner.
    // The app, its script and its domain go in through it.
    let first = Node::start(&url, &owner).await;
    first.until_ready(&client).await;
    let api = |path: &str| format!("{}/api/v1/admin{path}", first.base());
    let created = client
        .post(api("/apps"))
        .bearer_auth(&owner)
        .json(&json!({ "slug": APP, "name": "Shop" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let deployed = client
        .put(api(&format!("/apps/{APP}/scripts/{SCRIPT}")))
        .bearer_auth(&owner)
        .body(r#""hi""#)
        .send()
        .await
        .unwrap();
    assert_eq!(deployed.status(), 201);
    let domain = client
        .post(api(&format!("/apps/{APP}/domains")))
        .bearer_auth(&owner)
        .json(&json!({ "hostname": DOMAIN }))
        .send()
        .await
        .unwrap();
    assert_eq!(domain.status(), 201);

    // Nodes 2 and 3 load the live script and the domain as they start.
    // (Starting them after the deploy keeps this test about Caddy: it does
    // not depend on how fast a running node learns of another's deploy.)
    let mut nodes = vec![first];
    for _ in 0..2 {
        nodes.push(Node::start(&url, &owner).await);
    }
    for node in &nodes {
        node.until_ready(&client).await;
    }

    let dir =
        std::env::temp_dir().join(format!("picloud-cluster-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let ports = CaddyPorts {
        site: free_port(),
        http: free_port(),
        https: free_port(),
        ask: free_port(),
    };
    let upstreams = nodes
        .iter()
        .map(|n| n.addr.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let _caddy = start_caddy(&caddy, &dir, &upstreams, &ports);
    let caddy_log = || std::fs::read_to_string(dir.join("caddy.log")).unwrap_or_default();

    // Wait until the script answers through Caddy.
    let run_url = format!("http://127.0.0.1:{}/run/{APP}/{SCRIPT}", ports.site);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = client.get(&run_url).send().await;
        if matches!(&answer, Ok(r) if r.status() == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "caddy never answered ({answer:?}):\n{}",
            caddy_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Four clients without pause; node 2 is killed after 2 s; the clients
    // go on for 5 s more.
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(keep_running(
                run_url.clone(),
                stop.clone(),
                outcomes.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before_kill: Vec<usize> = nodes.iter().map(Node::runs_served).collect();
    let victim = nodes[1].addr.clone();
    nodes[1].kill().await;
    let killed_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let after: Vec<usize> = nodes.iter().map(Node::runs_served).collect();

    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    let failures: Vec<&str> = outcomes
        .iter()
        .filter_map(|o| o.failure.as_deref())
        .collect();
    let answered_after_kill = outcomes.iter().filter(|o| o.at > killed_at).count();
    // Caddy's debug log has one "upstream roundtrip" line per attempt; the
    // failed attempts on the killed node are the ones Caddy tried again.
    let log = caddy_log();
    let retried: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("upstream roundtrip") && l.contains(&victim))
        .filter_map(|l| l.split("\"error\":").nth(1))
        .collect();
    eprintln!(
        "{} requests through Caddy ({answered_after_kill} after the kill), {} failed; \
         served per node before the kill {before_kill:?}, in all {after:?}; \
         {} attempt(s) on the killed node failed: {:?}",
        outcomes.len(),
        failures.len(),
        retried.len(),
        retried
    );

    assert!(
        failures.is_empty(),
        "{} of {} requests did not answer 200 (first: {:?})",
        failures.len(),
        outcomes.len(),
        failures.first()
    );
    assert!(
        !retried.is_empty(),
        "no attempt on the killed node failed, so nothing was retried \
         (Caddy's debug log has no failed \"upstream roundtrip\" to it)"
    );
    assert!(
        answered_after_kill >= 20,
        "only {answered_after_kill} requests answered after the kill"
    );
    assert!(
        before_kill.iter().all(|&n| n > 0),
        "every node served before the kill: {before_kill:?}"
    );
    assert!(
        after[0] > before_kill[0] && after[2] > before_kill[2],
        "the surviving nodes went on serving: before {before_kill:?}, after {after:?}"
    );

    // A custom domain, while node 2 is gone: Caddy's ask goes to the
    // Caddyfile's loopback site, which sends it to a live node; the
    // certificate is issued and the request reaches the app's script.
    let https = ports.https;
    let (code, text) = tokio::task::spawn_blocking(move || curl(DOMAIN, https, "/hello"))
        .await
        .unwrap();
    assert_eq!(code, 0, "curl: {text}\ncaddy: {}", caddy_log());
    assert_eq!(text, "hi");
    // An unregistered name: every node's ask says 404, no certificate.
    let (code, text) =
        tokio::task::spawn_blocking(move || curl("evil.example.test", https, "/hello"))
            .await
            .unwrap();
    assert_ne!(code, 0, "an unregistered name got an answer: {text}");

    let _ = std::fs::remove_dir_all(&dir);
}
