//! Memory is bounded, measured on the released shape of the server: the
//! `picloud` binary (jemalloc, metered) runs each script of the hardening
//! issue's finding 2 at least 100 times, from several clients at once, and
//! its RSS grows by less than 100 MB. Each run ends in a clear limit error
//! or a normal answer. The scripts once reached about 1 GB within one run,
//! or leaked 1 MB (and 290 MB) per request through reference cycles.
//!
//! The longer runs (1,000 times each, both stores) are `#[ignore]`d:
//! `cargo test --test memory_bound -- --ignored --nocapture` prints their
//! figures.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const TOKEN: &str = "memory-bound-test-token-0123456789abcdef";

struct Server {
    child: Child,
    base: String,
    /// Every line the server wrote, stdout and stderr.
    output: Arc<Mutex<Vec<String>>>,
    client: reqwest::Client,
}

async fn spawn(database_url: Option<&str>) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_picloud"));
    cmd.env("PICLOUD_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env("PICLOUD_BOOTSTRAP_TOKEN", TOKEN)
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(url) = database_url {
        cmd.env("DATABASE_URL", url);
    }
    let mut child = cmd.spawn().expect("the binary starts");
    let output = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let sink = Arc::clone(&output);
    tokio::spawn(async move {
        let mut stderr = stderr;
        while let Ok(Some(line)) = stderr.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let base = loop {
        let line = tokio::time::timeout_at(deadline, stdout.next_line())
            .await
            .expect("ready in time")
            .expect("stdout readable")
            .expect("the server did not exit");
        output.lock().unwrap().push(line.clone());
        if let Some(rest) = line.split("picloud ready on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let sink = Arc::clone(&output);
    tokio::spawn(async move {
        while let Ok(Some(line)) = stdout.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    let server = Server {
        child,
        base,
        output,
        client: {
            picloud_core::egress::install_crypto_provider();
            reqwest::Client::new()
        },
    };
    for _ in 0..200 {
        let ready = server.client.get(server.url("/readyz")).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the binary did not become ready");
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The resident set now.
    fn rss_mb(&self) -> f64 {
        self.status_mb("VmRSS:")
    }

    /// The resident set's high-water mark: catches a peak between samples.
    fn peak_rss_mb(&self) -> f64 {
        self.status_mb("VmHWM:")
    }

    fn status_mb(&self, field: &str) -> f64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("a memory figure in /proc");
        kb / 1024.0
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> u16 {
        let mut req = self
            .client
            .request(method, self.url(&format!("/api/v1/admin{path}")))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap().status().as_u16()
    }

    async fn deploy(&self, name: &str, source: &str) -> u16 {
        self.deploy_to("mem", name, source).await
    }

    async fn deploy_to(&self, app: &str, name: &str, source: &str) -> u16 {
        self.client
            .put(self.url(&format!("/api/v1/admin/apps/{app}/scripts/{name}")))
            .bearer_auth(TOKEN)
            .body(source.to_owned())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Runs `/run/mem/{name}` `times` times from 4 clients; every answer is
    /// a normal one or a JSON error naming a limit.
    async fn hammer(&self, name: &str, times: usize) {
        let per_client = times.div_ceil(4);
        let mut clients = Vec::new();
        for c in 0..4 {
            let (client, url) = (
                self.client.clone(),
                self.url(&format!("/run/mem/{name}/{c}")),
            );
            clients.push(tokio::spawn(async move {
                for _ in 0..per_client {
                    let resp = client.get(&url).send().await.expect("the server answers");
                    let status = resp.status().as_u16();
                    let text = resp.text().await.unwrap();
                    if status >= 500 {
                        let body: Value = serde_json::from_str(&text)
                            .unwrap_or_else(|_| panic!("not JSON: {status} {text}"));
                        let limit = body["limit"].as_str().unwrap_or_default();
                        assert!(
                            !limit.is_empty()
                                || body["error"]
                                    .as_str()
                                    .is_some_and(|e| e.starts_with("script error")),
                            "not a clear limit or script error: {status} {body}"
                        );
                    }
                }
            }));
        }
        for c in clients {
            c.await.unwrap();
        }
    }
}

/// The original closure chains of finding 2: refused at deploy.
const CLOSURE_CHAINS: [&str; 2] = [
    "let s = \"y\"; let f = 0; let i = 0; loop { let g = [f, s + i]; f = || g; i += 1; }",
    "let s = \"y\"; let a = #{ big: s + request.path }; let f = || a; a.f = f; a.g = a; 1",
];

/// Finding 2's scripts (and the one that replaced `curry`'s loop, which
/// is refused at deploy now). `s` is a 512 KiB string. Their closures
/// (`f = || g`) named outer variables, which strict variables refuses at
/// deploy now (see [`CLOSURE_CHAINS`]): the same data is held in nested
/// arrays and maps instead.
fn finding_two() -> Vec<(&'static str, String)> {
    let big = "let s = \"y\"; for i in 0..19 { s += s; }";
    vec![
        (
            "chain",
            format!("{big} let f = 0; let i = 0; loop {{ f = [f, s + i]; i += 1; }}"),
        ),
        (
            "cycle",
            format!(
                "{big} let a = #{{ big: s + request.path }}; a.g = a; a.h = [a, a]; 1"
            ),
        ),
        (
            "chain-and-cycle",
            format!(
                "{big} let f = 0; for i in 0..300 {{ f = [f, s + i]; }} \
                 let a = #{{ f: f, big: s + request.path }}; a.me = a; 1"
            ),
        ),
        (
            "responses",
            format!("{big} let a = []; loop {{ a.push(response(200, s + a.len())); }}"),
        ),
        // One native call that multiplies its input (found by the second
        // attack: 11 GB of RSS from the first of these).
        (
            "replace",
            "let s = \"a\"; while s.len < 1000000 { s += s; } let t = \"a\"; while t.len < 4096 { t += t; } t.replace(\"a\", s)".into(),
        ),
        (
            "split",
            "let s = \"a\"; while s.len < 1000000 { s += s; } s.split(\"\").len()".into(),
        ),
        (
            "shared-print",
            "let s = \"y\"; while s.len < 1000000 { s += s; } let a = []; a.pad(9000, 0); for i in 0..9000 { a[i] = s; } a.to_string().len()".into(),
        ),
        (
            "native-loop",
            format!(
                "{big} let a = []; a.pad(2000, 1); a.map(|x| {{ let t = \"y\"; for i in 0..19 {{ t += t; }} t + x }}).len()"
            ),
        ),
    ]
}

async fn memory_stays_bounded(database_url: Option<&str>, times: usize) {
    let server = spawn(database_url).await;
    assert_eq!(
        server
            .admin(
                reqwest::Method::POST,
                "/apps",
                Some(json!({"slug": "mem", "name": "Mem"}))
            )
            .await,
        201
    );
    // A short wall clock, so that the loops end quickly, and 16 MiB of
    // memory per run: the bound is the per-run limit times the workers
    // running at once (4 here), so the default 64 MiB would allow 256 MB
    // in flight; every other limit is the default.
    assert_eq!(
        server
            .admin(
                reqwest::Method::PUT,
                "/apps/mem/limits",
                Some(json!({"wall_clock_ms": 100, "max_memory_bytes": 16 * 1024 * 1024}))
            )
            .await,
        200
    );
    assert_eq!(
        server
            .deploy(
                "curry",
                "let s = \"y\"; let f = Fn(\"x\"); loop { f = f.curry(s + 1); }"
            )
            .await,
        422,
        "curry is refused at deploy"
    );
    for source in CLOSURE_CHAINS {
        assert_eq!(server.deploy("closure", source).await, 422, "{source}");
    }
    let scripts = finding_two();
    for (name, source) in &scripts {
        assert_eq!(server.deploy(name, source).await, 201, "{name}");
    }
    // Warm up the allocator and the pool, then measure.
    server.hammer("cycle", 8).await;
    let before = server.rss_mb();
    let mut peak = before;
    for (name, _) in &scripts {
        server.hammer(name, times).await;
        let now = server.rss_mb();
        peak = peak.max(now);
        println!("after {times} runs of {name:<16} RSS {now:7.1} MB");
    }
    let after = server.rss_mb();
    peak = peak.max(server.peak_rss_mb());
    println!(
        "RSS before {before:.1} MB, peak {peak:.1} MB, after {after:.1} MB (growth {:.1} MB)",
        peak - before
    );
    assert!(
        peak - before < 100.0,
        "RSS grew by {:.1} MB (from {before:.1} to {peak:.1})",
        peak - before
    );
    // The server keeps serving, and nothing it logged says "panicked".
    assert_eq!(
        server
            .deploy(
                "sort",
                "let a = []; for i in 0..500 { a.push((i * 7919) % 101) } a.sort(|x, y| if (x + y) % 3 == 0 { -1 } else { 1 }); a.len()",
            )
            .await,
        201
    );
    for _ in 0..5 {
        let resp = server
            .client
            .get(server.url("/run/mem/sort"))
            .send()
            .await
            .unwrap();
        assert!(resp.status() == 200 || resp.status() == 500);
    }
    let health = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let output = server.output.lock().unwrap().clone();
    assert!(
        !output.iter().any(|l| l.contains("panicked")),
        "the server logged a panic: {:?}",
        output
            .iter()
            .filter(|l| l.contains("panicked"))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finding_two_scripts_run_100_times_leave_rss_bounded() {
    memory_stays_bounded(None, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a long run: 1,000 times each; reports its figures"]
async fn finding_two_scripts_run_1000_times_on_memory() {
    memory_stays_bounded(None, 1000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a long run: 1,000 times each on PostgreSQL; reports its figures"]
async fn finding_two_scripts_run_1000_times_on_postgres() {
    let Some(url) = picloud::store::postgres::testing::fresh_database_url().await else {
        return;
    };
    memory_stays_bounded(Some(&url), 1000).await;
}

/// Under the largest limits an app may set (64 MiB strings, 512 MiB of
/// memory per run), one `split("")` of a 64 MiB string once took 6.4 GB.
/// The result's size is checked before it is built now: the peak stays
/// within the run's memory limit, plus the strings the script builds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_largest_limits_bound_a_native_call_that_multiplies_its_input() {
    let server = spawn(None).await;
    let app = json!({"slug": "max", "name": "Max"});
    assert_eq!(
        server
            .admin(reqwest::Method::POST, "/apps", Some(app))
            .await,
        201
    );
    let limits = json!({
        "max_string_bytes": 64 * 1024 * 1024,
        "max_memory_bytes": 512 * 1024 * 1024,
        "max_array_len": 100_000,
    });
    assert_eq!(
        server
            .admin(reqwest::Method::PUT, "/apps/max/limits", Some(limits))
            .await,
        200
    );
    let big = "let s = \"a\"; while s.len < 64 * 1024 * 1024 { s += s; }";
    let scripts = [
        ("split", format!("{big} s.split(\"\").len()")),
        ("chars", format!("{big} s.to_chars().len()")),
        ("replace", format!("{big} let t = s.sub_string(0, 1024); t.replace(\"a\", s).len()")),
        (
            "print",
            "let s = \"\"; s.pad(64 * 1024 * 1024 - 16, \"\\x01\"); let t = \"\" + [s]; 1".to_owned(),
        ),
        (
            "to_json",
            "let s = \"\"; s.pad(64 * 1024 * 1024 - 16, \"\\x01\"); #{ a: s }.to_json().len()".to_owned(),
        ),
        (
            "json",
            "let s = \"[],\"; while s.len < 32 * 1024 * 1024 { s += s; } parse_json(\"[\" + s + \"[]]\").len()".to_owned(),
        ),
    ];
    for (name, source) in &scripts {
        assert_eq!(server.deploy_to("max", name, source).await, 201, "{name}");
    }
    let before = server.rss_mb();
    for (name, _) in &scripts {
        for _ in 0..3 {
            let resp = server
                .client
                .get(server.url(&format!("/run/max/{name}")))
                .send()
                .await
                .expect("the server answers");
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.expect("a JSON answer");
            assert_eq!(status, 500, "{name}: {body}");
            assert!(
                body["limit"].is_string(),
                "{name}: not a limit error: {body}"
            );
        }
        println!("{name:<8} peak RSS {:7.1} MB", server.peak_rss_mb());
    }
    let growth = server.peak_rss_mb() - before;
    println!("RSS before {before:.1} MB, peak growth {growth:.1} MB");
    assert!(growth < 1024.0, "the peak RSS grew by {growth:.1} MB");
}
