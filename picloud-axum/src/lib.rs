//! # picloud-axum
//!
//! PiCloud's HTTP transport for axum 0.8. Handlers parse, call a core service
//! with the caller's [`Principal`](picloud_core::Principal), and map the outcome to a status in one
//! place ([`error`]); every rule lives in `picloud-core`.
//!
//! The routers compose:
//! - [`admin_router`]: `/admin/...` (apps, members, users, tokens). It reads
//!   the caller from an `Extension<Principal>`, so an embedder can mount it
//!   under any prefix behind their own authentication layer;
//! - [`auth_router`], for `/auth/login`;
//! - [`api_router`]: both under `/api/v1`, the admin part behind PiCloud's
//!   bearer-token layer ([`bearer::require_bearer`]), plus `/api/v1/openapi.json`;
//! - [`run_router`]: `/run/{app}/{script}[/…]`, the public script endpoints;
//! - [`app`]: the whole server: the API, `/run`, `/healthz`, `/readyz`, a body limit,
//!   request ids, tracing, panic catching and JSON 404/405 fallbacks.
//!
//! ```no_run
//! use picloud_axum::{ApiState, AppOptions};
//! use picloud_store_memory::MemoryStore;
//!
//! # async fn run() -> std::io::Result<()> {
//! let state = ApiState::new(MemoryStore::new().into_stores());
//! let router = picloud_axum::app(state, AppOptions::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! picloud_axum::serve(listener, router, picloud_axum::shutdown_signal()).await
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod bearer;
pub mod conn;
#[cfg(feature = "dashboard")]
pub mod dashboard;
pub mod dto;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod routes;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, patch, post, put};
use axum::{Json, Router, middleware};
use picloud_core::Stores;
use picloud_core::apps::AppService;
use picloud_core::auth::AuthService;
use picloud_core::executor::{Executor, ExecutorConfig, LazyExecutor};
use picloud_core::members::MembershipService;
use picloud_core::scripts::ScriptService;
use picloud_core::users::UserService;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::error::ApiError;

/// Everything the handlers need: the stores and the core services over them.
///
/// Cheap to clone (one reference count): axum clones the state for every
/// request, and cloning each service's `Arc`s per request showed up as the
/// top cost of the hot path.
#[derive(Debug, Clone)]
pub struct ApiState(Arc<Services>);

/// The services behind an [`ApiState`] (reached through `Deref`).
#[derive(Debug)]
pub struct Services {
    /// The stores.
    pub stores: Stores,
    /// Memberships.
    pub members: MembershipService,
    /// Apps.
    pub apps: AppService,
    /// The user directory.
    pub users: UserService,
    /// Login, tokens, bearer authentication.
    pub auth: AuthService,
    /// Scripts: deploy, roll back, invoke.
    pub scripts: ScriptService,
    /// The event engine's rules: `/async`, jobs, schedules, subscriptions.
    pub events: picloud_core::events::EventService,
    /// The admin API over each app's KV state.
    pub kv: picloud_core::kv::KvService,
    /// Custom domains and their routing map.
    pub domains: picloud_core::domains::DomainService,
    /// The cluster view.
    pub cluster: picloud_core::cluster::ClusterService,
    /// Whether the session cookie is `Secure` (the instance's public URL is
    /// https).
    secure_cookies: std::sync::atomic::AtomicBool,
}

impl std::ops::Deref for ApiState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

impl ApiState {
    /// Services over `stores`, with a Rhai executor sized for this machine.
    /// Call it inside a tokio runtime (the invocation log writer is a task),
    /// then [`ApiState::warm`] (it may run while the server serves: `/readyz`
    /// answers 503 and `/run` compiles on demand until it is done).
    ///
    /// The executor's worker threads start with the first script run
    /// ([`LazyExecutor`]): an embedder who mounts only [`admin_router`]
    /// starts none.
    pub fn new(stores: Stores) -> Self {
        Self::with_executor_config(stores, ExecutorConfig::default())
    }

