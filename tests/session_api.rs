//! End-to-end: the dashboard's session. Sign in sets an `HttpOnly`,
//! `SameSite=Strict` cookie the admin API accepts; a change made with it
//! needs `x-picloud-csrf: 1`; sign-out revokes it. The cookie never reaches
//! a script, and a script's page on the instance's host is sandboxed by
//! its Content-Security-Policy (not on a custom domain).

mod support;

use reqwest::StatusCode;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};
use support::TestServer;

const CSP: &str = "sandbox allow-scripts allow-forms allow-popups allow-downloads";

/// Signs in as a new owner-made user `name` (an instance admin); returns
/// the `Set-Cookie` header and the `name=value` pair to send back.
async fn sign_in(s: &TestServer, name: &str) -> (String, String) {
    s.create_user(name, "admin").await;
    let resp = s
        .client
        .post(s.url("/api/v1/auth/session"))
        .json(&json!({ "username": name, "password": "correct horse battery" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let set = resp
        .headers()
        .get(SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["user"]["username"], name);
    assert!(body.get("token").is_none(), "{body}");
    let pair = set.split(';').next().unwrap().to_owned();
    (set, pair)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_signs_in_works_needs_csrf_for_changes_and_signs_out() {
    let s = TestServer::memory().await;
    let (set, cookie) = sign_in(&s, "ada").await;
    for attribute in ["picloud_session=", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(!set.contains("Secure"), "{set}");
    let get = |path: &str| s.client.get(s.url(path)).header(COOKIE, &cookie).send();
    let resp = get("/api/v1/auth/session").await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = get("/api/v1/admin/apps").await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // A change by cookie without the CSRF header: 403, nothing made.
    let create = |csrf: bool| {
        let mut req = s
            .client
            .post(s.url("/api/v1/admin/apps"))
            .header(COOKIE, &cookie)
            .json(&json!({ "slug": "web", "name": "Web" }));
        if csrf {
            req = req.header("x-picloud-csrf", "1");
        }
        req.send()
    };
    let resp = create(false).await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("x-picloud-csrf"),
        "{body}"
    );
    let (_, apps) = s.get("/api/v1/admin/apps", &s.owner_token).await;
    assert_eq!(apps, json!([]));
    assert_eq!(create(true).await.unwrap().status(), StatusCode::CREATED);
    // A bearer token needs no CSRF header.
    let (status, _) = s
        .post(
            "/api/v1/admin/apps",
            &s.owner_token,
            json!({ "slug": "api", "name": "Api" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // Sign-out is a change too.
    let out = |csrf: bool| {
        let mut req = s
            .client
            .delete(s.url("/api/v1/auth/session"))
            .header(COOKIE, &cookie);
        if csrf {
            req = req.header("x-picloud-csrf", "1");
        }
        req.send()
    };
    assert_eq!(out(false).await.unwrap().status(), StatusCode::FORBIDDEN);
    let resp = out(true).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let cleared = resp.headers().get(SET_COOKIE).unwrap().to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    // The token is revoked: the old cookie no longer works.
    assert_eq!(
        get("/api/v1/auth/session").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get("/api/v1/admin/apps").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // Wrong credentials: 401, no cookie.
    let resp = s
        .client
        .post(s.url("/api/v1/auth/session"))
        .json(&json!({ "username": "ada", "password": "wrong password!!" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().get(SET_COOKIE).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_https_public_url_makes_the_cookie_secure() {
    let s = TestServer::configured(false, |c| {
        c.public_url = Some("https://picloud.example.test".into());
    })
    .await
    .unwrap();
    let (set, _) = sign_in(&s, "bea").await;
    assert!(set.contains("; Secure"), "{set}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scripts_never_see_the_session_and_their_pages_are_sandboxed() {
    let s = TestServer::memory().await;
    let (_, cookie) = sign_in(&s, "cid").await;
    s.create_app("web").await;
    s.deploy(
        "web",
        "page",
        r#"response(200, `<script>fetch("/api/v1/admin/apps")</script>${request.headers.cookie ?? ""}`, #{ "content-type": "text/html", "content-security-policy": "default-src *" })"#,
    )
    .await;
    let resp = s
        .client
        .get(s.url("/run/web/page"))
        .header(COOKIE, format!("{cookie}; theme=dark"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // The script's own CSP is replaced by the sandbox.
    let csp: Vec<_> = resp
        .headers()
        .get_all("content-security-policy")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(csp, [CSP]);
    let body = resp.text().await.unwrap();
    let token = cookie.split_once('=').unwrap().1;
    assert!(
        !body.contains("picloud_session") && !body.contains(token),
        "{body}"
    );
    // Errors of /run carry it too.
    let resp = s.client.get(s.url("/run/web/nope")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(resp.headers()["content-security-policy"], CSP);
    // /async stores no session either.
    let resp = s
        .client
        .post(s.url("/async/web/page"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let job: Value = resp.json().await.unwrap();
    let (_, stored) = s
        .get(
            &format!(
                "/api/v1/admin/apps/web/jobs/{}",
                job["job_id"].as_str().unwrap()
            ),
            &s.owner_token,
        )
        .await;
    assert!(
        !stored["request"].to_string().contains("picloud_session"),
        "{stored}"
    );
    // On the app's own domain, no sandbox: it is its own origin.
    let (status, _) = s
        .post(
            "/api/v1/admin/apps/web/domains",
            &s.owner_token,
            json!({ "hostname": "web.example.test" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let resp = s
        .client
        .get(s.url("/page"))
        .header("host", "web.example.test")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let csp: Vec<_> = resp
        .headers()
        .get_all("content-security-policy")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(csp, ["default-src *"]);
}
