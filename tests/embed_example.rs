//! Drives `examples/embed.rs`: the host app's own auth layer produces the
//! principal, and PiCloud's routers under `/picloud` enforce the rules.

#[path = "../examples/embed.rs"]
#[allow(dead_code)]
mod embed;

use serde_json::{Value, json};

#[tokio::test]
async fn the_embedded_routers_follow_the_host_auth_and_the_core_rules() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, embed::host_app().await).await });
    let client = {
        picloud_core::egress::install_crypto_provider();
        reqwest::Client::new()
    };
    let get = |path: &str, user: Option<&str>| {
        let mut req = client.get(format!("{base}{path}"));
        if let Some(u) = user {
            req = req.header("x-user", u);
        }
        req.send()
    };

    // The host's own route is untouched.
    let home = get("/", None).await.unwrap().text().await.unwrap();
    assert_eq!(home, "the host app's own home page");
    // No principal from the host's layer: 401.
    assert_eq!(
        get("/picloud/admin/apps", None).await.unwrap().status(),
        401
    );
    // alice is an owner: she sees the app and manages its members.
    let apps: Value = get("/picloud/admin/apps", Some("alice"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(apps[0]["slug"], "shop");
    assert_eq!(apps[0]["my_role"], "app_admin");
    let users: Value = get("/picloud/admin/admins", Some("alice"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bob = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "bob")
        .unwrap()["id"]
        .clone();
    let resp = client
        .post(format!("{base}/picloud/admin/apps/shop/members"))
        .header("x-user", "alice")
        .json(&json!({ "user_id": bob, "role": "viewer" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    // bob, a viewer, may see the app but not its members.
    assert_eq!(
        get("/picloud/admin/apps/shop", Some("bob"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        get("/picloud/admin/apps/shop/members", Some("bob"))
            .await
            .unwrap()
            .status(),
        403
    );
    // carol has no role at all.
    assert_eq!(
        get("/picloud/admin/apps/shop", Some("carol"))
            .await
            .unwrap()
            .status(),
        403
    );
    // Scripts: alice deploys through the admin routes (bob, a viewer, may
    // not), and anyone calls the script, with no host auth at all.
    let deploy = |user: &'static str| {
        client
            .put(format!("{base}/picloud/admin/apps/shop/scripts/hello"))
            .header("x-user", user)
            .header("content-type", "text/plain")
            .body(r#""hello from " + request.path"#)
            .send()
    };
    assert_eq!(deploy("bob").await.unwrap().status(), 403);
    assert_eq!(deploy("alice").await.unwrap().status(), 201);
    let run = get("/picloud/run/shop/hello/there", None).await.unwrap();
    assert_eq!(run.status(), 200);
    assert_eq!(run.text().await.unwrap(), "hello from /there");
    assert_eq!(
        get("/picloud/run/shop/nope", None).await.unwrap().status(),
        404
    );
    server.abort();
}
