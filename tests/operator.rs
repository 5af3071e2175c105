//! End-to-end, on both stores: what a new operator hit (the operator
//! issue), each asserting the fixed behaviour: deleting and renaming apps,
//! deleting scripts, the deploy checks (content type, empty source,
//! unchanged source, strict variables, the name rule), `PATCH` of limits
//! (also under racing clients), token expiry, passwords for the bootstrap
//! owner and oneself, and the clearer 404s.

mod support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::TestServer;

/// Deploys `source` with a chosen content type (`None`: no header).
async fn deploy_typed(
    s: &TestServer,
    app: &str,
    name: &str,
    content_type: Option<&str>,
    source: &str,
) -> (StatusCode, Value) {
    let mut req = s
        .client
        .put(s.url(&format!("/api/v1/admin/apps/{app}/scripts/{name}")))
        .bearer_auth(&s.owner_token)
        .body(source.to_owned());
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn versions(s: &TestServer, app: &str, name: &str) -> usize {
    let (status, body) = s
        .get(
            &format!("/api/v1/admin/apps/{app}/scripts/{name}"),
            &s.owner_token,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["versions"].as_array().unwrap().len()
}

async fn deleting_an_app_takes_everything_and_needs_app_admin(s: TestServer) {
    s.create_app("shop").await;
    s.create_app("other").await;
    let (editor, editor_token) = s.user("eddie", "member").await;
    let (admin, admin_token) = s.user("ada", "member").await;
    s.grant("shop", &editor, "editor").await;
    s.grant("shop", &admin, "app_admin").await;
    s.deploy("shop", "hello", r#""hi""#).await;
    s.deploy("other", "hello", r#""other hi""#).await;
    assert_eq!(s.run(Method::GET, "/run/shop/hello", None).await.0, 200);
    // Let the invocation record land, so the delete has logs to take.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // An editor may not delete the app (403), nor may an anonymous caller.
    let (status, body) = s.delete("/api/v1/admin/apps/shop", &editor_token).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = s
        .call(Method::DELETE, "/api/v1/admin/apps/shop", None, None)
        .await;
    assert_eq!(status, 401);
    // An app admin may.
    let (status, body) = s.delete("/api/v1/admin/apps/shop", &admin_token).await;
    assert_eq!(status, 204, "{body}");

    // Gone everywhere, at once: the app, its endpoint, its scripts; and a
    // second delete is a 404.
    let (status, body) = s.get("/api/v1/admin/apps/shop", &s.owner_token).await;
    assert_eq!(status, 404, "{body}");
    let (status, _, body) = s.run(Method::GET, "/run/shop/hello", None).await;
    assert_eq!(status, 404);
    assert!(body.contains("no app shop"), "{body}");
    let (status, _) = s.delete("/api/v1/admin/apps/shop", &s.owner_token).await;
    assert_eq!(status, 404);
    let (_, apps) = s.get("/api/v1/admin/apps", &s.owner_token).await;
    let slugs: Vec<&str> = apps
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["other"]);
    // The other app is untouched.
    let (status, _, body) = s.run(Method::GET, "/run/other/hello", None).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "other hi"));
    // The slug is free again, and the new app starts empty.
    s.create_app("shop").await;
    let (status, body) = s
        .get("/api/v1/admin/apps/shop/scripts", &s.owner_token)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body, json!([]));
    assert_eq!(s.run(Method::GET, "/run/shop/hello", None).await.0, 404);
    // Its former members are not members of the new app.
    let (status, _) = s.get("/api/v1/admin/apps/shop", &admin_token).await;
    assert_eq!(status, 403);
}

