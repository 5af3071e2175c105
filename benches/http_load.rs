//! HTTP load harness (not criterion): `wrk` against PiCloud's API and against
//! bare axum routes that return the very same bytes, served by the same
//! process and runtime. Each request is compared with two baselines:
//! - **bare**: a plain axum handler, no middleware (the targets' baseline);
//! - **layered**: the same handler behind PiCloud's standard layers, so
//!   that ratio isolates PiCloud's own cost (token lookup, authorization,
//!   store read, serialization, the script hand-off).
//!
//! ```text
//! apt-get install wrk
//! cargo bench --bench http_load                       # memory store
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!   cargo bench --bench http_load                     # memory and PostgreSQL
//! cargo bench --bench http_load -- "memory GET /run"  # only matching lines
//! ```
//!
//! Measured, each against a bare route serving the same bytes:
//! - `GET /api/v1/admin/apps/{slug}/members` with 100 members (target ≥ 0.5×
//!   on the memory store) and `GET /api/v1/admin/apps/{slug}`;
//! - `GET /run/{app}/hello`, a trivial script returning JSON (targets ≥ 0.8×
//!   bare and ≥ 0.9× layered), and `GET /run/{app}/busy`, a script that
//!   always passes the inline budget; for both, the share of runs that
//!   finished inline.
//!
//! Then, on the release `picloud` binary: RSS with 100 scripts deployed
//! (target < 30 MB) and the CPU an idle server burns (target: none).

use std::process::Command;

/// The `picloud` binary's allocator (jemalloc, which the memory meter
/// reads): every side of the comparison runs on it, as the server does.
#[global_allocator]
static ALLOCATOR: picloud_core::executor::meter::MeteredAllocator =
    picloud_core::executor::meter::MeteredAllocator;
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use picloud::http::{ApiState, AppOptions};
use picloud::server::open_store;
use picloud::{AppRole, InstanceRole, NewAdminUser, Principal, Stores};

/// Seconds per `wrk` run.
const SECONDS: &str = "3";
/// Interleaved rounds of (bare, layered, PiCloud) per request; the medians
/// are reported, so one noisy run does not decide a ratio.
const ROUNDS: usize = 5;
/// The trivial script of the invoke benchmark.
const HELLO: &str = r#"#{ hello: "world" }"#;
/// A script that always passes the inline budget (some 6 000 operations):
/// it runs on the pool, after one abandoned attempt per cool-down.
const BUSY: &str = r#"let n = 0; for i in 0..2000 { n += i } #{ n: n }"#;
const CONNECTIONS: &str = "32";