    /// Services over `stores`, with a Rhai executor sized by `config` (for
    /// a runtime whose worker stacks fit a larger inline budget, say),
    /// started on the first run like [`ApiState::new`]'s.
    pub fn with_executor_config(stores: Stores, config: ExecutorConfig) -> Self {
        Self::with_executor(stores, Arc::new(LazyExecutor::new(config)))
    }

    /// Services over `stores`, running scripts on `executor`.
    pub fn with_executor(stores: Stores, executor: Arc<dyn Executor>) -> Self {
        Self::with_scripts(ScriptService::new(stores.clone(), executor))
    }

    /// Services around `scripts` (a script service configured by the
    /// caller: its env service with a master key, outbound HTTP).
    pub fn with_scripts(scripts: ScriptService) -> Self {
        let stores = scripts.stores().clone();
        let domains = picloud_core::domains::DomainService::new(stores.clone());
        Self(Arc::new(Services {
            secure_cookies: std::sync::atomic::AtomicBool::new(false),
            cluster: picloud_core::cluster::ClusterService::new(stores.clone()),
            domains: domains.clone(),
            kv: picloud_core::kv::KvService::new(stores.clone(), Arc::clone(scripts.kv_signal())),
            members: MembershipService::new(stores.clone()),
            apps: AppService::new(stores.clone())
                .with_listener(Arc::new(scripts.clone()))
                .with_listener(Arc::new(domains)),
            users: UserService::new(stores.clone()),
            auth: AuthService::new(stores.clone()),
            events: picloud_core::events::EventService::new(scripts.clone()),
            scripts,
            stores,
        }))
    }

