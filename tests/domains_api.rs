//! End-to-end: custom domains over HTTP, on both stores. Register, list and
//! delete; one owner per name; every bad form a 422; Host routing (a script
//! and its rest path, `/async`, nothing else on that host, the port
//! ignored, cookies left as the script set them); other hosts fall through;
//! after a delete nothing routes and Caddy's `ask` is 404.

#[macro_use]
mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::TestServer;

on_both_stores!(
    domains_are_registered_listed_and_deleted,
    a_hostname_has_one_owner,
    every_bad_form_is_a_422,
    a_domain_serves_only_its_apps_scripts,
    other_hosts_fall_through,
    after_a_delete_nothing_routes_and_ask_is_404,
    readers_list_and_editors_change,
);

fn domains(app: &str) -> String {
    format!("/api/v1/admin/apps/{app}/domains")
}

async fn add(s: &TestServer, app: &str, hostname: &str) -> (StatusCode, Value) {
    s.post(
        &domains(app),
        &s.owner_token,
        json!({ "hostname": hostname }),
    )
    .await
}

/// `method path` with `Host: host`: status, headers and body text.
async fn on_host(
    s: &TestServer,
    method: Method,
    host: &str,
    path: &str,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let resp = s
        .client
        .request(method, s.url(path))
        .header("host", host)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

async fn ask(s: &TestServer, domain: &str) -> StatusCode {
    s.client
        .get(s.url(&format!("/internal/tls-ask?domain={domain}")))
        .send()
        .await
        .unwrap()
        .status()
}

async fn domains_are_registered_listed_and_deleted(s: TestServer) {
    s.create_app("shop").await;
    let (status, body) = add(&s, "shop", "Shop.Example.TEST").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["hostname"], "shop.example.test");
    let (status, body) = add(&s, "shop", "www.shop.example.test").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, list) = s.get(&domains("shop"), &s.owner_token).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["hostname"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["shop.example.test", "www.shop.example.test"]);
    for _ in 0..2 {
        let (status, _) = s
            .delete(
                &format!("{}/SHOP.example.test", domains("shop")),
                &s.owner_token,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    let (_, list) = s.get(&domains("shop"), &s.owner_token).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (status, _) = s.get(&domains("nope"), &s.owner_token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn a_hostname_has_one_owner(s: TestServer) {
    s.create_app("one").await;
    s.create_app("two").await;
    assert_eq!(
        add(&s, "one", "api.example.test").await.0,
        StatusCode::CREATED
    );
    for (app, name) in [
        ("two", "api.example.test"),
        ("two", "API.EXAMPLE.test"),
        ("one", "api.example.test"),
    ] {
        let (status, body) = add(&s, app, name).await;
        assert_eq!(status, StatusCode::CONFLICT, "{app} {name}: {body}");
        assert!(body["error"].as_str().unwrap().contains("taken"), "{body}");
    }
    // The other app's delete leaves it alone.
    let (status, _) = s
        .delete(
            &format!("{}/api.example.test", domains("two")),
            &s.owner_token,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(ask(&s, "api.example.test").await, StatusCode::OK);
}

async fn every_bad_form_is_a_422(s: TestServer) {
    s.create_app("bad").await;
    let long_label = format!("{}.example.test", "a".repeat(64));
    let long_name = format!("{}.test", ["abcdefghi"; 26].join("."));
    for bad in [
        "shop.example.test:8443",
        "127.0.0.1",
        "[::1]",
        "shop_1.example.test",
        "shop..example.test",
        long_label.as_str(),
        long_name.as_str(),
        "shop.example.test.",
        "shop example.test",
        "",
        "localhost",
    ] {
        let (status, body) = add(&s, "bad", bad).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}: {body}");
        assert!(body["error"].is_string());
    }
    let (_, list) = s.get(&domains("bad"), &s.owner_token).await;
    assert_eq!(list, json!([]));
}

async fn a_domain_serves_only_its_apps_scripts(s: TestServer) {
    s.create_app("shop").await;
    s.deploy(
        "shop",
        "hello",
        r#"response(200, #{ path: request.path, x: request.query.x ?? () }, #{ "set-cookie": "sid=1; Path=/" })"#,
    )
    .await;
    assert_eq!(
        add(&s, "shop", "shop.example.test").await.0,
        StatusCode::CREATED
    );
    // A script and its rest path, the port in Host ignored.
    for host in [
        "shop.example.test",
        "shop.example.test:8443",
        "SHOP.example.test",
    ] {
        let (status, headers, body) = on_host(&s, Method::GET, host, "/hello/a/b?x=1").await;
        assert_eq!(status, StatusCode::OK, "{host}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body, json!({ "path": "/a/b", "x": "1" }));
        // The app has this origin to itself: its cookie stays at `/`.
        let cookie = headers.get("set-cookie").unwrap().to_str().unwrap();
        assert!(
            cookie.contains("Path=/") && !cookie.contains("/run/"),
            "{cookie}"
        );
    }
    let (status, _, body) = on_host(&s, Method::GET, "shop.example.test", "/hello").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["path"], "/");
    // /async too.
    let (status, _, body) = on_host(&s, Method::POST, "shop.example.test", "/async/hello/x").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // Nothing else exists on that host: the admin API, the probes, the
    // dashboard, /run itself.
    for path in [
        "/",
        "/api/v1/admin/apps",
        "/api/v1/openapi.json",
        "/healthz",
        "/dashboard",
        "/run/shop/hello",
        "/internal/tls-ask?domain=shop.example.test",
        "/nothing",
    ] {
        let (status, _, body) = on_host(&s, Method::GET, "shop.example.test", path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert!(
            serde_json::from_str::<Value>(&body).unwrap()["error"].is_string(),
            "{path}: {body}"
        );
    }
    // On the instance's own host, the same script keeps its /run address
    // and its cookie is confined there.
    let resp = s.client.get(s.url("/run/shop/hello")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let cookie = resp.headers().get("set-cookie").unwrap().to_str().unwrap();
    assert!(cookie.contains("Path=/run/shop"), "{cookie}");
}

async fn other_hosts_fall_through(s: TestServer) {
    s.create_app("shop").await;
    s.deploy("shop", "hello", r#""hi""#).await;
    add(&s, "shop", "shop.example.test").await;
    for host in ["other.example.test", "127.0.0.1", "localhost:8080"] {
        let (status, _, body) = on_host(&s, Method::GET, host, "/run/shop/hello").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "hi"), "{host}");
        let (status, _, _) = on_host(&s, Method::GET, host, "/healthz").await;
        assert_eq!(status, StatusCode::OK, "{host}");
    }
}

async fn after_a_delete_nothing_routes_and_ask_is_404(s: TestServer) {
    s.create_app("gone").await;
    s.deploy("gone", "hello", r#""hi""#).await;
    add(&s, "gone", "gone.example.test").await;
    add(&s, "gone", "also.example.test").await;
    assert_eq!(ask(&s, "gone.example.test").await, StatusCode::OK);
    assert_eq!(ask(&s, "GONE.example.test").await, StatusCode::OK);
    assert_eq!(ask(&s, "never.example.test").await, StatusCode::NOT_FOUND);
    let (status, _, _) = on_host(&s, Method::GET, "gone.example.test", "/hello").await;
    assert_eq!(status, StatusCode::OK);
    s.delete(
        &format!("{}/gone.example.test", domains("gone")),
        &s.owner_token,
    )
    .await;
    assert_eq!(ask(&s, "gone.example.test").await, StatusCode::NOT_FOUND);
    // The host now falls through to the instance's routes: /hello is no
    // script there (the dashboard's page, if anything), /async/hello is 404.
    let (_, _, body) = on_host(&s, Method::GET, "gone.example.test", "/hello").await;
    assert_ne!(body, "hi");
    let (status, _, _) = on_host(&s, Method::POST, "gone.example.test", "/async/hello").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Deleting the app takes its other domain with it.
    assert_eq!(ask(&s, "also.example.test").await, StatusCode::OK);
    let (status, _) = s.delete("/api/v1/admin/apps/gone", &s.owner_token).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(ask(&s, "also.example.test").await, StatusCode::NOT_FOUND);
    // A missing domain parameter is a 400.
    let status = s
        .client
        .get(s.url("/internal/tls-ask"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn readers_list_and_editors_change(s: TestServer) {
    s.create_app("perm").await;
    let (viewer, viewer_token) = s.user("vic", "member").await;
    let (editor, editor_token) = s.user("eve", "member").await;
    s.grant("perm", &viewer, "viewer").await;
    s.grant("perm", &editor, "editor").await;
    let body = json!({ "hostname": "perm.example.test" });
    let (status, _) = s.post(&domains("perm"), &viewer_token, body.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = s.post(&domains("perm"), &editor_token, body).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, list) = s.get(&domains("perm"), &viewer_token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (status, _) = s
        .delete(
            &format!("{}/perm.example.test", domains("perm")),
            &viewer_token,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A bad name from someone who may not add one is a 403, not a 422.
    let (status, _) = s
        .post(
            &domains("perm"),
            &viewer_token,
            json!({ "hostname": "bad_name" }),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
