//! End-to-end: deploy Rhai scripts over HTTP and invoke them at
//! `/run/{app}/{script}`, on both stores. Every output form, the request
//! fields, compile and runtime errors, redeploy and rollback with their logs,
//! permissions, and per-app limits.

#[macro_use]
mod support;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::TestServer;

const HELLO: &str = include_str!("../examples/scripts/hello.rhai");
const ECHO: &str = include_str!("../examples/scripts/echo.rhai");
const ROUTER: &str = include_str!("../examples/scripts/router.rhai");
const COUNT_ARGS: &str = include_str!("../examples/scripts/count_args.rhai");
const NOTHING: &str = include_str!("../examples/scripts/nothing.rhai");

async fn every_output_form(s: TestServer) {
    s.create_app("shop").await;
    for (name, src) in [
        ("hello", HELLO),
        ("echo", ECHO),
        ("router", ROUTER),
        ("nothing", NOTHING),
    ] {
        let (status, body) = s.deploy("shop", name, src).await;
        assert_eq!(status, StatusCode::CREATED, "{name}: {body}");
        assert_eq!(body["live_version"], 1);
    }
    // A string: 200 text/plain.
    let (status, ct, body) = s.run(Method::GET, "/run/shop/hello?name=pi", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hello, pi!"));
    assert!(ct.starts_with("text/plain"), "{ct}");
    // A map: 200 JSON, with every request field.
    let (status, ct, body) = s
        .run(
            Method::POST,
            "/run/shop/echo/a/b?x=1&y=two",
            Some(r#"{"n": 42, "tags": ["a"]}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(ct.starts_with("application/json"), "{ct}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/a/b");
    assert_eq!(v["query"], json!({ "x": "1", "y": "two" }));
    assert_eq!(v["content_type"], "application/json");
    assert_eq!(v["json"], json!({ "n": 42, "tags": ["a"] }));
    // A body that is not JSON: request.json is unit (null in the output).
    let (_, _, body) = s
        .run(Method::POST, "/run/shop/echo", Some("not json"))
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["json"],
        Value::Null
    );
    // An array.
    let (status, _, body) = s.run(Method::GET, "/run/shop/router/users", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()[1]["name"],
        "linus"
    );
    // response(status, body, headers).
    let resp = s
        .client
        .get(s.url("/run/shop/router/teapot"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 418);
    assert_eq!(resp.headers()["x-brewed-by"], "picloud");
    assert_eq!(resp.text().await.unwrap(), "I'm a teapot");
    // The router's own routes: each one it advertises answers, and a user
    // id that is not a number is a 404, not a script error.
    let (status, _, body) = s.run(Method::GET, "/run/shop/router", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "routes: /users, /users/{id}, /teapot");
    let (status, _, body) = s.run(Method::GET, "/run/shop/router/users/2", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["name"],
        "linus"
    );
    for missing in ["/users/abc", "/users/3", "/time"] {
        let (status, _, body) = s
            .run(Method::GET, &format!("/run/shop/router{missing}"), None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}: {body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["error"],
            format!("nothing at {missing}")
        );
    }
    // response(status, map): JSON with that status.
    let (status, _, body) = s.run(Method::GET, "/run/shop/router/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "nothing at /nope"
    );
    // Unit: 204.
    let (status, _, body) = s.run(Method::DELETE, "/run/shop/nothing", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::NO_CONTENT, ""));
    // Unknown app or script: 404 JSON.
    let (status, _, body) = s.run(Method::GET, "/run/shop/missing", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(serde_json::from_str::<Value>(&body).unwrap()["error"].is_string());
    let (status, _, _) = s.run(Method::GET, "/run/nope/hello", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn compile_errors_are_422_with_line_and_column_and_store_nothing(s: TestServer) {
    s.create_app("shop").await;
    let (status, body) = s.deploy("shop", "bad", "let x = 1;\nlet y = ;\n").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["line"], 2);
    assert!(body["column"].as_u64().is_some(), "{body}");
    assert!(body["error"].as_str().unwrap().contains("compile error"));
    let (_, list) = s
        .get("/api/v1/admin/apps/shop/scripts", &s.owner_token)
        .await;
    assert_eq!(list, json!([]));
    let (status, _, _) = s.run(Method::GET, "/run/shop/bad", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // eval and import are refused at deploy.
    for src in ["eval(\"1\")", "import \"fs\" as fs; 1"] {
        let (status, body) = s.deploy("shop", "sneaky", src).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{src}: {body}");
    }
    // A bad script name.
    let (status, _) = s.deploy("shop", "no.dots", "1").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn runtime_errors_are_500_json_with_the_line(s: TestServer) {
    s.create_app("shop").await;
    s.deploy("shop", "boom", "let a = 1;\nlet b = 2;\nthrow \"kaput\";")
        .await;
    let (status, ct, body) = s.run(Method::GET, "/run/shop/boom", None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(ct.starts_with("application/json"));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["error"].as_str().unwrap().starts_with("script error:"),
        "{v}"
    );
    assert!(v["error"].as_str().unwrap().contains("kaput"), "{v}");
    assert_eq!(v["line"], 3);
    s.deploy("shop", "div", "let x = 0;\n10 / x").await;
    let (status, _, body) = s.run(Method::GET, "/run/shop/div", None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["line"], 2);
}

async fn redeploy_is_live_at_once_and_rollback_restores_with_logs_kept(s: TestServer) {
    s.create_app("shop").await;
    let (status, _) = s.deploy("shop", "v", "print(\"one\"); \"v1\"").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(s.run(Method::GET, "/run/shop/v", None).await.2, "v1");
    let (status, body) = s.deploy("shop", "v", "print(\"two\"); \"v2\"").await;
    assert_eq!(status, StatusCode::OK, "a new version is 200");
    assert_eq!(
        (body["live_version"].clone(), body["latest_version"].clone()),
        (json!(2), json!(2))
    );
    assert_eq!(s.run(Method::GET, "/run/shop/v", None).await.2, "v2");
    let (status, body) = s
        .post(
            "/api/v1/admin/apps/shop/scripts/v/rollback",
            &s.owner_token,
            json!({ "version": 1 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["live_version"], 1);
    assert_eq!(s.run(Method::GET, "/run/shop/v", None).await.2, "v1");
    let (status, _) = s
        .post(
            "/api/v1/admin/apps/shop/scripts/v/rollback",
            &s.owner_token,
            json!({ "version": 7 }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Both versions and their logs stay readable.
    let (_, detail) = s
        .get("/api/v1/admin/apps/shop/scripts/v", &s.owner_token)
        .await;
    assert_eq!(detail["versions"].as_array().unwrap().len(), 2);
    assert_eq!(detail["versions"][0]["live"], true);
    let (_, v2) = s
        .get(
            "/api/v1/admin/apps/shop/scripts/v/versions/2",
            &s.owner_token,
        )
        .await;
    assert!(v2["source"].as_str().unwrap().contains("v2"));
    let mut seen = Vec::new();
    for _ in 0..100 {
        let (_, logs) = s
            .get(
                "/api/v1/admin/apps/shop/scripts/v/invocations?limit=10",
                &s.owner_token,
            )
            .await;
        seen = logs.as_array().unwrap().clone();
        if seen.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let versions: Vec<u64> = seen
        .iter()
        .map(|r| r["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 1], "newest first");
    assert_eq!(seen[1]["logs"], json!(["two"]));
    assert_eq!(seen[2]["logs"], json!(["one"]));
    assert_eq!(seen[0]["status"], 200);
}

async fn viewers_read_editors_deploy_and_only_app_admins_set_limits(s: TestServer) {
    s.create_app("shop").await;
    let (viewer, viewer_token) = s.user("vera", "member").await;
    let (editor, editor_token) = s.user("ed", "member").await;
    s.grant("shop", &viewer, "viewer").await;
    s.grant("shop", &editor, "editor").await;
    let (status, _) = s.deploy_as(&viewer_token, "shop", "x", "1").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = s.deploy_as(&editor_token, "shop", "x", "1").await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, list) = s
        .get("/api/v1/admin/apps/shop/scripts", &viewer_token)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list[0]["name"], "x");
    let (status, _) = s
        .call(
            Method::PUT,
            "/api/v1/admin/apps/shop/limits",
            Some(&editor_token),
            Some(json!({ "wall_clock_ms": 100 })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = s.deploy_as("not-a-token", "shop", "x", "1").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn app_limits_apply_to_the_next_invocation(s: TestServer) {
    s.create_app("shop").await;
    s.deploy("shop", "spin", "loop {}").await;
    let (status, body) = s
        .call(
            Method::PUT,
            "/api/v1/admin/apps/shop/limits",
            Some(&s.owner_token),
            Some(json!({ "wall_clock_ms": 150 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["wall_clock_ms"], 150);
    let started = Instant::now();
    let (status, _, body) = s.run(Method::GET, "/run/shop/spin", None).await;
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert!(status.is_server_error(), "{status}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["error"].as_str().unwrap().contains("wall clock"), "{v}");
    let (status, _) = s
        .call(
            Method::PUT,
            "/api/v1/admin/apps/shop/limits",
            Some(&s.owner_token),
            Some(json!({ "wall_clock_ms": 0 })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn scripts_cannot_break_framing_or_read_picloud_tokens(s: TestServer) {
    s.create_app("shop").await;
    s.deploy(
        "shop",
        "framing",
        r#"response(200, "hi", #{ "content-length": "0", "transfer-encoding": "chunked", "connection": "close", "x-ok": "1" })"#,
    )
    .await;
    for _ in 0..3 {
        // Several on one keep-alive connection: none is desynchronised.
        let resp = s
            .client
            .get(s.url("/run/shop/framing"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["x-ok"], "1");
        assert_eq!(resp.text().await.unwrap(), "hi");
    }
    // A cookie is confined to the app that set it: its path is forced under
    // /run/shop and its domain dropped.
    s.deploy(
        "shop",
        "cookie",
        r#"response(200, "ok", #{ "set-cookie": "sid=abc; Path=/; Domain=example.com; HttpOnly" })"#,
    )
    .await;
    let resp = s
        .client
        .get(s.url("/run/shop/cookie"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["set-cookie"],
        "sid=abc; HttpOnly; Path=/run/shop"
    );
    s.deploy(
        "shop",
        "snoop",
        r#"request.headers.authorization ?? "none""#,
    )
    .await;
    let resp = s
        .client
        .get(s.url("/run/shop/snoop"))
        .bearer_auth(&s.owner_token)
        .send()
        .await
        .unwrap();
    // Finding 0 of the hardening issue: the owner's bootstrap token is not a
    // `pc_` token, and it reached every script the owner called. No
    // credential PiCloud accepts reaches a script.
    assert_eq!(resp.text().await.unwrap(), "none");
    let (_, token) = s
        .post(
            "/api/v1/admin/tokens",
            &s.owner_token,
            json!({ "name": "t" }),
        )
        .await;
    let pc = token["token"].as_str().unwrap();
    for presented in [
        format!("Bearer {pc}"),
        format!("bearer   {}", s.owner_token),
    ] {
        let resp = s
            .client
            .get(s.url("/run/shop/snoop"))
            .header("authorization", presented)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.text().await.unwrap(), "none");
    }
    // Nor in any other header: a client may send its token as an API key.
    s.deploy(
        "shop",
        "keys",
        r#"`${request.headers["x-api-key"] ?? "none"} ${request.headers["x-auth-token"] ?? "none"} ${request.headers["x-other"] ?? "none"}`"#,
    )
    .await;
    let key_sent = |key: String, auth: String, other: String| {
        s.client
            .get(s.url("/run/shop/keys"))
            .header("x-api-key", key)
            .header("x-auth-token", auth)
            .header("x-other", other)
            .send()
    };
    for other in [
        format!("session={pc}"),
        format!("\"{pc}\""),
        format!("a;{pc}"),
        format!("{{\"t\":\"{pc}\"}}"),
        format!("a%3D{pc}"),
        format!("a-{pc}"),
        format!("x{pc}"),
        pc[..40].to_owned(),
    ] {
        let resp = key_sent("k".into(), "k".into(), other.clone())
            .await
            .unwrap();
        assert_eq!(resp.text().await.unwrap(), "k k none", "{other}");
    }
    let resp = key_sent("k".into(), "k".into(), "npc_id=3".into())
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "k k npc_id=3", "not a token");
    let resp = key_sent(pc.to_owned(), s.owner_token.clone(), format!("x {pc}"))
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "none none none");
    let resp = key_sent("k1".into(), "k2".into(), s.owner_token.clone())
        .await
        .unwrap();
    assert_eq!(
        resp.text().await.unwrap(),
        format!("k1 k2 {}", s.owner_token),
        "only credential-named headers are looked up in the token store"
    );
    // More words to look up than a request may cost: removed unchecked.
    let many = (0..20)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let resp = key_sent(many.clone(), "k2".into(), "o".into())
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "none none o");
    // A token PiCloud does not know is the script's own business.
    let resp = s
        .client
        .get(s.url("/run/shop/snoop"))
        .bearer_auth("their-own-api-key")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "Bearer their-own-api-key");
    // The session cookie never reaches a script; other cookies do.
    s.deploy("shop", "cookies", r#"request.headers.cookie ?? "none""#)
        .await;
    for (sent, seen) in [
        ("picloud_session=secret; theme=dark", "theme=dark"),
        ("a=1;picloud_session=secret;b=2", "a=1; b=2"),
        ("picloud_session=secret", "none"),
    ] {
        let resp = s
            .client
            .get(s.url("/run/shop/cookies"))
            .header("cookie", sent)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.text().await.unwrap(), seen, "{sent}");
    }
}

async fn limits_that_break_a_live_script_are_refused(s: TestServer) {
    s.create_app("shop").await;
    s.deploy("shop", "two", "fn a() { 1 } fn b() { 2 } a() + b()")
        .await;
    let (status, body) = s
        .call(
            Method::PUT,
            "/api/v1/admin/apps/shop/limits",
            Some(&s.owner_token),
            Some(json!({ "max_functions": 1 })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"].as_str().unwrap().contains("two"), "{body}");
    let (_, limits) = s
        .get("/api/v1/admin/apps/shop/limits", &s.owner_token)
        .await;
    assert_eq!(limits["max_functions"], 256, "nothing changed");
    let (status, _, body) = s.run(Method::GET, "/run/shop/two", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "3"));
}

async fn scripts_survive_a_restart(s: TestServer) {
    let Some(url) = s.database_url.clone() else {
        return; // Only PostgreSQL persists.
    };
    s.create_app("shop").await;
    s.deploy("shop", "hello", HELLO).await;
    s.deploy("shop", "count", COUNT_ARGS).await;
    let token = s.owner_token.clone();
    s.shutdown().await;
    let s = TestServer::start_with_token(Some(url), token).await;
    let (status, _, body) = s.run(Method::GET, "/run/shop/hello?name=again", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hello, again!"));
    let (_, _, body) = s.run(Method::GET, "/run/shop/count?a=1&b=2", None).await;
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["count"], 2);
}

on_both_stores!(
    every_output_form,
    compile_errors_are_422_with_line_and_column_and_store_nothing,
    runtime_errors_are_500_json_with_the_line,
    redeploy_is_live_at_once_and_rollback_restores_with_logs_kept,
    viewers_read_editors_deploy_and_only_app_admins_set_limits,
    app_limits_apply_to_the_next_invocation,
    scripts_cannot_break_framing_or_read_picloud_tokens,
    limits_that_break_a_live_script_are_refused,
    scripts_survive_a_restart,
);