async fn deleting_a_script_needs_app_edit_and_stops_its_endpoint(s: TestServer) {
    s.create_app("shop").await;
    let (viewer, viewer_token) = s.user("vera", "member").await;
    let (editor, editor_token) = s.user("eddie", "member").await;
    s.grant("shop", &viewer, "viewer").await;
    s.grant("shop", &editor, "editor").await;
    s.deploy("shop", "rt", r#""rt""#).await;
    let path = "/api/v1/admin/apps/shop/scripts/rt";
    assert_eq!(s.delete(path, &viewer_token).await.0, 403);
    assert_eq!(s.run(Method::GET, "/run/shop/rt", None).await.0, 200);
    assert_eq!(s.delete(path, &editor_token).await.0, 204);
    let (status, _, body) = s.run(Method::GET, "/run/shop/rt", None).await;
    assert_eq!(status, 404);
    assert!(body.contains("no script rt in app shop"), "{body}");
    assert_eq!(s.get(path, &s.owner_token).await.0, 404);
    // Idempotent.
    assert_eq!(s.delete(path, &editor_token).await.0, 204);
}

async fn renaming_an_app_keeps_its_slug_and_needs_app_admin(s: TestServer) {
    let id = s.create_app("shop").await;
    let (editor, editor_token) = s.user("eddie", "member").await;
    s.grant("shop", &editor, "editor").await;
    s.deploy("shop", "hello", r#""hi""#).await;
    let path = "/api/v1/admin/apps/shop";
    let (status, _) = s
        .patch(path, &editor_token, json!({ "name": "Nope" }))
        .await;
    assert_eq!(status, 403);
    let (status, body) = s
        .patch(path, &s.owner_token, json!({ "name": "Shop (EU)" }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "Shop (EU)");
    assert_eq!(body["slug"], "shop");
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["my_role"], "app_admin");
    let (_, body) = s
        .get(&format!("/api/v1/admin/apps/{id}"), &s.owner_token)
        .await;
    assert_eq!(body["name"], "Shop (EU)");
    assert_eq!(s.run(Method::GET, "/run/shop/hello", None).await.0, 200);
    // Bad names and unknown fields are 422 and change nothing.
    for bad in [
        json!({ "name": "   " }),
        json!({ "name": "x", "slug": "y" }),
    ] {
        let (status, body) = s.patch(path, &s.owner_token, bad).await;
        assert_eq!(status, 422, "{body}");
    }
    let (_, body) = s.get(path, &s.owner_token).await;
    assert_eq!(body["name"], "Shop (EU)");
    let (status, _) = s
        .patch(
            "/api/v1/admin/apps/nope",
            &s.owner_token,
            json!({ "name": "x" }),
        )
        .await;
    assert_eq!(status, 404);
}

async fn deploys_check_the_content_type_the_source_and_identical_uploads(s: TestServer) {
    s.create_app("shop").await;
    let source = "// greets\nlet who = request.query.name ?? \"world\";\n`hello ${who}`\n";
    // JSON and the form encoding (`curl -d`, a bare `--data-binary`) are 415,
    // with the way to do it in the message; nothing is stored.
    for ct in [
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let (status, body) = deploy_typed(&s, "shop", "hello", Some(ct), source).await;
        assert_eq!(status, 415, "{ct}: {body}");
        let message = body["error"].as_str().unwrap();
        assert!(message.contains("--data-binary"), "{message}");
        assert!(message.contains("picloud deploy"), "{message}");
    }
    let (status, _) = s
        .get("/api/v1/admin/apps/shop/scripts/hello", &s.owner_token)
        .await;
    assert_eq!(status, 404);
    // What `curl -d @file` did: the newlines stripped, so the leading
    // comment swallows the whole script. Refused, even as text/plain.
    let mangled = source.replace('\n', "");
    let (status, body) = deploy_typed(&s, "shop", "hello", Some("text/plain"), &mangled).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("no statements"),
        "{body}"
    );
    // Empty, or only white space: 422.
    for empty in ["", " \n\t"] {
        let (status, body) = deploy_typed(&s, "shop", "hello", Some("text/plain"), empty).await;
        assert_eq!(status, 422, "{body}");
        assert!(body["error"].as_str().unwrap().contains("empty"), "{body}");
    }
    // Each accepted type, and none at all.
    let (status, body) = deploy_typed(&s, "shop", "hello", None, source).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["unchanged"], false);
    assert_eq!(body["live_version"], 1);
    for (i, ct) in [
        "text/plain; charset=utf-8",
        "application/x-rhai",
        "TEXT/X-RHAI",
        "application/octet-stream",
    ]
    .into_iter()
    .enumerate()
    {
        let changed = format!("{source}// v{}\n", i + 2);
        let (status, body) = deploy_typed(&s, "shop", "hello", Some(ct), &changed).await;
        assert_eq!(status, 200, "{ct}: {body}");
        assert_eq!(body["live_version"], i + 2, "{ct}");
        assert_eq!(body["unchanged"], false);
    }
    assert_eq!(versions(&s, "shop", "hello").await, 5);
    // The live version's own source again: 200, the same version,
    // `unchanged`, and no new version.
    let live = format!("{source}// v5\n");
    let (status, body) = deploy_typed(&s, "shop", "hello", Some("text/plain"), &live).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["unchanged"], true);
    assert_eq!(body["live_version"], 5);
    assert_eq!(body["latest_version"], 5);
    assert_eq!(versions(&s, "shop", "hello").await, 5);
    // After a rollback, the live version is the one compared against.
    let (status, _) = s
        .post(
            "/api/v1/admin/apps/shop/scripts/hello/rollback",
            &s.owner_token,
            json!({ "version": 1 }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = deploy_typed(&s, "shop", "hello", None, source).await;
    assert_eq!((status.as_u16(), &body["unchanged"]), (200, &json!(true)));
    assert_eq!(body["live_version"], 1);
    let (status, body) = deploy_typed(&s, "shop", "hello", None, &live).await;
    assert_eq!((status.as_u16(), &body["unchanged"]), (200, &json!(false)));
    assert_eq!(body["live_version"], 6);
    let (_, _, text) = s.run(Method::GET, "/run/shop/hello?name=ada", None).await;
    assert_eq!(text, "hello ada");
}

async fn undefined_variables_and_bad_names_are_refused_at_deploy(s: TestServer) {
    s.create_app("shop").await;
    let (status, body) = s.deploy("shop", "typo", "let x = 1;\nfoo + x").await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("foo"), "{body}");
    assert_eq!(body["line"], 2);
    assert_eq!(body["column"], 1);
    // `request`, locals, function parameters and global constants (through
    // `global::`) are all defined.
    let fine = "const K = 2;\nfn twice(n) { let m = n * global::K; m }\nlet p = request.path;\ntwice(p.len())";
    let (status, body) = s.deploy("shop", "fine", fine).await;
    assert_eq!(status, 201, "{body}");
    let (_, _, text) = s.run(Method::GET, "/run/shop/fine/abc", None).await;
    assert_eq!(text, "8");
    // A function cannot see the script's variables: refused too.
    let (status, body) = s
        .deploy("shop", "scoped", "let secret = 1;\nfn f() { secret }\nf()")
        .await;
    assert_eq!(status, 422, "{body}");
    // Script names: lowercase a-z0-9_-, 1–63, starting with a letter.
    for bad in ["Hello_World", "2fast", "_x", "-x", &"a".repeat(64)] {
        let (status, body) = s.deploy("shop", bad, "1").await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("lowercase"),
            "{body}"
        );
    }
    for good in ["hello_world", "a", "x-2", &"a".repeat(63)] {
        let (status, body) = s.deploy("shop", good, "1").await;
        assert_eq!(status, 201, "{good}: {body}");
    }
}