    /// Marks the session cookie `Secure`: the instance is reached over
    /// https (`PICLOUD_PUBLIC_URL`).
    pub fn set_secure_cookies(&self, secure: bool) {
        self.0
            .secure_cookies
            .store(secure, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the session cookie is `Secure`.
    pub fn secure_cookies(&self) -> bool {
        self.0
            .secure_cookies
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Compiles every live script into the cache (at start-up). Scripts that
    /// no longer compile are logged and skipped.
    pub async fn warm(&self) -> Result<usize, picloud_core::scripts::ScriptError> {
        for (app, name, e) in self.scripts.warm().await? {
            tracing::warn!(%app, script = %name, error = %e, "live script no longer compiles; not served");
        }
        Ok(self.scripts.cache().len())
    }
}

/// `/admin/...`: apps, members, users and tokens. Needs an
/// `Extension<Principal>` from an auth layer; without one, requests get 401.
pub fn admin_router(state: ApiState) -> Router {
    use routes::{apps, domains, events as ev, members, scripts, state, tokens, users};
    Router::new()
        .route("/admin/cluster", get(routes::cluster::get_cluster))
        .route("/admin/apps", get(apps::list_apps).post(apps::create_app))
        .route(
            "/admin/apps/{id_or_slug}",
            get(apps::get_app)
                .patch(apps::patch_app)
                .delete(apps::delete_app),
        )
        .route(
            "/admin/apps/{id_or_slug}/members",
            get(members::list_members).post(members::grant_member),
        )
        .route(
            "/admin/apps/{id_or_slug}/members/{user_id}",
            patch(members::patch_member).delete(members::remove_member),
        )
        .route(
            "/admin/admins",
            get(users::list_users).post(users::create_user),
        )
        .route("/admin/admins/{id}", patch(users::patch_user))
        .route(
            "/admin/me/password",
            axum::routing::put(routes::auth::change_password),
        )
        .route(
            "/admin/tokens",
            get(tokens::list_tokens).post(tokens::create_token),
        )
        .route(
            "/admin/tokens/{id}",
            axum::routing::delete(tokens::revoke_token),
        )
        .route(
            "/admin/apps/{id_or_slug}/scripts",
            get(scripts::list_scripts),
        )
        .route(
            "/admin/apps/{id_or_slug}/scripts/{name}",
            get(scripts::get_script)
                .put(scripts::deploy_script)
                .patch(scripts::patch_script)
                .delete(scripts::delete_script)
                // A script source may be larger than an ordinary JSON body.
                .layer(DefaultBodyLimit::max(
                    picloud_core::scripts::MAX_SOURCE_BYTES,
                )),
        )
        .route(
            "/admin/apps/{id_or_slug}/scripts/{name}/versions/{version}",
            get(scripts::get_version),
        )
        .route(
            "/admin/apps/{id_or_slug}/scripts/{name}/rollback",
            post(scripts::rollback_script),
        )
        .route(
            "/admin/apps/{id_or_slug}/scripts/{name}/invocations",
            get(scripts::list_invocations),
        )
        .route(
            "/admin/apps/{id_or_slug}/limits",
            get(scripts::get_limits)
                .put(scripts::put_limits)
                .patch(scripts::patch_limits),
        )
        .route("/admin/apps/{id_or_slug}/usage", get(scripts::get_usage))
        .route(
            "/admin/apps/{id_or_slug}/settings",
            get(apps::get_settings).patch(apps::patch_settings),
        )
        .route(
            "/admin/apps/{id_or_slug}/invocations",
            get(scripts::list_app_invocations),
        )
        .route(
            "/admin/apps/{id_or_slug}/logs/stream",
            get(routes::logs::stream_logs),
        )
        .route("/admin/apps/{id_or_slug}/jobs", get(ev::list_jobs))
        .route(
            "/admin/apps/{id_or_slug}/jobs/{id}",
            get(ev::get_job).delete(ev::delete_job),
        )
        .route(
            "/admin/apps/{id_or_slug}/jobs/{id}/retry",
            post(ev::retry_job),
        )
        .route(
            "/admin/apps/{id_or_slug}/jobs/{id}/cancel",
            post(ev::cancel_job),
        )
        .route(
            "/admin/apps/{id_or_slug}/schedules",
            get(ev::list_schedules),
        )
        .route(
            "/admin/apps/{id_or_slug}/schedules/{name}",
            get(ev::get_schedule)
                .put(ev::put_schedule)
                .delete(ev::delete_schedule),
        )
        .route(
            "/admin/apps/{id_or_slug}/subscriptions",
            get(ev::list_subscriptions),
        )
        .route(
            "/admin/apps/{id_or_slug}/domains",
            get(domains::list_domains).post(domains::add_domain),
        )
        .route(
            "/admin/apps/{id_or_slug}/domains/{hostname}",
            axum::routing::delete(domains::delete_domain),
        )
        .route("/admin/apps/{id_or_slug}/env", get(state::list_env))
        .route(
            "/admin/apps/{id_or_slug}/env/{name}",
            get(state::get_env)
                .put(state::put_env)
                .delete(state::delete_env),
        )
        .route("/admin/apps/{id_or_slug}/kv", get(state::list_kv))
        .route(
            "/admin/apps/{id_or_slug}/kv/{key}",
            get(state::get_kv)
                .put(state::put_kv)
                // A value may be 1 MiB of JSON, more than an ordinary body.
                .layer(DefaultBodyLimit::max(
                    picloud_core::domain::KV_MAX_VALUE_BYTES + 64 * 1024,
                ))
                .delete(state::delete_kv),
        )
        .route(
            "/admin/apps/{id_or_slug}/subscriptions/{name}",
            put(ev::put_subscription).delete(ev::delete_subscription),
        )
        .with_state(state)
}

/// `ANY /run/{app_slug}/{script}[/{*rest}]` and `ANY /async/…` (which queues
/// the request as a job): public script endpoints, with
/// their own body limit ([`routes::run::MAX_RUN_BODY`]).
pub fn run_router(state: ApiState) -> Router {
    Router::new()
        .route("/run/{app}/{script}", any(routes::run::run))
        .route("/run/{app}/{script}/{*rest}", any(routes::run::run))
        .route("/async/{app}/{script}", any(routes::run::run_async))
        .route("/async/{app}/{script}/{*rest}", any(routes::run::run_async))
        .layer(middleware::from_fn(sandbox_script_pages))
        .with_state(state)
}

/// The `Content-Security-Policy` of every answer of a script on the
/// instance's own host: its HTML runs in an opaque origin (no cookies, no
/// same-origin requests), so a page a script serves cannot use a signed-in
/// admin's session against the dashboard's API.
pub const SCRIPT_CSP: &str = "sandbox allow-scripts allow-forms allow-popups allow-downloads";

/// Adds [`SCRIPT_CSP`] to a `/run` or `/async` answer, replacing any a
/// script set, unless the request came in on the app's own domain (its own
/// origin, which needs no sandbox).
async fn sandbox_script_pages(req: Request, next: middleware::Next) -> Response {
    let own_domain = req.extensions().get::<CustomDomain>().is_some();
    let mut resp = next.run(req).await;
    if !own_domain {
        resp.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            axum::http::HeaderValue::from_static(SCRIPT_CSP),
        );
    }
    resp
}

/// `/auth/login` and `/auth/session` (public).
pub fn auth_router(state: ApiState) -> Router {
    Router::new()
        .route("/auth/login", post(routes::auth::login))
        .route(
            "/auth/session",
            post(routes::auth::sign_in)
                .get(routes::auth::session)
                .delete(routes::auth::sign_out),
        )
        .with_state(state)
}

fn openapi_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        openapi::openapi()
            .to_json()
            .expect("the OpenAPI document serializes")
    })
}