fn wrk_available() -> bool {
    Command::new("wrk").arg("--version").output().is_ok()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Requests per second reported by `wrk`.
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

async fn seed(stores: &Stores) {
    let owner = stores
        .users
        .find_by_username("admin")
        .await
        .unwrap()
        .expect("bootstrap owner");
    let svc = picloud::AppService::new(stores.clone());
    svc.create(&Principal::of(&owner), "shop", "Shop")
        .await
        .unwrap();
    let app = stores.apps.find_by_slug("shop").await.unwrap().unwrap();
    for i in 0..100 {
        let user = stores
            .users
            .create(NewAdminUser::new(
                picloud_core::testkit::username(format!("member-{i:03}")),
                InstanceRole::Member,
            ))
            .await
            .unwrap();
        stores
            .members
            .try_insert(app.id, user.id, AppRole::Editor)
            .await
            .unwrap();
    }
}

/// The command line's filter: only lines whose `"{store} {request}"` (or
/// `footprint`) contains it are measured.
fn filter() -> Option<String> {
    std::env::args().skip(1).find(|a| !a.starts_with('-'))
}

fn selected(line: &str) -> bool {
    filter().is_none_or(|f| line.contains(&f))
}

/// The requests measured, each against the bare route serving its bytes.
/// A name ending in `+token` sends the owner's bearer token to `/run` too
/// (the admin API always gets it): a public caller sends none, and a token
/// costs a lookup before core removes it from the script's request.
const PAIRS: [(&str, &str, &str); 5] = [
    (
        "GET members (100)",
        "/bare/members",
        "/api/v1/admin/apps/shop/members",
    ),
    ("GET app", "/bare/app", "/api/v1/admin/apps/shop"),
    ("GET /run hello", "/bare/hello", "/run/shop/hello"),
    ("GET /run hello +token", "/bare/hello", "/run/shop/hello"),
    ("GET /run busy", "/bare/busy", "/run/shop/busy"),
];

/// Whether any request of the store `label` is selected.
fn store_selected(label: &str) -> bool {
    selected(&format!("{label} layers"))
        || PAIRS
            .iter()
            .any(|(name, _, _)| selected(&format!("{label} {name}")))
}

async fn run(label: &str, database_url: Option<String>) {
    let opened = open_store(database_url.as_deref())
        .await
        .expect("store opens");
    let stores = opened.stores.clone();
    let token = format!("bench-{}", uuid::Uuid::new_v4().simple());
    picloud::auth::AuthService::new(stores.clone())
        .bootstrap(Some(&token))
        .await
        .expect("bootstrap");
    seed(&stores).await;

    let state = ApiState::new(stores.clone());
    let owner = stores
        .users
        .find_by_username("admin")
        .await
        .unwrap()
        .unwrap();
    state
        .scripts
        .deploy(&Principal::of(&owner), "shop", "hello", HELLO.to_owned())
        .await
        .expect("deploy hello");
    state
        .scripts
        .deploy(&Principal::of(&owner), "shop", "busy", BUSY.to_owned())
        .await
        .expect("deploy busy");
    let scripts = state.clone();
    let picloud = picloud::http::app(
        state,
        AppOptions {
            readiness: opened.readiness,
            ..AppOptions::default()
        },
    );
    // Capture the exact bodies PiCloud returns, then serve them bare.
    let probe_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let probe_base = format!("http://{}", probe_listener.local_addr().unwrap());
    let probe = picloud.clone();
    let probe_task = tokio::spawn(async move { axum::serve(probe_listener, probe).await });
    let client = {
        picloud_core::egress::install_crypto_provider();
        reqwest::Client::new()
    };
    let mut bodies = Vec::new();
    for path in [
        "/api/v1/admin/apps/shop/members",
        "/api/v1/admin/apps/shop",
        "/run/shop/hello",
        "/run/shop/busy",
    ] {
        let resp = client
            .get(format!("{probe_base}{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        bodies.push(resp.bytes().await.unwrap());
    }
    probe_task.abort();
    let (members_body, app_body, hello_body, busy_body) = (
        bodies[0].clone(),
        bodies[1].clone(),
        bodies[2].clone(),
        bodies[3].clone(),
    );

    let bare = |body: axum::body::Bytes| {
        get(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        })
    };
    // `/bare/*`: plain axum handlers, no middleware at all (what the targets
    // compare against). `/layered/*`: the same handlers behind PiCloud's
    // standard layers (request id, tracing span, panic catching, body
    // limit), so that ratio isolates PiCloud's own work per request.
    let bare_routes = Router::new()
        .route("/bare/members", bare(members_body.clone()))
        .route("/bare/app", bare(app_body.clone()))
        .route("/bare/hello", bare(hello_body.clone()))
        .route("/bare/busy", bare(busy_body.clone()));
    let layered_routes = picloud::http::standard_layers(
        Router::new()
            .route("/layered/members", bare(members_body))
            .route("/layered/app", bare(app_body))
            .route("/layered/hello", bare(hello_body.clone()))
            .route("/layered/busy", bare(busy_body)),
        AppOptions::default().body_limit,
    );
    // One standard layer each, around the hello bytes: what each costs.
    let one = |path: &str| Router::new().route(path, bare(hello_body.clone()));
    let single_layers = Router::new()
        .merge(one("/one/request-id").layer(
            tower_http::request_id::PropagateRequestIdLayer::x_request_id(),
        ).layer(tower_http::request_id::SetRequestIdLayer::x_request_id(
            tower_http::request_id::MakeRequestUuid,
        )))
        .merge(one("/one/trace").layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(
            |req: &axum::extract::Request| {
                tracing::info_span!("request", method = %req.method(), uri = %req.uri())
            },
        )))
        .merge(one("/one/catch-panic").layer(tower_http::catch_panic::CatchPanicLayer::new()))
        .merge(
            one("/one/guards")
                .layer(axum::middleware::from_fn_with_state(
                    Duration::from_secs(30),
                    picloud::http::conn::request_guards,
                ))
                .layer(axum::extract::DefaultBodyLimit::max(1024 * 1024)),
        );
    let router: Router = picloud
        .merge(bare_routes)
        .merge(layered_routes)
        .merge(single_layers);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    tokio::time::sleep(Duration::from_millis(200)).await;

    for (name, bare, real) in PAIRS {
        if !selected(&format!("{label} {name}")) {
            continue;
        }
        let layered = bare.replacen("/bare/", "/layered/", 1);
        let (b, l, t) = (
            format!("{base}{bare}"),
            format!("{base}{layered}"),
            format!("{base}{real}"),
        );
        let token = (!real.starts_with("/run/") || name.ends_with("+token")).then(|| token.clone());
        let stats_before = scripts.scripts.executor_stats().unwrap_or_default();
        let (bare_rps, layered_rps, real_rps) = tokio::task::spawn_blocking(move || {
            let token = token.as_deref();
            wrk(&t, token); // warm-up
            let (mut bare, mut layered, mut real) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                bare.push(wrk(&b, token));
                layered.push(wrk(&l, token));
                real.push(wrk(&t, token));
            }
            (median(bare), median(layered), median(real))
        })
        .await
        .unwrap();
        // Which path the runs took (`/run` only): the share that finished
        // inline, of every run.
        let stats = scripts.scripts.executor_stats().unwrap_or_default();
        let inline = stats.inline_completed - stats_before.inline_completed;
        let pool = stats.pool_runs - stats_before.pool_runs;
        let share = if real.starts_with("/run/") && inline + pool > 0 {
            format!(
                "   inline {:.1}% of {} runs ({} abandoned)",
                100.0 * inline as f64 / (inline + pool) as f64,
                inline + pool,
                stats.inline_abandoned - stats_before.inline_abandoned
            )
        } else {
            String::new()
        };
        println!(
            "{label:<9} {name:<18} bare {bare_rps:>7.0}  layered {layered_rps:>7.0}  picloud {real_rps:>7.0} req/s   ratio {:.2}x (vs layered {:.2}x){share}",
            real_rps / bare_rps,
            real_rps / layered_rps
        );
    }
    if selected(&format!("{label} layers")) {
        let base_url = base.clone();
        let label = label.to_owned();
        let lines = tokio::task::spawn_blocking(move || {
            let paths = [
                "/bare/hello",
                "/one/request-id",
                "/one/trace",
                "/one/catch-panic",
                "/one/guards",
                "/layered/hello",
            ];
            wrk(&format!("{base_url}/bare/hello"), None); // warm-up
            let mut rps = vec![Vec::new(); paths.len()];
            for _ in 0..ROUNDS {
                for (i, p) in paths.iter().enumerate() {
                    rps[i].push(wrk(&format!("{base_url}{p}"), None));
                }
            }
            let bare = median(rps[0].clone());
            paths
                .iter()
                .zip(rps)
                .skip(1)
                .map(|(p, r)| {
                    let r = median(r);
                    format!(
                        "{label:<9} layers {p:<18} {r:>7.0} req/s   {:.2}x bare ({bare:.0})",
                        r / bare
                    )
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
        for line in lines {
            println!("{line}");
        }
    }
    server.abort();
}

/// RSS (kB) of process `pid`, from /proc.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU ticks (user + system) used so far by process `pid`.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12) // utime, stime (fields 14 and 15 of stat)
}

/// Starts the release binary on the memory store, deploys 100 scripts, and
/// reports its RSS and its CPU use while idle.
async fn footprint() {
    let token = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_picloud"))
        .env("PICLOUD_LISTEN", format!("127.0.0.1:{port}"))
        .env("PICLOUD_BOOTSTRAP_TOKEN", &token)
        .env("RUST_LOG", "warn")
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("the picloud binary starts");
    let pid = child.id();
    let base = format!("http://127.0.0.1:{port}");
    let client = {
        picloud_core::egress::install_crypto_provider();
        reqwest::Client::new()
    };
    for _ in 0..100 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_start = rss_kb(pid);
    let resp = client
        .post(format!("{base}/api/v1/admin/apps"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "slug": "many", "name": "many" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let source = include_str!("../examples/scripts/router.rhai");
    for i in 0..100 {
        let resp = client
            .put(format!("{base}/api/v1/admin/apps/many/scripts/s{i}"))
            .bearer_auth(&token)
            .body(source)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let resp = client
            .get(format!("{base}/run/many/s{i}/users"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss = rss_kb(pid);
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = cpu_ticks(pid) - before;
    println!(
        "footprint  RSS at start {:.1} MB, with 100 scripts deployed and run {:.1} MB (target < 30 MB)",
        rss_start as f64 / 1024.0,
        rss as f64 / 1024.0
    );
    println!("footprint  CPU while idle for 3 s: {idle} ticks of 10 ms (target 0)");
    let _ = child.kill();
    let _ = child.wait();
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and friends.
    }
    if !wrk_available() {
        println!("http_load: SKIPPED (wrk not installed: apt-get install wrk)");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if store_selected("memory") {
            run("memory", None).await;
        }
        match picloud::store::postgres::testing::database_url() {
            _ if !store_selected("postgres") => {}
            Some(_) => {
                let url = picloud::store::postgres::testing::fresh_database_url()
                    .await
                    .expect("a fresh database");
                run("postgres", Some(url)).await;
            }
            None => println!("postgres  SKIPPED (set DATABASE_URL)"),
        }
        if selected("footprint") {
            footprint().await;
        }
    });
}