async fn patching_limits_changes_only_the_fields_sent(s: TestServer) {
    s.create_app("shop").await;
    let path = "/api/v1/admin/apps/shop/limits";
    let (status, defaults) = s.get(path, &s.owner_token).await;
    assert_eq!(status, 200);
    let (status, body) = s
        .call(
            Method::PUT,
            path,
            Some(&s.owner_token),
            Some(json!({ "max_operations": 1000 })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = s
        .patch(path, &s.owner_token, json!({ "wall_clock_ms": 2500 }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["wall_clock_ms"], 2500);
    assert_eq!(
        body["max_operations"], 1000,
        "PATCH kept the field not sent"
    );
    assert_eq!(body["max_call_depth"], defaults["max_call_depth"]);
    // An unknown field, a wrong type or a value out of range: 422, nothing
    // changes; the messages name the field.
    for (bad, field) in [
        (json!({ "wall_clock": 1 }), "wall_clock"),
        (json!({ "max_operations": "many" }), "many"),
        (json!({ "max_operations": 0 }), "max_operations"),
    ] {
        let (status, body) = s.patch(path, &s.owner_token, bad.clone()).await;
        assert_eq!(status, 422, "{bad}: {body}");
        let message = body["error"].as_str().unwrap();
        assert!(message.contains(field), "{bad}: {message}");
        assert!(!message.contains(" at line "), "{message}");
    }
    let (_, now) = s.get(path, &s.owner_token).await;
    assert_eq!(
        (&now["wall_clock_ms"], &now["max_operations"]),
        (&json!(2500), &json!(1000))
    );
    // An editor may not.
    let (editor, editor_token) = s.user("eddie", "member").await;
    s.grant("shop", &editor, "editor").await;
    let (status, _) = s
        .patch(path, &editor_token, json!({ "wall_clock_ms": 100 }))
        .await;
    assert_eq!(status, 403);

    // Racing clients, each patching a field of its own: every change holds.
    let fields = [
        ("max_call_depth", 40),
        ("max_expr_depth", 50),
        ("max_function_expr_depth", 30),
        ("max_string_bytes", 4096),
        ("max_array_len", 500),
        ("max_map_len", 600),
        ("max_variables", 100),
        ("max_functions", 20),
        ("max_output_bytes", 2048),
        ("max_memory_bytes", 1 << 20),
    ];
    let racers: Vec<_> = fields
        .iter()
        .map(|&(field, value)| {
            let client = s.client.clone();
            let url = s.url(path);
            let token = s.owner_token.clone();
            tokio::spawn(async move {
                let resp = client
                    .patch(url)
                    .bearer_auth(token)
                    .json(&json!({ field: value }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200, "{field}");
            })
        })
        .collect();
    for r in racers {
        r.await.unwrap();
    }
    let (_, after) = s.get(path, &s.owner_token).await;
    for (field, value) in fields {
        assert_eq!(after[field], value, "{field} was lost: {after}");
    }
    assert_eq!(after["wall_clock_ms"], 2500);
    assert_eq!(after["max_operations"], 1000);
}

async fn tokens_can_expire(s: TestServer) {
    let (status, body) = s
        .post(
            "/api/v1/admin/tokens",
            &s.owner_token,
            json!({ "name": "short", "expires_in": 1 }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let expires: chrono::DateTime<chrono::Utc> =
        body["expires_at"].as_str().unwrap().parse().unwrap();
    let left = expires - chrono::Utc::now();
    assert!(
        left <= chrono::Duration::seconds(1) && left > chrono::Duration::milliseconds(-500),
        "{left}"
    );
    assert_eq!(s.get("/api/v1/admin/apps", &token).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(s.get("/api/v1/admin/apps", &token).await.0, 401);
    // A long one, and none: fine. Zero, or more than ten years: 422.
    let (status, body) = s
        .post(
            "/api/v1/admin/tokens",
            &s.owner_token,
            json!({ "name": "year", "expires_in": 31_536_000 }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert!(body["expires_at"].is_string());
    for bad in [json!(0), json!(316_224_001), json!(-5), json!("soon")] {
        let (status, body) = s
            .post(
                "/api/v1/admin/tokens",
                &s.owner_token,
                json!({ "name": "bad", "expires_in": bad }),
            )
            .await;
        assert_eq!(status, 422, "{bad}: {body}");
    }
}

/// `PUT /admin/me/password` with `token`; returns the status.
async fn put_password(s: &TestServer, token: &str, body: Value) -> StatusCode {
    s.call(
        Method::PUT,
        "/api/v1/admin/me/password",
        Some(token),
        Some(body),
    )
    .await
    .0
}

async fn the_bootstrap_owner_sets_a_first_password_then_changes_it(s: TestServer) {
    // `admin` has no password: login fails whatever is sent.
    let login = |password: &'static str| {
        s.call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({ "username": "admin", "password": password })),
        )
    };
    assert_eq!(login("first password!").await.0, 401);
    // Too short: 422.
    let status = put_password(&s, &s.owner_token, json!({ "new_password": "short" })).await;
    assert_eq!(status, 422);
    // A first password needs no current one.
    let status = put_password(
        &s,
        &s.owner_token,
        json!({ "new_password": "first password!" }),
    )
    .await;
    assert_eq!(status, 204);
    let (status, body) = login("first password!").await;
    assert_eq!(status, 200, "{body}");
    // From now on the current password is required, and must be right.
    let status = put_password(
        &s,
        &s.owner_token,
        json!({ "new_password": "second password" }),
    )
    .await;
    assert_eq!(status, 422);
    let status = put_password(
        &s,
        &s.owner_token,
        json!({ "current_password": "wrong password", "new_password": "second password" }),
    )
    .await;
    assert_eq!(status, 401);
    let status = put_password(
        &s,
        &s.owner_token,
        json!({ "current_password": "first password!", "new_password": "second password" }),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(login("first password!").await.0, 401);
    assert_eq!(login("second password").await.0, 200);
    // The bootstrap token still works; a token scoped to an app may not
    // change the password.
    s.create_app("shop").await;
    let (_, scoped) = s
        .post(
            "/api/v1/admin/tokens",
            &s.owner_token,
            json!({ "name": "ci", "app": "shop" }),
        )
        .await;
    let status = put_password(
        &s,
        scoped["token"].as_str().unwrap(),
        json!({ "current_password": "second password", "new_password": "third password" }),
    )
    .await;
    assert_eq!(status, 403);
    // A member changes their own.
    let (_, member_token) = s.user("mia", "member").await;
    let status = put_password(
        &s,
        &member_token,
        json!({ "current_password": "correct horse battery", "new_password": "battery staple!" }),
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = s
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({ "username": "mia", "password": "battery staple!" })),
        )
        .await;
    assert_eq!(status, 200);
}

async fn not_found_says_what_is_missing_and_the_root_answers(s: TestServer) {
    s.create_app("shop").await;
    let (status, _, body) = s.run(Method::GET, "/run/nope/hello", None).await;
    assert_eq!(status, 404);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "no app nope"
    );
    let (status, _, body) = s.run(Method::GET, "/run/shop/hello", None).await;
    assert_eq!(status, 404);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "no script hello in app shop"
    );
    // The root is the dashboard (tests/dashboard_serving.rs).
    let (status, ct, body) = s.run(Method::GET, "/", None).await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/html"), "{ct}");
    assert!(
        body.contains("<!doctype html>") || body.contains("<!DOCTYPE html>"),
        "{body}"
    );
}

/// The newest invocations of `app`, with the query string `query`.
async fn app_invocations(s: &TestServer, app: &str, query: &str) -> Vec<Value> {
    let (status, body) = s
        .get(
            &format!("/api/v1/admin/apps/{app}/invocations?{query}"),
            &s.owner_token,
        )
        .await;
    assert_eq!(status, 200, "{query}: {body}");
    body.as_array().unwrap().clone()
}

/// Polls until `app`'s invocations with `query` number `n` (the writer
/// batches; a record is readable within a second).
async fn until_invocations(s: &TestServer, app: &str, query: &str, n: usize) -> Vec<Value> {
    let started = std::time::Instant::now();
    loop {
        let found = app_invocations(s, app, query).await;
        if found.len() >= n {
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{:?}",
                started.elapsed()
            );
            return found;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{query}: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn invocation_records_say_which_request_and_where_it_failed(s: TestServer) {
    s.create_app("shop").await;
    s.create_app("other").await;
    s.deploy("shop", "ok", r#"print("hi " + request.path); "fine""#)
        .await;
    s.deploy(
        "shop",
        "bad",
        "let a = 1;\nlet n = parse_int(request.query.n);\nn",
    )
    .await;
    s.deploy("other", "ok", r#""other""#).await;
    // A request id of the caller's own is kept; without one, the generated
    // one the response carries is.
    let resp = s
        .client
        .get(s.url("/run/shop/ok/some/where?x=1&y=two%20words"))
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-abc-123");
    let resp = s
        .client
        .post(s.url("/run/shop/bad?n=abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    let generated = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    s.run(Method::GET, "/run/other/ok", None).await;

    let all = until_invocations(&s, "shop", "", 2).await;
    assert_eq!(all.len(), 2, "only this app's: {all:?}");
    let bad = &all[0];
    assert_eq!(bad["script"], "bad");
    assert_eq!(bad["status"], 500);
    assert_eq!(bad["request_id"], generated.as_str());
    assert_eq!(bad["trigger"], "http");
    assert_eq!(bad["method"], "POST");
    assert_eq!(bad["path"], "/");
    assert_eq!(bad["query"], "n=abc");
    assert_eq!(
        (&bad["line"], &bad["column"]),
        (&json!(2), &json!(9)),
        "{bad}"
    );
    assert!(bad["error"].as_str().unwrap().contains("abc"), "{bad}");
    let ok = &all[1];
    assert_eq!(ok["script"], "ok");
    assert_eq!(ok["request_id"], "trace-abc-123");
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["path"], "/some/where");
    assert_eq!(ok["query"], "x=1&y=two%20words");
    assert_eq!(ok["logs"], json!(["hi /some/where"]));
    assert_eq!((&ok["line"], &ok["column"]), (&Value::Null, &Value::Null));
    // The per-script listing carries the same.
    let (_, per_script) = s
        .get(
            "/api/v1/admin/apps/shop/scripts/ok/invocations",
            &s.owner_token,
        )
        .await;
    assert_eq!(per_script[0]["request_id"], "trace-abc-123");

    // Filters: script, status, since, request id, limit.
    let by = |q: &'static str| app_invocations(&s, "shop", q);
    assert_eq!(by("script=ok").await.len(), 1);
    assert_eq!(by("status=500").await[0]["script"], "bad");
    assert!(by("status=404").await.is_empty());
    assert_eq!(by("request_id=trace-abc-123").await[0]["script"], "ok");
    assert_eq!(by("limit=1").await.len(), 1);
    let since = ok["at"].as_str().unwrap().replace('+', "%2B");
    let from_ok: Vec<Value> = app_invocations(&s, "shop", &format!("since={since}")).await;
    assert_eq!(from_ok.len(), 2);
    assert!(by("since=2999-01-01T00:00:00Z").await.is_empty());
    // Bad filters: clear 4xx, never a 500.
    for (q, status) in [
        ("script=nope", 404),
        ("script=Bad_Name", 422),
        ("status=abc", 400),
        ("since=yesterday", 400),
    ] {
        let (got, body) = s
            .get(
                &format!("/api/v1/admin/apps/shop/invocations?{q}"),
                &s.owner_token,
            )
            .await;
        assert!(got.is_client_error(), "{q}: {got} {body}");
        assert_eq!(got.as_u16() / 100, status / 100, "{q}: {body}");
    }
    // A viewer of the other app sees nothing of this one.
    let (viewer, viewer_token) = s.user("vera", "member").await;
    s.grant("other", &viewer, "viewer").await;
    let (status, _) = s
        .get("/api/v1/admin/apps/shop/invocations", &viewer_token)
        .await;
    assert_eq!(status, 403);
}

/// Opens `path` as a raw HTTP/1.1 stream with `token`; returns the reader.
async fn open_stream(
    s: &TestServer,
    path: &str,
    token: &str,
) -> tokio::io::BufReader<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let mut conn = tokio::net::TcpStream::connect(s.server.addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {token}\r\naccept: text/event-stream\r\n\r\n"
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    tokio::io::BufReader::new(conn)
}

/// Reads lines until one starts with `data:` after an `event: {event}`
/// line; returns its data.
async fn next_event_data(
    reader: &mut tokio::io::BufReader<tokio::net::TcpStream>,
    event: &str,
) -> String {
    use tokio::io::AsyncBufReadExt;
    let mut in_event = false;
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).await.unwrap();
        assert!(n > 0, "the stream ended");
        let line = line.trim_end();
        if line == format!("event: {event}") {
            in_event = true;
        } else if in_event && let Some(data) = line.strip_prefix("data: ") {
            return data.to_owned();
        }
    }
}

async fn the_log_stream_shows_each_run_within_a_second(s: TestServer) {
    s.create_app("shop").await;
    s.create_app("other").await;
    s.deploy("shop", "hello", r#"print("hello " + request.path); "hi""#)
        .await;
    s.deploy("shop", "quiet", r#""q""#).await;
    s.deploy("other", "hello", r#""other""#).await;
    let mut all = open_stream(&s, "/api/v1/admin/apps/shop/logs/stream", &s.owner_token).await;
    let mut only_hello = open_stream(
        &s,
        "/api/v1/admin/apps/shop/logs/stream?script=hello",
        &s.owner_token,
    )
    .await;
    {
        use tokio::io::AsyncBufReadExt;
        for reader in [&mut all, &mut only_hello] {
            let mut status = String::new();
            reader.read_line(&mut status).await.unwrap();
            assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        }
    }
    // Give both subscriptions a moment to be in place.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    s.run(Method::GET, "/run/other/hello", None).await;
    s.run(Method::GET, "/run/shop/quiet", None).await;
    s.run(Method::GET, "/run/shop/hello/x", None).await;
    let first: Value = serde_json::from_str(
        &tokio::time::timeout(
            Duration::from_secs(1),
            next_event_data(&mut all, "invocation"),
        )
        .await
        .expect("an event within a second"),
    )
    .unwrap();
    assert_eq!(first["script"], "quiet", "the other app's run is not shown");
    let second: Value =
        serde_json::from_str(&next_event_data(&mut all, "invocation").await).unwrap();
    assert_eq!(second["script"], "hello");
    assert_eq!(second["logs"], json!(["hello /x"]));
    assert_eq!(second["path"], "/x");
    let filtered: Value = serde_json::from_str(
        &tokio::time::timeout(
            Duration::from_secs(1),
            next_event_data(&mut only_hello, "invocation"),
        )
        .await
        .expect("an event within a second"),
    )
    .unwrap();
    assert_eq!(filtered["script"], "hello");
    assert!(started.elapsed() < Duration::from_secs(1));

    // Who may follow: AppView; not a stranger, not an unknown script.
    let (_, stranger) = s.user("sam", "member").await;
    let (status, _) = s
        .get("/api/v1/admin/apps/shop/logs/stream", &stranger)
        .await;
    assert_eq!(status, 403);
    let (status, _) = s
        .get(
            "/api/v1/admin/apps/shop/logs/stream?script=nope",
            &s.owner_token,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = s
        .call(
            Method::GET,
            "/api/v1/admin/apps/shop/logs/stream",
            None,
            None,
        )
        .await;
    assert_eq!(status, 401);
}

async fn generic_public_errors_keep_the_detail_in_the_log(s: TestServer) {
    s.create_app("shop").await;
    s.deploy("shop", "bad", "let n = parse_int(request.query.n);\nn")
        .await;
    s.deploy("shop", "spin", "loop {}").await;
    let settings = "/api/v1/admin/apps/shop/settings";
    let (status, body) = s.get(settings, &s.owner_token).await;
    assert_eq!(
        (status.as_u16(), body),
        (
            200,
            json!({ "public_errors": "detailed", "egress_hosts": null })
        )
    );
    // Detailed, the default: the error text and the line.
    let (status, _, body) = s.run(Method::GET, "/run/shop/bad?n=abc", None).await;
    assert_eq!(status, 500);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert!(body["error"].as_str().unwrap().contains("abc"), "{body}");
    assert_eq!(body["line"], 1);
    // Who may change it: an app admin; an editor may read it only.
    let (editor, editor_token) = s.user("eddie", "member").await;
    s.grant("shop", &editor, "editor").await;
    assert_eq!(s.get(settings, &editor_token).await.0, 200);
    let (status, _) = s
        .patch(
            settings,
            &editor_token,
            json!({ "public_errors": "generic" }),
        )
        .await;
    assert_eq!(status, 403);
    // An empty PATCH is still an admin's act.
    assert_eq!(s.patch(settings, &editor_token, json!({})).await.0, 403);
    assert_eq!(s.patch(settings, &s.owner_token, json!({})).await.0, 200);
    for bad in [json!({ "public_errors": "none" }), json!({ "nope": 1 })] {
        let (status, body) = s.patch(settings, &s.owner_token, bad.clone()).await;
        assert_eq!(status, 422, "{bad}: {body}");
    }
    let (status, body) = s
        .patch(
            settings,
            &s.owner_token,
            json!({ "public_errors": "generic" }),
        )
        .await;
    assert_eq!(
        (status.as_u16(), &body["public_errors"]),
        (200, &json!("generic"))
    );
    // Generic: "script error" and the request id, nothing more; the same
    // status; the record keeps the detail.
    let resp = s
        .client
        .get(s.url("/run/shop/bad?n=abc"))
        .header("x-request-id", "find-me")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body,
        json!({ "error": "script error", "request_id": "find-me" })
    );
    let resp = s.client.get(s.url("/run/shop/spin")).send().await.unwrap();
    assert_eq!(resp.status(), 504);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body, json!({ "error": "script error", "request_id": id }));
    // An inbound id too long to keep whole is replaced: the id answered
    // is the one its record has.
    let resp = s
        .client
        .get(s.url("/run/shop/bad?n=abc"))
        .header("x-request-id", "z".repeat(300))
        .send()
        .await
        .unwrap();
    let long_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(
        long_id.len() <= 128 && long_id != "z".repeat(300),
        "{long_id}"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["request_id"], long_id.as_str());
    until_invocations(&s, "shop", &format!("request_id={long_id}"), 1).await;
    let found = until_invocations(&s, "shop", "request_id=find-me", 1).await;
    assert!(
        found[0]["error"].as_str().unwrap().contains("abc"),
        "{found:?}"
    );
    assert_eq!(found[0]["line"], 1);
    // Unknown apps and scripts are 404s as before.
    let (status, _, _) = s.run(Method::GET, "/run/shop/nope", None).await;
    assert_eq!(status, 404);
    // Back to detailed.
    s.patch(
        settings,
        &s.owner_token,
        json!({ "public_errors": "detailed" }),
    )
    .await;
    let (_, _, body) = s.run(Method::GET, "/run/shop/bad?n=abc", None).await;
    assert!(body.contains("abc"), "{body}");
}

/// A JSON rejection names the field and why, without serde's line and
/// column (the new user saw ``missing field `instance_role` at line 1
/// column 42``).
async fn json_rejections_name_the_field_without_positions(s: TestServer) {
    for (body, field, status) in [
        (
            json!({ "username": "mia", "password": "correct horse battery" }),
            "instance_role",
            422,
        ),
        (
            json!({ "username": "mia", "password": "correct horse battery", "instance_role": "root" }),
            "root",
            422,
        ),
        (
            json!({ "username": "mia", "password": 7, "instance_role": "member" }),
            "password",
            422,
        ),
    ] {
        let (got, reply) = s
            .post("/api/v1/admin/admins", &s.owner_token, body.clone())
            .await;
        let message = reply["error"].as_str().unwrap_or_default();
        assert_eq!(got.as_u16(), status, "{body}: {reply}");
        assert!(message.contains(field), "{body}: {message}");
        assert!(
            !message.contains(" at line ") && !message.contains("column"),
            "{message}"
        );
    }
    let resp = s
        .client
        .post(s.url("/api/v1/admin/apps"))
        .bearer_auth(&s.owner_token)
        .header("content-type", "application/json")
        .body("{\"slug\": \"shop\",\n  \"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let reply: Value = resp.json().await.unwrap();
    let message = reply["error"].as_str().unwrap();
    assert!(
        !message.contains(" at line ") && !message.contains("column"),
        "{message}"
    );
}

/// The status line of a stream just opened.
async fn stream_status(reader: &mut tokio::io::BufReader<tokio::net::TcpStream>) -> u16 {
    use tokio::io::AsyncBufReadExt;
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {line:?}"))
}

/// Log streams are bounded per user (4, then 429), and each app has a
/// channel of its own: a busy app's runs never push a quiet app's out of
/// its stream, nor count in its `lagged` events.
async fn log_streams_are_bounded_per_user_and_apart_per_app(s: TestServer) {
    s.create_app("busy").await;
    s.create_app("quiet").await;
    s.deploy("busy", "spam", r#""x""#).await;
    s.deploy("quiet", "hello", r#""q""#).await;
    let path = "/api/v1/admin/apps/quiet/logs/stream";
    let mut held = Vec::new();
    for _ in 0..picloud::scripts::MAX_TAILS_PER_USER {
        let mut stream = open_stream(&s, path, &s.owner_token).await;
        assert_eq!(stream_status(&mut stream).await, 200);
        held.push(stream);
    }
    let mut refused = open_stream(&s, path, &s.owner_token).await;
    assert_eq!(stream_status(&mut refused).await, 429);
    // Another user is not held back by the first one's streams.
    let (viewer, viewer_token) = s.user("vera", "member").await;
    s.grant("quiet", &viewer, "viewer").await;
    let mut theirs = open_stream(&s, path, &viewer_token).await;
    assert_eq!(stream_status(&mut theirs).await, 200);

    // More runs of `busy` than a ring holds, then one of `quiet`: its
    // stream's next event is that run, not a `lagged` one.
    for _ in 0..(picloud::scripts::TAIL_BACKLOG + 44) {
        let (status, _, _) = s.run(Method::GET, "/run/busy/spam", None).await;
        assert_eq!(status, 200);
    }
    let (status, _, _) = s.run(Method::GET, "/run/quiet/hello", None).await;
    assert_eq!(status, 200);
    let data = tokio::time::timeout(Duration::from_secs(5), async {
        use tokio::io::AsyncBufReadExt;
        loop {
            let mut line = String::new();
            assert!(theirs.read_line(&mut line).await.unwrap() > 0, "ended");
            let line = line.trim_end().to_owned();
            assert_ne!(line, "event: lagged", "another app's runs counted here");
            if let Some(data) = line.strip_prefix("data: ") {
                return data.to_owned();
            }
        }
    })
    .await
    .expect("the quiet app's run arrived");
    let record: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(record["script"], "hello", "{record}");
    drop(held);
}

/// A stream ends at its next check (every 15 s) once its token is revoked,
/// or its user loses the role; the others go on.
async fn a_revoked_token_or_a_lost_role_ends_the_stream(s: TestServer) {
    use tokio::io::AsyncReadExt;
    s.create_app("shop").await;
    let (viewer, viewer_token) = s.user("vera", "member").await;
    s.grant("shop", &viewer, "viewer").await;
    let (other, other_token) = s.user("otto", "member").await;
    s.grant("shop", &other, "viewer").await;
    // A second token of vera's, revoked while it streams.
    let (status, issued) = s
        .post(
            "/api/v1/admin/tokens",
            &viewer_token,
            json!({ "name": "tail" }),
        )
        .await;
    assert_eq!(status, 201, "{issued}");
    let revoked = issued["token"].as_str().unwrap().to_owned();
    let path = "/api/v1/admin/apps/shop/logs/stream";
    let mut by_token = open_stream(&s, path, &revoked).await;
    let mut kept = open_stream(&s, path, &viewer_token).await;
    let mut by_role = open_stream(&s, path, &other_token).await;
    for stream in [&mut by_token, &mut kept, &mut by_role] {
        assert_eq!(stream_status(stream).await, 200);
    }
    let id = issued["id"].as_str().unwrap();
    let (status, _) = s
        .delete(&format!("/api/v1/admin/tokens/{id}"), &viewer_token)
        .await;
    assert_eq!(status, 204);
    let (status, _) = s
        .delete(
            &format!("/api/v1/admin/apps/shop/members/{other}"),
            &s.owner_token,
        )
        .await;
    assert_eq!(status, 204);
    // Both end within a check and a bit (chunked: the last chunk, then EOF).
    let wait = picloud::http::routes::logs::RECHECK_EVERY + Duration::from_secs(5);
    for stream in [&mut by_token, &mut by_role] {
        let ended = tokio::time::timeout(wait, async {
            // The connection stays open (keep-alive): the end is the last
            // chunk, `0\r\n\r\n`.
            let mut seen = Vec::new();
            let mut buf = [0_u8; 4096];
            loop {
                let n = stream.read(&mut buf).await.unwrap_or(0);
                seen.extend_from_slice(&buf[..n]);
                if n == 0 || seen.windows(7).any(|w| w == b"\r\n0\r\n\r\n") {
                    break;
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "the stream still runs");
    }
    // The viewer's own login token still follows.
    s.deploy("shop", "hello", r#""hi""#).await;
    let (status, _, _) = s.run(Method::GET, "/run/shop/hello", None).await;
    assert_eq!(status, 200);
    let data = tokio::time::timeout(
        Duration::from_secs(5),
        next_event_data(&mut kept, "invocation"),
    )
    .await
    .expect("the kept stream goes on");
    assert!(data.contains("hello"), "{data}");
}

on_both_stores!(
    a_revoked_token_or_a_lost_role_ends_the_stream,
    log_streams_are_bounded_per_user_and_apart_per_app,
    json_rejections_name_the_field_without_positions,
    private_scripts_answer_only_viewers_of_their_app,
    repeated_query_names_keep_every_value,
    generic_public_errors_keep_the_detail_in_the_log,
    invocation_records_say_which_request_and_where_it_failed,
    the_log_stream_shows_each_run_within_a_second,
    deleting_an_app_takes_everything_and_needs_app_admin,
    deleting_a_script_needs_app_edit_and_stops_its_endpoint,
    renaming_an_app_keeps_its_slug_and_needs_app_admin,
    deploys_check_the_content_type_the_source_and_identical_uploads,
    undefined_variables_and_bad_names_are_refused_at_deploy,
    patching_limits_changes_only_the_fields_sent,
    tokens_can_expire,
    the_bootstrap_owner_sets_a_first_password_then_changes_it,
    not_found_says_what_is_missing_and_the_root_answers,
);

async fn run_as(s: &TestServer, path: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut req = s.client.get(s.url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.unwrap();
    (resp.status(), resp.text().await.unwrap())
}

async fn private_scripts_answer_only_viewers_of_their_app(s: TestServer) {
    s.create_app("shop").await;
    s.create_app("other").await;
    // The script answers with the headers it sees: no token must be there.
    s.deploy("shop", "secret", "request.headers").await;
    let script = "/api/v1/admin/apps/shop/scripts/secret";
    let (status, body) = s.get(script, &s.owner_token).await;
    assert_eq!(
        (status.as_u16(), &body["visibility"]),
        (200, &json!("public"))
    );
    assert_eq!(run_as(&s, "/run/shop/secret", None).await.0, 200);

    // Who may change it: an editor of the app; a viewer may not.
    let (viewer, viewer_token) = s.user("vera", "member").await;
    s.grant("shop", &viewer, "viewer").await;
    let (editor, editor_token) = s.user("eddie", "member").await;
    s.grant("shop", &editor, "editor").await;
    let (stranger, stranger_token) = s.user("stan", "member").await;
    s.grant("other", &stranger, "app_admin").await;
    let private = json!({ "visibility": "private" });
    assert_eq!(s.patch(script, &viewer_token, private.clone()).await.0, 403);
    for bad in [json!({ "visibility": "secret" }), json!({ "nope": 1 })] {
        let (status, body) = s.patch(script, &editor_token, bad.clone()).await;
        assert_eq!(status, 422, "{bad}: {body}");
    }
    let (status, _) = s
        .patch(
            "/api/v1/admin/apps/shop/scripts/nope",
            &editor_token,
            private.clone(),
        )
        .await;
    assert_eq!(status, 404);
    let (status, body) = s.patch(script, &editor_token, private.clone()).await;
    assert_eq!(
        (status.as_u16(), &body["visibility"]),
        (200, &json!("private"))
    );
    assert_eq!(
        s.get(script, &viewer_token).await.1["visibility"],
        "private"
    );

    // No token: 401; a bad token: 401; a token without AppView here: 403.
    let resp = s
        .client
        .get(s.url("/run/shop/secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    let body = resp.text().await.unwrap();
    let body: Value = serde_json::from_str(&body).unwrap();
    assert!(body["error"].is_string(), "{body}");
    let (status, _) = run_as(&s, "/run/shop/secret", Some("pc_not_a_real_token")).await;
    assert_eq!(status, 401);
    let (status, _) = run_as(&s, "/run/shop/secret", Some(&stranger_token)).await;
    assert_eq!(status, 403);
    // A viewer, an editor and the owner get through, and the script never
    // sees the token.
    for token in [&viewer_token, &editor_token, &s.owner_token] {
        let (status, body) = run_as(&s, "/run/shop/secret/sub?x=1", Some(token)).await;
        assert_eq!(status, 200, "{body}");
        let headers: Value = serde_json::from_str(&body).unwrap();
        assert!(headers.get("authorization").is_none(), "{headers}");
        assert!(!body.contains(token.as_str()), "{body}");
    }
    // A redeploy keeps the setting; other scripts of the app stay public.
    s.deploy("shop", "secret", "request.headers.len()").await;
    assert_eq!(run_as(&s, "/run/shop/secret", None).await.0, 401);
    assert_eq!(
        run_as(&s, "/run/shop/secret", Some(&viewer_token)).await.0,
        200
    );
    s.deploy("shop", "open", "1").await;
    assert_eq!(run_as(&s, "/run/shop/open", None).await.0, 200);
    // Back to public: anyone again.
    let (status, _) = s
        .patch(script, &editor_token, json!({ "visibility": "public" }))
        .await;
    assert_eq!(status, 200);
    assert_eq!(run_as(&s, "/run/shop/secret", None).await.0, 200);
}

/// `request.query` holds each name's first value; `request.query_all` every
/// value, so a repeated name is never lost silently.
async fn repeated_query_names_keep_every_value(s: TestServer) {
    s.create_app("shop").await;
    s.deploy(
        "shop",
        "q",
        "#{ first: request.query.tag, all: request.query_all.tag, one: request.query_all.n }",
    )
    .await;
    let (status, _, body) = s
        .run(Method::GET, "/run/shop/q?tag=a&n=1&tag=b%20c&tag=", None)
        .await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body,
        json!({ "first": "a", "all": ["a", "b c", ""], "one": ["1"] })
    );
}