async fn serve_openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json()).into_response()
}

/// `/api/v1`: the admin routes behind the bearer-token layer, login, and the
/// OpenAPI document.
pub fn api_router(state: ApiState) -> Router {
    let admin = admin_router(state.clone()).layer(middleware::from_fn_with_state(
        state.clone(),
        bearer::require_bearer,
    ));
    let v1 = Router::new()
        .merge(admin)
        .merge(auth_router(state))
        .route("/openapi.json", get(serve_openapi));
    Router::new().nest("/api/v1", v1)
}

/// Answers whether the server can do its work (for `/readyz`).
#[async_trait::async_trait]
pub trait Readiness: Send + Sync {
    /// True while the store is reachable.
    async fn ready(&self) -> bool;
}

/// Options of [`app`].
#[derive(Clone)]
pub struct AppOptions {
    /// The largest request body accepted, in bytes (default 64 KiB).
    pub body_limit: usize,
    /// What `/readyz` asks; `None` means always ready (the memory store).
    pub readiness: Option<Arc<dyn Readiness>>,
    /// How long a request body may take to arrive after the head (default
    /// 30 s); then the client gets a 408 ([`conn::body_deadline`]).
    pub body_timeout: Duration,
    /// Which routes this node serves (cluster mode; default all): an `api`
    /// node serves `/api/v1` and the dashboard, a `worker` node `/run`,
    /// `/async`, custom domains and `/internal/tls-ask`; both serve the
    /// probes. The others answer 404.
    pub role: picloud_core::cluster::NodeRole,
    /// Set when the node is shutting down: `/readyz` answers 503 from then
    /// on, so a load balancer stops sending it requests while the ones in
    /// flight finish.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            body_limit: 64 * 1024,
            readiness: None,
            body_timeout: conn::DEFAULT_BODY_TIMEOUT,
            role: picloud_core::cluster::NodeRole::All,
            draining: Arc::default(),
        }
    }
}

impl std::fmt::Debug for AppOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppOptions")
            .field("body_limit", &self.body_limit)
            .field("readiness", &self.readiness.is_some())
            .field("body_timeout", &self.body_timeout)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// `GET /`: what this server is and where its parts are, for a person
