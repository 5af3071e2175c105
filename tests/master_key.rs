//! The master key on PostgreSQL: without one, writing a secret is a 409
//! that says how to set one (plain variables still work); with
//! `rotate_master_key` (`picloud admin rotate-master-key`), every app's
//! data key is re-wrapped offline and the secrets open under the new key,
//! not the old one; run again, it re-wraps nothing.

mod support;

use picloud_core::secrets::MasterKey;
use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{TestServer, random_token};

async fn put_env(
    s: &TestServer,
    name: &str,
    value: &str,
    secret: bool,
) -> (StatusCode, serde_json::Value) {
    s.call(
        Method::PUT,
        &format!("/api/v1/admin/apps/vault/env/{name}"),
        Some(&s.owner_token),
        Some(json!({ "value": value, "secret": secret })),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_master_key_a_secret_is_a_409_that_says_how() {
    let Some(s) = TestServer::configured(true, |c| c.master_key = None).await else {
        return;
    };
    s.create_app("vault").await;
    let (status, body) = put_env(&s, "TOKEN", "sk_0123456789", true).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("PICLOUD_MASTER_KEY"), "{error}");
    assert_eq!(
        put_env(&s, "PLAIN", "fine", false).await.0,
        StatusCode::CREATED
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotating_the_master_key_keeps_every_secret() {
    let Some(url) = picloud::store::postgres::testing::fresh_database_url().await else {
        return;
    };
    let (old, new) = (MasterKey::random().unwrap(), MasterKey::random().unwrap());
    let token = random_token();
    let start = |key: MasterKey| {
        let (url, token) = (url.clone(), token.clone());
        async move {
            TestServer::start_configured_with(Some(url), token, move |c| c.master_key = Some(key))
                .await
        }
    };
    let s = start(old.clone()).await;
    s.create_app("vault").await;
    s.create_app("other").await;
    assert_eq!(
        put_env(&s, "TOKEN", "sk_live_first", true).await.0,
        StatusCode::CREATED
    );
    let (status, _) = s
        .call(
            Method::PUT,
            "/api/v1/admin/apps/other/env/KEY",
            Some(&s.owner_token),
            Some(json!({ "value": "second-secret", "secret": true })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    s.deploy("vault", "read", "env.TOKEN").await;
    s.deploy("other", "read", "env.KEY").await;
    s.shutdown().await;

    // Offline, as `picloud admin rotate-master-key` does it.
    let n = picloud::server::rotate_master_key(&url, &old, &new)
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(
        picloud::server::rotate_master_key(&url, &old, &new)
            .await
            .unwrap(),
        0
    );

    let s = start(new.clone()).await;
    for (path, want) in [
        ("/run/vault/read", "sk_live_first"),
        ("/run/other/read", "second-secret"),
    ] {
        let (status, _, body) = s.run(Method::GET, path, None).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, want), "{path}");
    }
    s.shutdown().await;

    // The old key no longer opens them: the run fails (an internal error,
    // nothing leaked).
    let s = start(old).await;
    let (status, _, body) = s.run(Method::GET, "/run/vault/read", None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(!body.contains("sk_live_first"), "{body}");
    s.shutdown().await;
}
