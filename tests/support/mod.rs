//! Test support: start the assembled server on a real listener on 127.0.0.1
//! (memory or PostgreSQL), and talk to it over HTTP like a client would.
#![allow(dead_code)]

use picloud::server::{self, RunningServer, ServerConfig};

/// jemalloc, metered, as in the `picloud` binary: every test server's
/// script runs are bounded in memory the way the released server's are.
#[global_allocator]
static ALLOCATOR: picloud_core::executor::meter::MeteredAllocator =
    picloud_core::executor::meter::MeteredAllocator;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A server started for one test, with the bootstrap owner's token.
pub struct TestServer {
    pub server: RunningServer,
    pub owner_token: String,
    pub client: reqwest::Client,
    pub database_url: Option<String>,
}

/// A fresh random token of 64 hex characters.
pub fn random_token() -> String {
    format!(
        "test_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

impl TestServer {
    /// A server on the in-memory store.
    pub async fn memory() -> Self {
        Self::start(None).await
    }

    /// A server on a fresh PostgreSQL database, or `None` (with a notice)
    /// when `DATABASE_URL` is unset outside CI.
    pub async fn postgres() -> Option<Self> {
        let url = picloud::store::postgres::testing::fresh_database_url().await?;
        Some(Self::start(Some(url)).await)
    }

    /// A server on `database_url` (or memory).
    pub async fn start(database_url: Option<String>) -> Self {
        let owner_token = random_token();
        Self::start_with_token(database_url, owner_token).await
    }

    /// A server with a given bootstrap token (to restart on the same database).
    pub async fn start_with_token(database_url: Option<String>, owner_token: String) -> Self {
        Self::start_configured(database_url, owner_token, |_| {}).await
    }

    /// A server on the memory store (`postgres: false`) or on a fresh
    /// PostgreSQL database (`None` when there is none), its configuration
    /// changed by `configure`.
    pub async fn configured(
        postgres: bool,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> Option<Self> {
        let url = if postgres {
            Some(picloud::store::postgres::testing::fresh_database_url().await?)
        } else {
            None
        };
        Some(Self::start_configured(url, random_token(), configure).await)
    }

    /// A server on `database_url` (or memory) with a given bootstrap token,
    /// its configuration changed by `configure` (to restart on the same
    /// database with other settings).
    pub async fn start_configured_with(
        database_url: Option<String>,
        owner_token: String,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> Self {
        Self::start_configured(database_url, owner_token, configure).await
    }

    async fn start_configured(
        database_url: Option<String>,
        owner_token: String,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> Self {
        let mut config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: database_url.clone(),
            bootstrap_token: Some(owner_token.clone()),
            ..ServerConfig::default()
        };
        configure(&mut config);
        let server = server::start(config).await.expect("server starts");
        let started = Self {
            server,
            owner_token,
            client: {
                picloud_core::egress::install_crypto_provider();
                reqwest::Client::new()
            },
            database_url,
        };
        started.until_ready().await;
        started
    }

    /// Waits until `/readyz` says the server is warm (live scripts compiled
    /// in the background after the listener binds).
    pub async fn until_ready(&self) {
        for _ in 0..200 {
            let ready = self.client.get(self.url("/readyz")).send().await;
            if ready.is_ok_and(|r| r.status() == StatusCode::OK) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("the server did not become ready within 5 s");
    }

    /// Calls a script; returns status, content type and body text.
    pub async fn run(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
    ) -> (StatusCode, String, String) {
        let mut req = self.client.request(method, self.url(path));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, ct, resp.text().await.unwrap())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    /// Sends a request; returns the status and the JSON body (`Null` if empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.expect("body read");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("non-JSON body for {status}: {text}"))
        };
        (status, value)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// Creates a user through the API (as the owner); returns its id.
    pub async fn create_user(&self, username: &str, role: &str) -> String {
        let (status, body) = self
            .post(
                "/api/v1/admin/admins",
                &self.owner_token,
                json!({ "username": username, "password": "correct horse battery", "instance_role": role }),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "create user {username}: {body}"
        );
        body["id"].as_str().unwrap().to_owned()
    }

    /// Logs a user in; returns the token.
    pub async fn login(&self, username: &str) -> String {
        let (status, body) = self
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({ "username": username, "password": "correct horse battery" })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "login {username}: {body}");
        body["token"].as_str().unwrap().to_owned()
    }

    /// Creates a user and logs them in: (id, token).
    pub async fn user(&self, username: &str, role: &str) -> (String, String) {
        let id = self.create_user(username, role).await;
        let token = self.login(username).await;
        (id, token)
    }

    /// Creates an app (as the owner); returns its id.
    /// Deploys `source` as `app/name` with `token`; returns status and body.
    pub async fn deploy_as(
        &self,
        token: &str,
        app: &str,
        name: &str,
        source: &str,
    ) -> (StatusCode, Value) {
        let resp = self
            .client
            .put(self.url(&format!("/api/v1/admin/apps/{app}/scripts/{name}")))
            .bearer_auth(token)
            .header("content-type", "text/plain")
            .body(source.to_owned())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn deploy(&self, app: &str, name: &str, source: &str) -> (StatusCode, Value) {
        self.deploy_as(&self.owner_token, app, name, source).await
    }

    pub async fn create_app(&self, slug: &str) -> String {
        let (status, body) = self
            .post(
                "/api/v1/admin/apps",
                &self.owner_token,
                json!({ "slug": slug, "name": slug }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "create app {slug}: {body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// Grants a role (as the owner), expecting 201.
    pub async fn grant(&self, slug: &str, user_id: &str, role: &str) {
        let (status, body) = self
            .post(
                &format!("/api/v1/admin/apps/{slug}/members"),
                &self.owner_token,
                json!({ "user_id": user_id, "role": role }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "grant {role}: {body}");
    }

    pub async fn shutdown(self) {
        self.server.shutdown().await.expect("clean shutdown");
    }
}

/// Runs each scenario `async fn name(TestServer)` against the memory store and
/// against PostgreSQL.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),+ $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::support::TestServer::memory().await).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    if let Some(server) = super::support::TestServer::postgres().await {
                        super::$name(server).await;
                    }
                }
            )+
        }
    };
}

/// A line of a process's log output without its ANSI colour codes.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