/// who opened the address (the dashboard takes this place once it exists).
async fn index() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "name": "picloud",
        "version": env!("CARGO_PKG_VERSION"),
        "api": "/api/v1",
        "openapi": "/api/v1/openapi.json",
        "scripts": "/run/{app}/{script}",
        "health": "/healthz",
        "ready": "/readyz",
    }))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// What `/readyz` looks at.
#[derive(Clone)]
struct Probe {
    readiness: Option<Arc<dyn Readiness>>,
    scripts: picloud_core::scripts::ScriptService,
    draining: Arc<std::sync::atomic::AtomicBool>,
}

async fn readyz(State(probe): State<Probe>) -> Response {
    if probe.draining.load(std::sync::atomic::Ordering::Acquire) {
        return ApiError::not_ready("draining: this node is shutting down").into_response();
    }
    if !probe.scripts.is_warm() {
        return ApiError::not_ready("warming up: live scripts are still being compiled")
            .into_response();
    }
    let ready = match &probe.readiness {
        Some(r) => tokio::time::timeout(Duration::from_secs(2), r.ready())
            .await
            .unwrap_or(false),
        None => true,
    };
    if ready {
        Json(serde_json::json!({ "status": "ready" })).into_response()
    } else {
        ApiError::not_ready("store unreachable").into_response()
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal("a handler panicked").into_response()
}

/// The whole server: [`api_router`], [`run_router`], `/healthz`, `/readyz`,
/// JSON fallbacks, and the [`standard_layers`].
pub fn app(state: ApiState, options: AppOptions) -> Router {
    let role = options.role;
    // `/` is the dashboard when the binary holds one; else a JSON index.
    #[cfg(feature = "dashboard")]
    let with_dashboard = dashboard::is_embedded() && role.serves_api();
    #[cfg(not(feature = "dashboard"))]
    let with_dashboard = false;
    let probes = if with_dashboard {
        Router::new()
    } else {
        Router::new().route("/", get(index))
    };
    let probes = probes
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Probe {
            readiness: options.readiness.clone(),
            scripts: state.scripts.clone(),
            draining: Arc::clone(&options.draining),
        });
    // An api node routes no custom domain: its map stays empty.
    let domains = if role.serves_scripts() {
        state.domains.map().clone()
    } else {
        picloud_core::domains::DomainMap::default()
    };
    let mut routes = Router::new().merge(probes);
    if role.serves_api() {
        routes = routes.merge(api_router(state.clone()));
    }
    if role.serves_scripts() {
        let tls_ask = Router::new()
            .route("/internal/tls-ask", get(routes::domains::tls_ask))
            .with_state(state.clone());
        routes = routes.merge(run_router(state)).merge(tls_ask);
    }
    #[cfg(feature = "dashboard")]
    let routes = if with_dashboard {
        routes.fallback_service(dashboard::dashboard_router())
    } else {
        routes.fallback(not_found)
    };
    #[cfg(not(feature = "dashboard"))]
    let routes = routes.fallback(not_found);
    let routes = routes.method_not_allowed_fallback(method_not_allowed);
    let routes = standard_layers_with(routes, options.body_limit, options.body_timeout);
    // Host routing comes before any other: on a custom domain only the
    // app's scripts exist.
    Router::new().fallback_service(
        tower::ServiceBuilder::new()
            .map_request(move |req: Request| host_routing(&domains, req))
            .service(routes),
    )
}

/// Marks a request that came in on an app's custom domain (and was routed
/// to `/run/{app}/…` or `/async/{app}/…`): its scripts' cookies stay as they
/// are, since the app has that origin to itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomDomain {
    /// The hostname, as registered.
    pub hostname: String,
}

