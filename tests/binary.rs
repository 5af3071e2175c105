//! The `picloud` binary itself: it logs one ready line naming the address
//! and the store, prints a generated bootstrap token once, serves, and exits
//! cleanly on SIGTERM. With PostgreSQL, users, apps, members, tokens,
//! scripts and the invocations served just before SIGTERM survive a restart.

mod support;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

struct Running {
    child: Child,
    base: String,
    generated_token: Option<String>,
    /// Every line of its standard output (the log), still growing.
    lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    /// The log so far.
    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits (up to 10 s) for a log line containing `needle`, and returns it.
    async fn log_line(&self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let found = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
                .cloned();
            if let Some(line) = found {
                return line;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no log line with {needle:?} in:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn spawn(database_url: Option<&str>, bootstrap_token: Option<&str>) -> Running {
    spawn_with(database_url, bootstrap_token, &[]).await
}

async fn spawn_with(
    database_url: Option<&str>,
    bootstrap_token: Option<&str>,
    env: &[(&str, &str)],
) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_picloud"));
    cmd.envs(env.iter().copied());
    cmd.env("PICLOUD_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .env_remove("DATABASE_URL")
        .env_remove("PICLOUD_BOOTSTRAP_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(url) = database_url {
        cmd.env("DATABASE_URL", url);
    }
    if let Some(t) = bootstrap_token {
        cmd.env("PICLOUD_BOOTSTRAP_TOKEN", t);
    }
    let expect_token = database_url.is_none() && bootstrap_token.is_none();
    let mut child = cmd.spawn().expect("the binary starts");
    let mut reader = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut base = None;
    let mut generated_token = None;
    let mut lines = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while base.is_none() || (expect_token && generated_token.is_none()) {
        let line = tokio::time::timeout_at(deadline, reader.next_line())
            .await
            .expect("the server became ready in time")
            .expect("stdout readable")
            .expect("the server did not exit");
        let line = support::strip_ansi(&line);
        if let Some(rest) = line.split("picloud ready on ").nth(1) {
            base = Some(rest.split_whitespace().next().unwrap().to_owned());
        }
        if let Some(t) = line.split_whitespace().find(|w| w.starts_with("pc_")) {
            generated_token = Some(t.to_owned());
        }
        lines.push(line);
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    let lines = Arc::new(Mutex::new(lines));
    let more = lines.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = reader.next_line().await {
            more.lock().unwrap().push(support::strip_ansi(&line));
        }
    });
    Running {
        child,
        base: base.unwrap(),
        generated_token,
        lines,
    }
}

async fn stop(mut r: Running) {
    let pid = r.child.id().expect("running");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(10), r.child.wait())
        .await
        .expect("graceful shutdown in time")
        .unwrap();
    assert!(exit.success(), "exit status {exit}");
}

#[tokio::test]
async fn the_binary_serves_on_memory_prints_its_token_once_and_stops_on_sigterm() {
    let r = spawn(None, None).await;
    let all = r.log();
    assert!(all.contains("nothing persists"), "{all}");
    assert!(all.contains("(store: memory, role: all"), "{all}");
    assert!(
        r.base.starts_with("http://127.0.0.1:"),
        "listens on loopback: {}",
        r.base
    );
    let token = r
        .generated_token
        .clone()
        .expect("a generated token is printed");
    let client = {
        picloud_core::egress::install_crypto_provider();
        reqwest::Client::new()
    };
    let resp = client
        .get(format!("{}/api/v1/admin/apps", r.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let health = client
        .get(format!("{}/healthz", r.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    stop(r).await;
}

#[tokio::test]
async fn data_survives_a_restart_on_postgres() {
    let Some(url) = picloud::store::postgres::testing::fresh_database_url().await else {
        return;
    };
    let owner = support::random_token();
    let r = spawn(Some(&url), Some(&owner)).await;
    assert!(r.log().contains("(store: postgres, role: all"));
    let c = {
        picloud_core::egress::install_crypto_provider();
        reqwest::Client::new()
    };
    let base = r.base.clone();
    let post = |path: &str, body: Value| {
        c.post(format!("{base}{path}"))
            .bearer_auth(&owner)
            .json(&body)
            .send()
    };
    let user: Value = post(
        "/api/v1/admin/admins",
        json!({ "username": "mia", "password": "correct horse battery", "instance_role": "member" }),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let app = post(
        "/api/v1/admin/apps",
        json!({ "slug": "shop", "name": "Shop" }),
    );
    assert_eq!(app.await.unwrap().status(), 201);
    let grant = post(
        "/api/v1/admin/apps/shop/members",
        json!({ "user_id": user["id"], "role": "editor" }),
    );
    assert_eq!(grant.await.unwrap().status(), 201);
    let token: Value = post(
        "/api/v1/admin/tokens",
        json!({ "name": "ci", "app": "shop" }),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let scoped = token["token"].as_str().unwrap().to_owned();
    let deploy = c
        .put(format!("{base}/api/v1/admin/apps/shop/scripts/hello"))
        .bearer_auth(&owner)
        .body(r#"print("logged before shutdown"); "hi""#)
        .send()
        .await
        .unwrap();
    assert_eq!(deploy.status(), 201);
    let run = c
        .get(format!("{base}/run/shop/hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(run.text().await.unwrap(), "hi");
    // SIGTERM right after the invocation: its record is written on the way
    // out, not lost with the writer's queue.
    stop(r).await;

    // Same database, same bootstrap token: everything is still there.
    let r = spawn(Some(&url), Some(&owner)).await;
    r.log_line("warm: 1 live script compiled").await;
    let base = r.base.clone();
    let members: Value = c
        .get(format!("{base}/api/v1/admin/apps/shop/members"))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(members[0]["username"], "mia");
    assert_eq!(members[0]["role"], "editor");
    let logs: Value = c
        .get(format!(
            "{base}/api/v1/admin/apps/shop/scripts/hello/invocations"
        ))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let before = logs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["logs"] == json!(["logged before shutdown"]))
        .count();
    assert_eq!(before, 1, "the pre-shutdown invocation was kept: {logs}");
    let run = c
        .get(format!("{base}/run/shop/hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(run.text().await.unwrap(), "hi", "the script is live again");
    let app = c
        .get(format!("{base}/api/v1/admin/apps/shop"))
        .bearer_auth(&scoped)
        .send()
        .await
        .unwrap();
    assert_eq!(app.status(), 200, "the scoped token survived");
    let login = c
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({ "username": "mia", "password": "correct horse battery" }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200, "the password survived");
    let ready = c.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    stop(r).await;
}

/// Locked out on PostgreSQL (the owner revoked its only token, and `admin`
/// has no password): a restart with a new `PICLOUD_BOOTSTRAP_TOKEN` logs
/// that it is ignored, naming the recovery command, and `picloud admin
/// create-owner-token` run offline prints a token that works at once.
#[tokio::test]
async fn admin_create_owner_token_restores_access_on_postgres() {
    let Some(url) = picloud::store::postgres::testing::fresh_database_url().await else {
        return;
    };
    let first = support::random_token();
    let r = spawn(Some(&url), Some(&first)).await;
    let c = {
        picloud_core::egress::install_crypto_provider();
        reqwest::Client::new()
    };
    let base = r.base.clone();
    let created = c
        .post(format!("{base}/api/v1/admin/apps"))
        .bearer_auth(&first)
        .json(&json!({ "slug": "shop", "name": "Shop" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let tokens: Value = c
        .get(format!("{base}/api/v1/admin/tokens"))
        .bearer_auth(&first)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for t in tokens.as_array().unwrap() {
        let revoked = c
            .delete(format!(
                "{base}/api/v1/admin/tokens/{}",
                t["id"].as_str().unwrap()
            ))
            .bearer_auth(&first)
            .send()
            .await
            .unwrap();
        assert_eq!(revoked.status(), 204);
    }
    let apps = |token: String| {
        let (c, base) = (c.clone(), base.clone());
        async move {
            c.get(format!("{base}/api/v1/admin/apps"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(apps(first.clone()).await, 401, "locked out");
    stop(r).await;

    // A new bootstrap token changes nothing, and the log says so.
    let second = support::random_token();
    let r = spawn(Some(&url), Some(&second)).await;
    let log = r.log();
    assert!(
        log.contains("PICLOUD_BOOTSTRAP_TOKEN is ignored") && log.contains("create-owner-token"),
        "{log}"
    );
    let base = r.base.clone();
    let status = c
        .get(format!("{base}/api/v1/admin/apps"))
        .bearer_auth(&second)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);

    // Recovery, offline, while the server runs: the token is the only line
    // on standard output.
    let out = Command::new(env!("CARGO_BIN_EXE_picloud"))
        .args(["admin", "create-owner-token", "--database-url", &url])
        .env_remove("DATABASE_URL")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let token = stdout.trim();
    assert!(
        token.starts_with("pc_") && !token.contains('\n'),
        "{stdout:?}"
    );
    let listed: Value = c
        .get(format!("{base}/api/v1/admin/apps"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["slug"], "shop");
    assert_eq!(listed[0]["my_role"], "app_admin");
    stop(r).await;
}

/// A database that does not exist, or a server that refuses connections:
/// one message, on standard error, naming the server and the cause and
/// what to do; exit status 1; no serde or PostgreSQL source positions.
#[tokio::test]
async fn start_up_errors_name_the_server_and_the_cause_once() {
    let Some(url) = picloud::store::postgres::testing::fresh_database_url().await else {
        return;
    };
    let missing = format!(
        "{}/picloud_missing_{}",
        url.rsplit_once('/').unwrap().0,
        uuid::Uuid::new_v4().simple()
    );
    let refused = "postgres://postgres@127.0.0.1:1/x".to_owned();
    for (database_url, needles) in [
        (missing, ["has no database", "createdb"]),
        (
            refused,
            ["cannot reach PostgreSQL at 127.0.0.1:1", "is it running"],
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_picloud"))
            .env("PICLOUD_LISTEN", "127.0.0.1:0")
            .env("DATABASE_URL", &database_url)
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        for needle in needles {
            assert!(stderr.contains(needle), "{database_url}: {stderr}");
            let times = stderr.matches(needle).count() + stdout.matches(needle).count();
            assert_eq!(times, 1, "printed once: {stdout} {stderr}");
        }
        assert!(!stderr.contains(" at line "), "{stderr}");
    }
}

/// `--help` names the environment, and a script's failure is the app's
/// business: logged at INFO (target `picloud::script`) with the app, the
/// script, its version and the request id, never as a server ERROR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_names_the_environment_and_script_errors_are_logged_as_the_apps() {
    let help = Command::new(env!("CARGO_BIN_EXE_picloud"))
        .arg("--help")
        .output()
        .await
        .unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for needle in [
        "PICLOUD_BOOTSTRAP_TOKEN",
        "DATABASE_URL",
        "create-owner-token",
    ] {
        assert!(help.contains(needle), "{help}");
    }

    let owner = support::random_token();
    let r = spawn(None, Some(&owner)).await;
    let c = {
        picloud_core::egress::install_crypto_provider();
        reqwest::Client::new()
    };
    let base = r.base.clone();
    let created = c
        .post(format!("{base}/api/v1/admin/apps"))
        .bearer_auth(&owner)
        .json(&json!({ "slug": "shop", "name": "Shop" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let deployed = c
        .put(format!("{base}/api/v1/admin/apps/shop/scripts/bad"))
        .bearer_auth(&owner)
        .header("content-type", "text/plain")
        .body("let n = parse_int(request.query.n);\nn")
        .send()
        .await
        .unwrap();
    assert_eq!(deployed.status(), 201);
    let run = c
        .get(format!("{base}/run/shop/bad?n=abc"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(run.status(), 500);
    let line = r.log_line("trace-me-42").await;
    for needle in ["INFO", "picloud::script", "shop", "bad", "version=1", "abc"] {
        assert!(line.contains(needle), "{needle}: {line}");
    }
    let log = r.log();
    assert!(
        !log.contains("ERROR") && !log.contains("on_failure"),
        "a script's 500 is not the server's error:\n{log}"
    );
    stop(r).await;
}

/// SIGTERM ends the open log streams at once: with a grace period of a
/// minute, the process still exits within `stop`'s 10 s, and the stream's
/// reader sees its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_the_log_streams_instead_of_waiting_for_them() {
    let owner = support::random_token();
    let r = spawn_with(
        None,
        Some(&owner),
        &[("PICLOUD_SHUTDOWN_GRACE_MS", "60000")],
    )
    .await;
    let c = {
        picloud_core::egress::install_crypto_provider();
        reqwest::Client::new()
    };
    let base = r.base.clone();
    let created = c
        .post(format!("{base}/api/v1/admin/apps"))
        .bearer_auth(&owner)
        .json(&json!({ "slug": "shop", "name": "Shop" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let mut stream = c
        .get(format!("{base}/api/v1/admin/apps/shop/logs/stream"))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let reader = tokio::spawn(async move {
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = stream.chunk().await {
            body.extend_from_slice(&chunk);
        }
        body
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop(r).await;
    tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the stream ended with the server")
        .unwrap();
}
