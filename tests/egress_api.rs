//! End-to-end: scripts' outbound HTTP (`http::…`) against test servers on
//! loopback. With `PICLOUD_EGRESS_ALLOW` covering 127.0.0.1: get, post,
//! headers, JSON, a big response cut at the limit, a slow server cut by
//! the wall clock, at most 50 requests a run, and each call made once on
//! the pool. Without the allowance: 127.0.0.1, localhost and [::1] are
//! refused and the test server sees no connection; a redirect to 127.0.0.2
//! (outside the allowance) is refused, and 127.0.0.2 sees nothing.
//!
//! Every connection goes to loopback; names resolve through a static
//! resolver (`localhost` only), so no test sends a DNS query.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Query;
use axum::http::{HeaderMap, Method as HttpMethod, StatusCode as HttpStatus, header};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use picloud::server::ServerConfig;
use picloud_core::egress::StaticResolver;
use picloud_core::executor::InlineBudget;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::TestServer;

/// A listener that counts the connections it accepts.
struct Counting {
    inner: tokio::net::TcpListener,
    accepted: Arc<AtomicUsize>,
}

impl axum::serve::Listener for Counting {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            if let Ok((io, addr)) = self.inner.accept().await {
                self.accepted.fetch_add(1, Ordering::SeqCst);
                return (io, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A test server on `addr` (port 0: any): its address and its count of
/// accepted connections. `None` if the address cannot be bound (no IPv6).
async fn upstream(
    addr: &str,
    redirect_to: Option<String>,
) -> Option<(SocketAddr, Arc<AtomicUsize>)> {
    let inner = tokio::net::TcpListener::bind(addr).await.ok()?;
    let local = inner.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    let app = Router::new()
        .route("/hello", get(|| async { "hello from upstream" }))
        .route(
            "/json",
            get(|headers: HeaderMap| async move {
                let seen = headers
                    .get("x-test")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                axum::Json(json!({ "items": [1, 2, 3], "x_test": seen }))
            }),
        )
        .route(
            "/echo",
            any(
                |method: HttpMethod, headers: HeaderMap, body: String| async move {
                    let h = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned()
                    };
                    (
                        [("x-upstream", "yes")],
                        axum::Json(json!({
                            "method": method.as_str(),
                            "body": body,
                            "content_type": h("content-type"),
                            "x_a": h("x-a"),
                        })),
                    )
                },
            ),
        )
        .route("/big", get(|| async { "b".repeat(3 * 1024 * 1024) }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route(
            "/count",
            get(move || {
                let hits = Arc::clone(&counted);
                async move { hits.fetch_add(1, Ordering::SeqCst).to_string() }
            }),
        )
        .route(
            "/hops",
            get(
                |Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    // /hops?n=3 redirects to /hops?n=2 … then answers.
                    let n: u32 = q.get("n").and_then(|n| n.parse().ok()).unwrap_or(0);
                    if n == 0 {
                        "landed".into_response()
                    } else {
                        (
                            HttpStatus::FOUND,
                            [(header::LOCATION, format!("/hops?n={}", n - 1))],
                        )
                            .into_response()
                    }
                },
            ),
        );
    let app = match redirect_to {
        Some(to) => app.route(
            "/redirect",
            get(move || {
                let to = to.clone();
                async move { (HttpStatus::FOUND, [(header::LOCATION, to)]) }
            }),
        ),
        None => app,
    };
    let listener = Counting {
        inner,
        accepted: Arc::clone(&accepted),
    };
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Some((local, accepted))
}

/// A server whose scripts may reach `allow`; names resolve only through a
/// static resolver that knows `localhost`.
async fn server(allow: &str) -> TestServer {
    let allow = allow.to_owned();
    TestServer::configured(false, move |c: &mut ServerConfig| {
        c.egress_allow = allow;
        c.egress_resolver = Some(Arc::new(StaticResolver::new()));
        c.executor.inline = Some(InlineBudget {
            time: Duration::from_millis(250),
            cooldown: Duration::ZERO,
            ..InlineBudget::default()
        });
    })
    .await
    .unwrap()
}

async fn deploy(s: &TestServer, app: &str, name: &str, source: &str) {
    let (status, body) = s.deploy(app, name, source).await;
    assert!(status.is_success(), "deploy {name}: {status} {body}");
}

async fn run(s: &TestServer, path: &str) -> (StatusCode, Value) {
    let (status, _, text) = s.run(Method::GET, &format!("/run/{path}"), None).await;
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn query(url: &str) -> String {
    url.replace(':', "%3A")
        .replace('/', "%2F")
        .replace('[', "%5B")
        .replace(']', "%5D")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn get_post_headers_json_and_a_big_response() {
    let (up, _) = upstream("127.0.0.1:0", None).await.unwrap();
    let s = server("127.0.0.1/32").await;
    s.create_app("out").await;
    deploy(
        &s,
        "out",
        "calls",
        r#"
        let base = request.query.base;
        let a = http::get(base + "/hello");
        let b = http::get(base + "/json", #{ headers: #{ "x-test": "yes" } });
        let c = http::post(base + "/echo", #{ n: 1 });
        let d = http::request(#{ method: "PUT", url: base + "/echo", headers: #{ "x-a": "1" }, body: "raw" });
        let e = http::get(base + "/big");
        let f = http::post(base + "/echo", "text body", #{ headers: #{ "content-type": "text/plain" } });
        let g = http::get(base + "/hops?n=5");
        #{
            a_status: a.status, a_body: a.body, a_json: a.json,
            b_json: b.json, b_type: b.headers["content-type"],
            c: c.json, c_header: c.headers["x-upstream"],
            d: d.json,
            e_len: e.body.len(), e_truncated: e.truncated, e_json: e.json,
            f: f.json, g: g.body
        }
        "#,
    )
    .await;
    let base = format!("http://{up}");
    let (status, out) = run(&s, &format!("out/calls?base={}", query(&base))).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["a_status"], 200);
    assert_eq!(out["a_body"], "hello from upstream");
    assert_eq!(out["a_json"], Value::Null);
    assert_eq!(
        out["b_json"],
        json!({ "items": [1, 2, 3], "x_test": "yes" })
    );
    assert_eq!(out["b_type"], "application/json");
    assert_eq!(
        out["c"],
        json!({ "method": "POST", "body": "{\"n\":1}", "content_type": "application/json", "x_a": "" })
    );
    assert_eq!(out["c_header"], "yes");
    assert_eq!(
        out["d"],
        json!({ "method": "PUT", "body": "raw", "content_type": "", "x_a": "1" })
    );
    // Cut to fit the run's string limit (1 MiB by default) with the
    // response's headers.
    let cut = out["e_len"].as_u64().unwrap();
    assert!((1_000_000..1024 * 1024).contains(&cut), "{cut}");
    assert_eq!(out["e_truncated"], true);
    assert_eq!(out["e_json"], Value::Null);
    assert_eq!(out["f"]["content_type"], "text/plain");
    assert_eq!(out["f"]["body"], "text body");
    // Five redirects are followed; a sixth is not.
    assert_eq!(out["g"], "landed");
    deploy(
        &s,
        "out",
        "hops",
        r#"http::get(request.query.base + "/hops?n=6")"#,
    )
    .await;
    let (status, body) = run(&s, &format!("out/hops?base={}", query(&base))).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        body["error"].as_str().unwrap().contains("redirect"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_server_is_cut_by_the_wall_clock() {
    let (up, _) = upstream("127.0.0.1:0", None).await.unwrap();
    let s = server("127.0.0.1/32").await;
    s.create_app("slow").await;
    deploy(
        &s,
        "slow",
        "wait",
        r#"http::get(request.query.base + "/slow").body"#,
    )
    .await;
    let started = Instant::now();
    let (status, body) = run(
        &s,
        &format!("slow/wait?base={}", query(&format!("http://{up}"))),
    )
    .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert!(body["error"].as_str().unwrap().contains("wall"), "{body}");
    // The default wall clock is 1 s; the server would take 5.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn at_most_50_requests_a_run_and_each_made_once_on_the_pool() {
    let (up, _) = upstream("127.0.0.1:0", None).await.unwrap();
    let s = server("127.0.0.1/32").await;
    s.create_app("many").await;
    let base = query(&format!("http://{up}"));
    deploy(
        &s,
        "many",
        "fifty",
        r#"let n = 0; for i in 0..50 { http::get(request.query.base + "/hello"); n += 1; } n"#,
    )
    .await;
    assert_eq!(
        run(&s, &format!("many/fifty?base={base}")).await,
        (StatusCode::OK, json!(50))
    );
    deploy(
        &s,
        "many",
        "more",
        r#"for i in 0..51 { http::get(request.query.base + "/hello"); } 1"#,
    )
    .await;
    let (status, body) = run(&s, &format!("many/more?base={base}")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("at most 50 HTTP requests"),
        "{body}"
    );
    // A script may not set the connection's own headers.
    deploy(
        &s,
        "many",
        "host",
        r#"http::get(request.query.base + "/hello", #{ headers: #{ Host: "internal.admin" } })"#,
    )
    .await;
    let (status, body) = run(&s, &format!("many/host?base={base}")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        body["error"].as_str().unwrap().contains("connection's own"),
        "{body}"
    );
    // An inline attempt moves to the pool before the call: each run's
    // request reaches the server once.
    deploy(
        &s,
        "many",
        "count",
        r#"http::get(request.query.base + "/count").body"#,
    )
    .await;
    let before = s.server.executor_stats().unwrap();
    for n in 0..3 {
        assert_eq!(
            run(&s, &format!("many/count?base={base}")).await,
            (StatusCode::OK, json!(n))
        );
    }
    let after = s.server.executor_stats().unwrap();
    assert_eq!(after.inline_abandoned - before.inline_abandoned, 3);
    assert_eq!(after.pool_runs - before.pool_runs, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn loopback_is_refused_without_the_allowance_and_never_connected() {
    let (up4, seen4) = upstream("127.0.0.1:0", None).await.unwrap();
    let v6 = upstream("[::1]:0", None).await;
    let s = server("").await;
    s.create_app("ssrf").await;
    deploy(&s, "ssrf", "fetch", r#"http::get(request.query.url).body"#).await;
    let mut urls = vec![
        format!("http://{up4}/hello"),
        format!("http://localhost:{}/hello", up4.port()),
        format!("http://127.1:{}/hello", up4.port()),
        format!("http://2130706433:{}/hello", up4.port()),
        format!("http://[::ffff:127.0.0.1]:{}/hello", up4.port()),
    ];
    if let Some((up6, _)) = &v6 {
        urls.push(format!("http://[::1]:{}/hello", up6.port()));
    } else {
        eprintln!(
            "no IPv6 loopback here: the [::1] case is checked by the address rule's unit tests only"
        );
    }
    for url in &urls {
        let (status, body) = run(&s, &format!("ssrf/fetch?url={}", query(url))).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{url}: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(
            error.contains("refused") || error.contains("loopback"),
            "{url}: {error}"
        );
    }
    assert_eq!(
        seen4.load(Ordering::SeqCst),
        0,
        "the IPv4 server saw a connection"
    );
    if let Some((_, seen6)) = v6 {
        assert_eq!(
            seen6.load(Ordering::SeqCst),
            0,
            "the IPv6 server saw a connection"
        );
    }
    // Other schemes are refused too.
    for url in [
        "file:///etc/passwd",
        "ftp://127.0.0.1/",
        "gopher://127.0.0.1:70/",
    ] {
        let (status, body) = run(&s, &format!("ssrf/fetch?url={}", query(url))).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{url}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redirect_outside_the_allowance_is_refused() {
    // 127.0.0.2 is loopback too, but outside the allowance.
    let (other, seen_other) = upstream("127.0.0.2:0", None).await.unwrap();
    let (up, _) = upstream("127.0.0.1:0", Some(format!("http://{other}/hello")))
        .await
        .unwrap();
    let s = server("127.0.0.1/32").await;
    s.create_app("hop").await;
    deploy(&s, "hop", "follow", r#"http::get(request.query.url).body"#).await;
    let (status, body) = run(
        &s,
        &format!("hop/follow?url={}", query(&format!("http://{up}/redirect"))),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("refused"),
        "{body}"
    );
    assert_eq!(seen_other.load(Ordering::SeqCst), 0);
    // The same address called directly is refused as well.
    let (status, _) = run(
        &s,
        &format!("hop/follow?url={}", query(&format!("http://{other}/hello"))),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(seen_other.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_apps_host_allowlist_narrows_what_it_may_call() {
    let (up, seen) = upstream("127.0.0.1:0", None).await.unwrap();
    let s = server("127.0.0.1/32").await;
    s.create_app("narrow").await;
    deploy(
        &s,
        "narrow",
        "fetch",
        r#"http::get(request.query.url).body"#,
    )
    .await;
    let settings = "/api/v1/admin/apps/narrow/settings";
    let (status, body) = s.get(settings, &s.owner_token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["egress_hosts"], Value::Null);
    let (status, body) = s
        .patch(
            settings,
            &s.owner_token,
            json!({ "egress_hosts": ["API.example.com", "*.example.org"] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["egress_hosts"],
        json!(["api.example.com", "*.example.org"])
    );
    let by_ip = query(&format!("http://{up}/hello"));
    let by_name = query(&format!("http://localhost:{}/hello", up.port()));
    let (status, body) = run(&s, &format!("narrow/fetch?url={by_ip}")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("allowed hosts"),
        "{body}"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 0);
    // Listed, the host is reachable (the instance's allowance still applies).
    let (status, body) = s
        .patch(
            settings,
            &s.owner_token,
            json!({ "egress_hosts": ["localhost", "127.0.0.1"] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        run(&s, &format!("narrow/fetch?url={by_ip}")).await.1,
        "hello from upstream"
    );
    assert_eq!(
        run(&s, &format!("narrow/fetch?url={by_name}")).await.1,
        "hello from upstream"
    );
    // Cleared: any host again; a bad entry is a 422 and changes nothing.
    let (status, body) = s
        .patch(settings, &s.owner_token, json!({ "egress_hosts": null }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["egress_hosts"], Value::Null);
    let (status, body) = s
        .patch(
            settings,
            &s.owner_token,
            json!({ "egress_hosts": ["http://x.com/"] }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (_, body) = s.get(settings, &s.owner_token).await;
    assert_eq!(body["egress_hosts"], Value::Null);
    // Only an app admin changes it.
    let (editor, token) = s.user("ed", "member").await;
    s.grant("narrow", &editor, "editor").await;
    let (status, _) = s
        .patch(settings, &token, json!({ "egress_hosts": [] }))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