/// A request whose `Host` (port ignored) is a registered custom domain is
/// rewritten to its app: `/{script}[/…]` to `/run/{app}/{script}[/…]`,
/// `/async/{script}[/…]` to `/async/{app}/{script}[/…]`, the query kept. So
/// nothing but the app's scripts can be reached there: `/api/…`, `/` and
/// the rest name scripts of the app, and are 404 unless it has them. Any
/// other host passes through unchanged. One hash-map read, no store call.
fn host_routing(domains: &picloud_core::domains::DomainMap, mut req: Request) -> Request {
    if domains.is_empty() {
        return req;
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    let Some(target) = host.and_then(|h| domains.lookup(h)) else {
        return req;
    };
    let path = req.uri().path();
    let slug = &target.slug;
    let rewritten = match path.strip_prefix("/async/") {
        Some(rest) => format!("/async/{slug}/{rest}"),
        None => format!("/run/{slug}{path}"),
    };
    let pq = match req.uri().query() {
        Some(q) => format!("{rewritten}?{q}"),
        None => rewritten,
    };
    let hostname = host.unwrap_or_default().to_owned();
    match axum::http::Uri::builder().path_and_query(pq).build() {
        Ok(uri) => *req.uri_mut() = uri,
        // Cannot happen (the parts came from a valid URI); refuse rather
        // than fall through to the instance's routes.
        Err(_) => *req.uri_mut() = axum::http::Uri::from_static("/run/-/-/"),
    }
    req.extensions_mut().insert(CustomDomain { hostname });
    req
}

/// The layers [`app`] puts around every route: a body limit, a body
/// deadline (30 s, then a JSON 408), JSON 414/431 for an over-long URI or
/// headers ([`conn::head_limits`]), panic catching (a JSON 500 that leaks
/// nothing), an `x-request-id` (set if absent, echoed back) and a tracing
/// span per request. Apply it to routes of your own to serve them the same
/// way.
pub fn standard_layers(router: Router, body_limit: usize) -> Router {
    standard_layers_with(router, body_limit, conn::DEFAULT_BODY_TIMEOUT)
}

/// [`standard_layers`] with a chosen body deadline ([`conn::body_deadline`]).
pub fn standard_layers_with(router: Router, body_limit: usize, body_timeout: Duration) -> Router {
    // One `Router::layer` with the whole stack: each call boxes every
    // route's service again (an allocation and a dynamic call per request
    // and per layer), which cost 5–10 % of a trivial request each
    // (`cargo bench --bench http_load -- layers`). Outermost first.
    router.layer(
        tower::ServiceBuilder::new()
            // An inbound id the invocation record could not keep whole
            // (over 128 bytes, or not printable ASCII) is replaced, so the
            // id in the response always finds its record.
            .map_request(|mut req: Request| {
                let keep = req.headers().get("x-request-id").is_none_or(|v| {
                    v.len() <= picloud_core::domain::InvocationContext::REQUEST_ID_MAX_BYTES
                        && !v.is_empty()
                        && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
                });
                if !keep {
                    req.headers_mut().remove("x-request-id");
                }
                req
            })
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(
                // No `on_failure` line: a 5xx from a script is the script's
                // (the run handler logs it for its app, at INFO), and an
                // internal error logs its cause where it happens.
                TraceLayer::new_for_http()
                    .make_span_with(|req: &Request| {
                        let id = req
                            .headers()
                            .get("x-request-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-");
                        tracing::info_span!("request", method = %req.method(), uri = %req.uri(), request_id = %id)
                    })
                    .on_failure(()),
            )
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(DefaultBodyLimit::max(body_limit))
            .layer(middleware::from_fn_with_state(
                body_timeout,
                conn::request_guards,
            )),
    )
}

/// Serves `router` on `listener` until `shutdown` completes, then lets the
/// requests in flight finish for up to 10 s: [`conn::serve_with`] with the
/// default [`conn::ServeOptions`] (30 s header timeout, 1024 connections).
/// Each request carries its peer's `ConnectInfo<SocketAddr>` (the login
/// throttle keys on it).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    conn::serve_with(listener, router, shutdown, conn::ServeOptions::default()).await
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; finishing requests in flight");
}
