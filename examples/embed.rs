//! Embedding PiCloud in an existing axum service that has its own
//! authentication.
//!
//! ```text
//! cargo run --example embed
//! curl -H 'x-user: alice' http://127.0.0.1:3000/picloud/admin/apps
//! curl -X PUT -H 'x-user: alice' -H 'content-type: text/plain' \
//!      --data-binary '"hello from " + request.path' \
//!      http://127.0.0.1:3000/picloud/admin/apps/shop/scripts/hello
//! curl http://127.0.0.1:3000/picloud/run/shop/hello/there
//! ```
//!
//! The host app authenticates people its own way (here, a toy `x-user`
//! header naming a user; use your real sessions or JWTs) and turns them into a
//! PiCloud [`Principal`]. PiCloud's admin routers are mounted under
//! `/picloud`; they read the `Extension<Principal>` and enforce every rule in
//! `picloud-core`, so the host's layer decides *who* is calling and PiCloud
//! decides *what* they may do. The script endpoints (`run_router`) are
//! public, like any serverless function's URL, so they sit beside the
//! admin routes, outside the host's auth layer.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use picloud::http::ApiState;
use picloud::store::memory::MemoryStore;
use picloud::{InstanceRole, NewAdminUser, NewApp, Principal, Slug, Stores};

/// The host's own authentication: `x-user: <username>` → a PiCloud principal.
async fn toy_auth(State(stores): State<Stores>, mut req: Request, next: Next) -> Response {
    let username = req
        .headers()
        .get("x-user")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let user = match username {
        Some(name) => stores.users.find_by_username(&name).await.ok().flatten(),
        None => None,
    };
    match user {
        Some(user) if user.is_active => {
            req.extensions_mut().insert(Principal::of(&user));
            next.run(req).await
        }
        _ => (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({ "error": "who are you? (x-user header)" })),
        )
            .into_response(),
    }
}

/// The host app: its own routes, plus PiCloud's admin API and script
/// endpoints under `/picloud`.
pub async fn host_app() -> Router {
    let stores = MemoryStore::new().into_stores();
    // The host seeds its users in PiCloud's directory (or syncs them).
    for (name, role) in [
        ("alice", InstanceRole::Owner),
        ("bob", InstanceRole::Member),
        ("carol", InstanceRole::Member),
    ] {
        stores
            .users
            .create(NewAdminUser::new(
                picloud::Username::parse(name).expect("a valid username"),
                role,
            ))
            .await
            .expect("seed user");
    }
    let slug = Slug::parse("shop").expect("valid slug");
    stores
        .apps
        .create(NewApp::new(
            slug,
            picloud::DisplayName::parse("Shop").expect("a valid name"),
        ))
        .await
        .expect("seed app");

    let state = ApiState::new(stores.clone());
    let admin = picloud::http::admin_router(state.clone())
        .layer(middleware::from_fn_with_state(stores, toy_auth));
    let picloud = admin.merge(picloud::http::run_router(state));
    Router::new()
        .route("/", get(|| async { "the host app's own home page" }))
        .nest("/picloud", picloud)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::var("EMBED_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("host app on http://{}", listener.local_addr()?);
    println!(
        "try: curl -H 'x-user: alice' http://{}/picloud/admin/apps",
        listener.local_addr()?
    );
    axum::serve(listener, host_app().await).await
}
