//! Bad input never yields a 5xx: each malformed request gets a 4xx JSON error,
//! and the server keeps serving. Enumerated case by case.

#[macro_use]
mod support;

use reqwest::StatusCode;
use support::TestServer;

struct Case {
    name: &'static str,
    method: reqwest::Method,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    expect: StatusCode,
}

fn case(
    name: &'static str,
    method: reqwest::Method,
    path: impl Into<String>,
    content_type: Option<&'static str>,
    body: impl Into<Vec<u8>>,
    expect: StatusCode,
) -> Case {
    Case {
        name,
        method,
        path: path.into(),
        content_type,
        body: body.into(),
        expect,
    }
}

async fn every_bad_request_is_a_4xx_json_error(s: TestServer) {
    use reqwest::Method as M;
    s.create_app("shop").await;
    let mia = s.create_user("mia", "member").await;
    let members = "/api/v1/admin/apps/shop/members".to_owned();
    let json = Some("application/json");
    let good_grant = format!(r#"{{"user_id":"{mia}","role":"viewer"}}"#);
    let cases = [
        case(
            "malformed JSON",
            M::POST,
            &members,
            json,
            r#"{"user_id": "#,
            StatusCode::BAD_REQUEST,
        ),
        case(
            "not JSON at all",
            M::POST,
            &members,
            json,
            "hello",
            StatusCode::BAD_REQUEST,
        ),
        case(
            "empty body",
            M::POST,
            &members,
            json,
            "",
            StatusCode::BAD_REQUEST,
        ),
        case(
            "invalid UTF-8",
            M::POST,
            &members,
            json,
            vec![0xff, 0xfe, 0x7b],
            StatusCode::BAD_REQUEST,
        ),
        case(
            "unknown role",
            M::POST,
            &members,
            json,
            format!(r#"{{"user_id":"{mia}","role":"superuser"}}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        case(
            "role of the wrong type",
            M::POST,
            &members,
            json,
            format!(r#"{{"user_id":"{mia}","role":5}}"#),
            StatusCode::BAD_REQUEST,
        ),
        case(
            "bad UUID in the body",
            M::POST,
            &members,
            json,
            r#"{"user_id":"nope","role":"viewer"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        case(
            "missing field",
            M::POST,
            &members,
            json,
            format!(r#"{{"user_id":"{mia}"}}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        case(
            "unknown field",
            M::POST,
            &members,
            json,
            format!(r#"{{"user_id":"{mia}","role":"viewer","admin":true}}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        case(
            "an array, not an object",
            M::POST,
            &members,
            json,
            "[]",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        case(
            "is_active of the wrong type",
            M::PATCH,
            format!("/api/v1/admin/admins/{mia}"),
            json,
            r#"{"is_active":"yes"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        case(
            "wrong content type",
            M::POST,
            &members,
            Some("text/plain"),
            good_grant.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        case(
            "no content type",
            M::POST,
            &members,
            None,
            good_grant.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        case(
            "oversized body",
            M::POST,
            &members,
            json,
            format!(
                r#"{{"user_id":"{mia}","role":"viewer","pad":"{}"}}"#,
                "x".repeat(200_000)
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        case(
            "bad UUID in the path",
            M::PATCH,
            format!("{members}/not-a-uuid"),
            json,
            r#"{"role":"editor"}"#,
            StatusCode::BAD_REQUEST,
        ),
        case(
            "bad UUID in a user path",
            M::PATCH,
            "/api/v1/admin/admins/123",
            json,
            r#"{"is_active":false}"#,
            StatusCode::BAD_REQUEST,
        ),
        case(
            "unknown role on PATCH",
            M::PATCH,
            format!("{members}/{mia}"),
            json,
            r#"{"role":"root"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        case(
            "instance role of the wrong type",
            M::PATCH,
            format!("/api/v1/admin/admins/{mia}"),
            json,
            r#"{"instance_role":["owner"]}"#,
            StatusCode::BAD_REQUEST,
        ),
        case(
            "an invalid slug",
            M::POST,
            "/api/v1/admin/apps",
            json,
            r#"{"slug":"Not A Slug","name":"x"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        case(
            "a huge slug",
            M::POST,
            "/api/v1/admin/apps",
            json,
            format!(r#"{{"slug":"{}","name":"x"}}"#, "a".repeat(5000)),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        case(
            "max_role without an app",
            M::POST,
            "/api/v1/admin/tokens",
            json,
            r#"{"name":"t","max_role":"viewer"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        case(
            "unknown path",
            M::GET,
            "/api/v1/nope",
            None,
            "",
            StatusCode::NOT_FOUND,
        ),
        case(
            "method not allowed",
            M::PUT,
            &members,
            json,
            "{}",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ];
    for c in cases {
        let mut req = s
            .client
            .request(c.method.clone(), s.url(&c.path))
            .bearer_auth(&s.owner_token)
            .body(c.body.clone());
        if let Some(ct) = c.content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await.expect("sent");
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert_eq!(status, c.expect, "{}: {text}", c.name);
        let body: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{}: not JSON: {text}", c.name));
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{}: {body}",
            c.name
        );
    }
    // Nothing was lost or changed, and the server still serves.
    let (status, list) = s.get(&members, &s.owner_token).await;
    assert_eq!((status, list), (StatusCode::OK, serde_json::json!([])));
    let (status, _) = s.get("/healthz", &s.owner_token).await;
    assert_eq!(status, StatusCode::OK);
}

async fn probes_and_the_openapi_document_answer(s: TestServer) {
    let (status, body) = s.call(reqwest::Method::GET, "/healthz", None, None).await;
    assert_eq!(
        (status, &body["status"]),
        (StatusCode::OK, &serde_json::json!("ok"))
    );
    let (status, body) = s.call(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(
        (status, &body["status"]),
        (StatusCode::OK, &serde_json::json!("ready"))
    );
    let (status, doc) = s
        .call(reqwest::Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/auth/login",
        "/api/v1/admin/apps",
        "/api/v1/admin/apps/{id_or_slug}",
        "/api/v1/admin/apps/{id_or_slug}/members",
        "/api/v1/admin/apps/{id_or_slug}/members/{user_id}",
        "/api/v1/admin/admins",
        "/api/v1/admin/admins/{id}",
        "/api/v1/admin/tokens",
        "/api/v1/admin/tokens/{id}",
    ] {
        assert!(paths.contains_key(p), "missing {p}");
    }
    let grant = &doc["paths"]["/api/v1/admin/apps/{id_or_slug}/members"]["post"]["responses"];
    for status in [
        "201", "400", "401", "403", "404", "409", "413", "415", "422", "500",
    ] {
        assert!(
            grant.get(status).is_some(),
            "POST members does not document {status}"
        );
    }
    // Every request carries a request id back.
    let resp = s.client.get(s.url("/healthz")).send().await.unwrap();
    assert!(resp.headers().contains_key("x-request-id"));
}

/// NUL characters, which PostgreSQL text cannot hold, never reach a store:
/// names, e-mails and script sources carrying them are 422, lookups by such
/// names find nothing, and a script's error that quotes one is still logged.
async fn nul_characters_are_refused_before_any_store(s: TestServer) {
    use serde_json::json;
    s.create_app("shop").await;
    let owner = s.owner_token.clone();
    let refused = [
        (
            "/api/v1/admin/apps",
            json!({ "slug": "nul", "name": "Sh\u{0}op" }),
        ),
        ("/api/v1/admin/tokens", json!({ "name": "c\u{0}i" })),
        (
            "/api/v1/admin/admins",
            json!({ "username": "mia", "password": "correct horse battery",
                    "instance_role": "member", "email": "m\u{0}@example.com" }),
        ),
    ];
    for (path, body) in refused {
        let (status, reply) = s.post(path, &owner, body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {reply}");
        assert!(reply["error"].is_string(), "{reply}");
    }
    let (status, _) = s.deploy("shop", "nul", "let s = \"a\u{0}b\"; s").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = s.get("/api/v1/admin/apps/sh%00op", &owner).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let login = s
        .client
        .post(s.url("/api/v1/auth/login"))
        .json(&json!({ "username": "ad\u{0}min", "password": "whatever it is" }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::UNAUTHORIZED);

    // A script error quoting a NUL from the request is answered and logged.
    let (status, _) = s.deploy("shop", "thrower", "throw request.body").await;
    assert_eq!(status, StatusCode::CREATED);
    for body in ["a\u{0}b", "plain"] {
        let resp = s
            .client
            .post(s.url("/run/shop/thrower"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    let mut errors = Vec::new();
    for _ in 0..100 {
        let (_, logs) = s
            .get(
                "/api/v1/admin/apps/shop/scripts/thrower/invocations",
                &owner,
            )
            .await;
        errors = logs
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["error"].as_str().unwrap_or_default().to_owned())
            .collect();
        if errors.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(errors.len(), 2, "both invocations are logged: {errors:?}");
    assert!(errors.iter().any(|e| e.ends_with("plain")), "{errors:?}");
}

on_both_stores!(
    nul_characters_are_refused_before_any_store,
    every_bad_request_is_a_4xx_json_error,
    probes_and_the_openapi_document_answer,
);
