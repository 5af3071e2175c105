//! The hardening issue's findings 4, 6 (for `/run`) and 8, over HTTP on the
//! assembled server, on both stores. (Findings 1 and 2: `hostile_scripts.rs`
//! and `memory_bound.rs`; 3 and 5: `storage_bounds.rs`; 6: `slow_clients.rs`;
//! 7: `users_api.rs`; 0: `scripts_api.rs`.)

#[macro_use]
mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use support::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A source whose parse takes seconds: rhai looks variables up by a linear
/// search, so 40,000 `let`s were 7.3 s of one core (finding 4).
fn slow_to_compile() -> String {
    (0..40_000).map(|i| format!("let v{i} = {i};\n")).collect()
}

/// Finding 4: a compile that takes long stalls no other app. Deploys of
/// one app are serialised (per app, after authorization), compiles are
/// capped per app and bounded by the compile budget; another app's deploy
/// waits for none of it.
async fn a_slow_compile_stalls_no_other_app(s: TestServer) {
    s.create_app("slow").await;
    s.create_app("quick").await;
    let slow = slow_to_compile();
    let mut uploads = Vec::new();
    for i in 0..3 {
        let (client, url, token, body) = (
            s.client.clone(),
            s.url(&format!("/api/v1/admin/apps/slow/scripts/s{i}")),
            s.owner_token.clone(),
            slow.clone(),
        );
        uploads.push(tokio::spawn(async move {
            client.put(url).bearer_auth(token).body(body).send().await
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let (status, _) = s.deploy("quick", "hello", r#""hi""#).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, body) = s.run(reqwest::Method::GET, "/run/quick/hello", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hi"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the other app waited {:?}",
        started.elapsed()
    );
    for upload in uploads {
        let resp = upload.await.unwrap().unwrap();
        // Each either compiled within the budget or was refused by it.
        assert!(
            resp.status() == StatusCode::CREATED
                || resp.status() == StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            resp.status()
        );
    }
}

/// Finding 4: an upload abandoned by its client is cancelled; the app's
/// next deploy does not wait behind it.
async fn an_abandoned_compile_is_cancelled(s: TestServer) {
    s.create_app("gone").await;
    let slow = slow_to_compile();
    for i in 0..4 {
        let request = s
            .client
            .put(s.url(&format!("/api/v1/admin/apps/gone/scripts/a{i}")))
            .bearer_auth(&s.owner_token)
            .timeout(Duration::from_millis(300))
            .body(slow.clone())
            .send()
            .await;
        // The client gave up (or the compile was quick enough to answer).
        assert!(request.is_err() || request.unwrap().status().is_success());
    }
    let started = Instant::now();
    let (status, _) = s.deploy("gone", "hello", r#""hi""#).await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the deploy waited {:?} behind abandoned compiles",
        started.elapsed()
    );
}

/// Finding 6: `/run` checks the route before it reads a byte of the body,
/// so a client that announces a large body and sends none gets its 404 at
/// once instead of holding a buffer.
async fn run_checks_the_script_before_the_body(s: TestServer) {
    s.create_app("shop").await;
    let addr = s.url("").trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    conn.write_all(
        format!("POST /run/shop/nope HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 1000000\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = vec![0_u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), conn.read(&mut buf))
        .await
        .expect("answered without waiting for the body")
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    assert!(head.contains("no script nope in app shop"), "{head}");
}

/// Finding 8: a body within the limit never fails a script by itself; the
/// request the run starts with does not count against the app's limits.
async fn a_large_request_body_is_not_the_scripts_fault(s: TestServer) {
    s.create_app("shop").await;
    s.deploy(
        "shop",
        "size",
        "`${request.json.len()} ${request.body.len()}`",
    )
    .await;
    let array = format!("[{}0]", "0,".repeat(200_000));
    let string = format!("\"{}\"", "x".repeat(600_000));
    for (body, expect) in [
        (array.clone(), format!("200001 {}", array.len())),
        (string.clone(), format!("600000 {}", string.len())),
    ] {
        let resp = s
            .client
            .post(s.url("/run/shop/size"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert_eq!((status, text), (StatusCode::OK, expect));
    }
    // What the script adds to the request still counts.
    s.deploy(
        "shop",
        "grow",
        "let s = \"y\"; for i in 0..19 { s += s; } request.body += s; request.body += s; 1",
    )
    .await;
    let resp = s
        .client
        .post(s.url("/run/shop/grow"))
        .body(string)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["limit"], json!("string size"), "{body}");
}

/// Finding 8: 205 (like 204 and 304) has no body, and `/run` decodes its
/// app and script segments as the admin API decodes its paths.
async fn no_body_statuses_and_encoded_paths(s: TestServer) {
    s.create_app("evil").await;
    s.deploy("evil", "reset", r#"response(205, "body")"#).await;
    let (status, ct, body) = s.run(reqwest::Method::GET, "/run/evil/reset", None).await;
    assert_eq!(
        (status, ct.as_str(), body.as_str()),
        (StatusCode::RESET_CONTENT, "", "")
    );
    s.deploy("evil", "x", r#""decoded""#).await;
    let (status, _, body) = s.run(reqwest::Method::GET, "/run/ev%69l/%78", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "decoded"));
    let (status, _, _) = s.run(reqwest::Method::GET, "/run/%FF/x", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

on_both_stores!(
    a_slow_compile_stalls_no_other_app,
    an_abandoned_compile_is_cancelled,
    run_checks_the_script_before_the_body,
    a_large_request_body_is_not_the_scripts_fault,
    no_body_statuses_and_encoded_paths,
);

/// Finding 4: the server binds before it compiles; until the live scripts
/// are compiled `/readyz` says so, and a `/run` of a live script that is
/// not compiled yet compiles it on demand (never a 404).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_warm_run_compiles_on_demand_and_readyz_waits() {
    use picloud::http::{ApiState, AppOptions};
    use picloud::store::memory::MemoryStore;
    use picloud_core::domain::ScriptName;

    let stores = MemoryStore::new().into_stores();
    let owner = picloud_core::auth::AuthService::new(stores.clone())
        .bootstrap(Some("an-owner-token-of-at-least-32-characters"))
        .await
        .unwrap();
    let _ = owner;
    let app = stores
        .apps
        .create(picloud_core::domain::NewApp::new(
            picloud_core::domain::Slug::parse("cold").unwrap(),
            picloud_core::testkit::display_name("Cold"),
        ))
        .await
        .unwrap();
    let admin = stores.users.list().await.unwrap()[0].id;
    stores
        .scripts
        .deploy(
            app.id,
            &ScriptName::parse("hello").unwrap(),
            r#""warm enough""#.into(),
            admin,
            Default::default(),
        )
        .await
        .unwrap();
    let state = ApiState::new(stores);
    let router = picloud::http::app(state.clone(), AppOptions::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(picloud::http::serve(
        listener,
        router,
        std::future::pending(),
    ));
    let client = {
        picloud_core::egress::install_crypto_provider();
        reqwest::Client::new()
    };

    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let resp = client
        .get(format!("{base}/run/cold/hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "warm enough");
    let missing = client
        .get(format!("{base}/run/cold/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    state.warm().await.unwrap();
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
}
