//! An embedder nests PiCloud's routers under a prefix of their own: a
//! script's cookies are confined to the path the browser really uses,
//! `{prefix}/run/{app}`, so the browser sends them back.

use axum::Router;
use picloud::AppService;
use picloud::http::{ApiState, run_router};
use picloud::store::memory::MemoryStore;

#[tokio::test]
async fn cookies_follow_the_mount_point() {
    let stores = MemoryStore::new().into_stores();
    let owner = picloud_core::testkit::Fixture::new(stores.clone())
        .owner()
        .await;
    AppService::new(stores.clone())
        .create(&owner, "shop", "Shop")
        .await
        .unwrap();
    let state = ApiState::new(stores);
    state
        .scripts
        .deploy(
            &owner,
            "shop",
            "login",
            r#"response(200, "ok", #{ "set-cookie": "sid=abc; Path=/; HttpOnly" })"#.to_owned(),
        )
        .await
        .unwrap();
    let router = Router::new()
        .nest("/picloud", run_router(state.clone()))
        .merge(run_router(state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let client = {
        picloud_core::egress::install_crypto_provider();
        reqwest::Client::new()
    };
    for (path, cookie_path) in [
        ("/picloud/run/shop/login", "/picloud/run/shop"),
        ("/picloud/run/shop/login/deeper/still", "/picloud/run/shop"),
        ("/run/shop/login", "/run/shop"),
    ] {
        let resp = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(
            resp.headers()["set-cookie"],
            format!("sid=abc; HttpOnly; Path={cookie_path}").as_str(),
            "{path}"
        );
    }
    server.abort();
}
