//! The client commands of the real `picloud` binary, run as a user runs
//! them (a subprocess with its own HOME and config directory) against a
//! real `picloud` server process on 127.0.0.1: login and the stored token,
//! deploy, invoke, logs --follow, push and pull, dev without a server,
//! `--json`, and the exit codes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_picloud");
/// The bootstrap owner's token of every test server.
const OWNER: &str = "pc_cli_tests_owner_token_0123456789abcdef";

/// A `picloud` server process on the memory store.
struct Server {
    _child: Child,
    base: String,
}

impl Server {
    async fn start() -> Self {
        let mut child = Command::new(BIN)
            .env("PICLOUD_LISTEN", "127.0.0.1:0")
            .env("PICLOUD_BOOTSTRAP_TOKEN", OWNER)
            .env("RUST_LOG", "info")
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the server starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let base = loop {
            let line = tokio::time::timeout_at(deadline, lines.next_line())
                .await
                .expect("the server became ready in time")
                .expect("stdout readable")
                .expect("the server did not exit");
            if let Some(rest) = line.split("picloud ready on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        assert!(base.starts_with("http://127.0.0.1:"), "{base}");
        Self {
            _child: child,
            base,
        }
    }

    /// `GET path` with the owner's token, as JSON.
    async fn get(&self, path: &str) -> Value {
        let resp = {
            picloud_core::egress::install_crypto_provider();
            reqwest::Client::new()
        }
        .get(format!("{}{path}", self.base))
        .bearer_auth(OWNER)
        .send()
        .await
        .unwrap();
        assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
        resp.json().await.unwrap()
    }

    /// Each script of `app` with its latest version.
    async fn versions(&self, app: &str) -> Vec<(String, u64)> {
        let list = self.get(&format!("/api/v1/admin/apps/{app}/scripts")).await;
        list.as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap().to_owned(),
                    s["latest_version"].as_u64().unwrap(),
                )
            })
            .collect()
    }
}

/// A fresh directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "picloud-cli-test-{}-{name}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn write(&self, relative: &str, text: &str) -> PathBuf {
        let path = self.0.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What one run of the CLI did.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn ok(self) -> Self {
        assert_eq!(self.code, 0, "expected success: {self:?}");
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

/// The CLI with `home` as its HOME (config in `home/.config`), none of the
/// PiCloud variables of the test's own environment, and `env` added.
fn cli(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("NO_COLOR", "1");
    for var in [
        "PICLOUD_URL",
        "PICLOUD_TOKEN",
        "DATABASE_URL",
        "http_proxy",
        "HTTP_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs the CLI to its end, `stdin` as its standard input.
async fn run_with_stdin(home: &Path, env: &[(&str, &str)], args: &[&str], stdin: &str) -> Out {
    let mut cmd = cli(home, env, args);
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().expect("the CLI starts");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the CLI finished in time")
        .unwrap();
    Out {
        code: output.status.code().expect("exited"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs the CLI to its end, with no standard input.
async fn run(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Out {
    run_with_stdin(home, env, args, "").await
}

/// A home logged in to `server` with the owner's token.
async fn logged_in(server: &Server, name: &str) -> TempDir {
    let home = TempDir::new(name);
    run(home.path(), &[], &["login", &server.base, "--token", OWNER])
        .await
        .ok();
    home
}

#[tokio::test]
async fn login_with_a_password_or_a_token_stores_it_0600_and_the_variables_override_it() {
    let server = Server::start().await;
    // The bootstrap owner `admin` sets its first password.
    let resp = {
        picloud_core::egress::install_crypto_provider();
        reqwest::Client::new()
    }
    .put(format!("{}/api/v1/admin/me/password", server.base))
    .bearer_auth(OWNER)
    .json(&json!({ "new_password": "correct horse battery" }))
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 204);

    // Username and password on standard input (not a terminal).
    let home = TempDir::new("login");
    let out = run_with_stdin(
        home.path(),
        &[],
        &["login", &server.base],
        "admin\ncorrect horse battery\n",
    )
    .await
    .ok();
    assert!(out.stderr.contains("as admin"), "{out:?}");
    let config = home.path().join(".config/picloud/config.toml");
    let text = std::fs::read_to_string(&config).expect("the config file exists");
    assert!(text.contains(&server.base), "{text}");
    assert!(text.contains("token = \"pc_"), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&config).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    }

    // A later command needs no PICLOUD_TOKEN.
    run(
        home.path(),
        &[],
        &["apps", "create", "shop", "--name", "Shop"],
    )
    .await
    .ok();
    let apps = run(home.path(), &[], &["--json", "apps", "list"])
        .await
        .ok();
    assert_eq!(apps.json()[0]["slug"], "shop");

    // `--username` and `--password-stdin`; a wrong password is exit 1.
    let out = run_with_stdin(
        home.path(),
        &[],
        &["login", &server.base, "-u", "admin", "--password-stdin"],
        "wrong password\n",
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.starts_with("picloud: "), "{out:?}");

    // A token login checks the token first: a bad one is not stored.
    let other = TempDir::new("login-token");
    let out = run(
        other.path(),
        &[],
        &["login", &server.base, "--token", "pc_not_a_real_token"],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(!other.path().join(".config/picloud/config.toml").exists());
    run(
        other.path(),
        &[],
        &["login", &server.base, "--token", OWNER],
    )
    .await
    .ok();
    let out = run(other.path(), &[], &["apps", "list"]).await.ok();
    assert!(out.stdout.contains("shop"), "{out:?}");

    // PICLOUD_URL and PICLOUD_TOKEN, with no stored login at all.
    let empty = TempDir::new("login-env");
    let out = run(empty.path(), &[], &["apps", "list"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("picloud login"), "{out:?}");
    let env = [
        ("PICLOUD_URL", server.base.as_str()),
        ("PICLOUD_TOKEN", OWNER),
    ];
    let out = run(empty.path(), &env, &["apps", "list"]).await.ok();
    assert!(out.stdout.contains("shop"), "{out:?}");

    // ... and over a stored login: a bad token, or a server that is not
    // there, fails where the stored login would have worked.
    let out = run(
        home.path(),
        &[("PICLOUD_TOKEN", "pc_revoked_or_made_up")],
        &["apps", "list"],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    // The stored token goes only to the stored server.
    let out = run(
        home.path(),
        &[("PICLOUD_URL", "http://127.0.0.1:9")],
        &["apps", "list"],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("no token for http://127.0.0.1:9"),
        "{out:?}"
    );
    let out = run(
        home.path(),
        &[
            ("PICLOUD_URL", "http://127.0.0.1:9"),
            ("PICLOUD_TOKEN", OWNER),
        ],
        &["apps", "list"],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("cannot reach http://127.0.0.1:9"),
        "{out:?}"
    );

    // No TLS in this build: https:// is refused in words.
    let out = run(
        empty.path(),
        &[],
        &["login", "https://picloud.example", "--token", OWNER],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("without TLS"), "{out:?}");

    run(home.path(), &[], &["logout"]).await.ok();
    assert!(!config.exists());
}

#[tokio::test]
async fn deploy_makes_a_version_then_unchanged_and_a_compile_error_names_its_line() {
    let server = Server::start().await;
    let home = logged_in(&server, "deploy").await;
    run(home.path(), &[], &["apps", "create", "shop"])
        .await
        .ok();
    let file = home.write("hello.rhai", "\"hello\"\n");

    let out = run(
        home.path(),
        &[],
        &["deploy", file.to_str().unwrap(), "--app", "shop"],
    )
    .await
    .ok();
    assert!(out.stdout.contains("hello: version 1"), "{out:?}");
    let out = run(
        home.path(),
        &[],
        &["deploy", file.to_str().unwrap(), "--app", "shop"],
    )
    .await
    .ok();
    assert!(out.stdout.contains("unchanged"), "{out:?}");
    assert_eq!(server.versions("shop").await, [("hello".to_owned(), 1)]);

    // --json: the server's answer; --name overrides the file's stem.
    let out = run(
        home.path(),
        &[],
        &[
            "--json",
            "deploy",
            file.to_str().unwrap(),
            "--app",
            "shop",
            "--name",
            "greet",
        ],
    )
    .await
    .ok();
    let body = out.json();
    assert_eq!(body["name"], "greet");
    assert_eq!(body["live_version"], 1);
    assert_eq!(body["unchanged"], false);

    std::fs::write(&file, "\"hello again\"\n").unwrap();
    let out = run(
        home.path(),
        &[],
        &["deploy", file.to_str().unwrap(), "--app", "shop"],
    )
    .await
    .ok();
    assert!(out.stdout.contains("hello: version 2"), "{out:?}");

    let bad = home.write("broken.rhai", "let a = 1;\nlet b = ;\n");
    let out = run(
        home.path(),
        &[],
        &["deploy", bad.to_str().unwrap(), "--app", "shop"],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("broken.rhai:2:"), "{out:?}");
    assert!(out.stderr.contains("compile error"), "{out:?}");
    let mut versions = server.versions("shop").await;
    versions.sort();
    assert_eq!(
        versions,
        [("greet".to_owned(), 1), ("hello".to_owned(), 2)],
        "nothing stored for the broken script"
    );

    // The versions, a rollback, the source.
    let out = run(home.path(), &[], &["scripts", "versions", "shop", "hello"])
        .await
        .ok();
    assert!(out.stdout.contains("VERSION"), "{out:?}");
    let out = run(
        home.path(),
        &[],
        &["scripts", "rollback", "shop", "hello", "1"],
    )
    .await
    .ok();
    assert!(out.stdout.contains("live version 1"), "{out:?}");
    let out = run(home.path(), &[], &["scripts", "source", "shop", "hello"])
        .await
        .ok();
    assert_eq!(out.stdout, "\"hello\"\n");
    run(home.path(), &[], &["scripts", "delete", "shop", "greet"])
        .await
        .ok();
    assert_eq!(server.versions("shop").await.len(), 1);
}

#[tokio::test]
async fn invoke_prints_the_body_and_passes_data_headers_method_and_path() {
    let server = Server::start().await;
    let home = logged_in(&server, "invoke").await;
    run(home.path(), &[], &["apps", "create", "shop"])
        .await
        .ok();
    let echo = home.write(
        "echo.rhai",
        r#"#{ method: request.method, path: request.path, q: request.query.q ?? "",
              who: request.headers["x-who"] ?? "", body: request.body }"#,
    );
    run(
        home.path(),
        &[],
        &["deploy", echo.to_str().unwrap(), "--app", "shop"],
    )
    .await
    .ok();
    let hello = home.write("hello.rhai", "\"hello, world\"");
    run(
        home.path(),
        &[],
        &["deploy", hello.to_str().unwrap(), "--app", "shop"],
    )
    .await
    .ok();

    let out = run(home.path(), &[], &["invoke", "shop", "hello"])
        .await
        .ok();
    assert_eq!(out.stdout, "hello, world");
    assert!(out.stderr.contains("HTTP 200"), "{out:?}");

    let out = run(
        home.path(),
        &[],
        &[
            "invoke",
            "shop",
            "echo",
            "--data",
            "ping",
            "--header",
            "X-Who: ann",
        ],
    )
    .await
    .ok();
    let body: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(body["method"], "POST", "--data makes it a POST");
    assert_eq!(body["body"], "ping");
    assert_eq!(body["who"], "ann");
    assert_eq!(body["path"], "/");

    let out = run(
        home.path(),
        &[],
        &[
            "--json", "invoke", "shop", "echo", "-X", "put", "--path", "/a/b?q=7",
        ],
    )
    .await
    .ok();
    let answer = out.json();
    assert_eq!(answer["status"], 200);
    let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["method"], "PUT");
    assert_eq!(body["path"], "/a/b");
    assert_eq!(body["q"], "7");

    // An unknown script: exit 1, the server's message.
    let out = run(home.path(), &[], &["invoke", "shop", "nope"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("HTTP 404"), "{out:?}");
}

#[tokio::test]
async fn logs_follow_prints_a_record_as_soon_as_the_script_ran() {
    let server = Server::start().await;
    let home = logged_in(&server, "logs").await;
    run(home.path(), &[], &["apps", "create", "shop"])
        .await
        .ok();
    let file = home.write("tick.rhai", "print(\"tick logged\"); \"tock\"");
    run(
        home.path(),
        &[],
        &["deploy", file.to_str().unwrap(), "--app", "shop"],
    )
    .await
    .ok();

    let mut follower = cli(home.path(), &[], &["logs", "shop", "--follow"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(follower.stdout.take().unwrap()).lines();
    let mut stderr = BufReader::new(follower.stderr.take().unwrap()).lines();
    // It says so once the stream is open (the server subscribed).
    let ready = tokio::time::timeout(Duration::from_secs(20), stderr.next_line())
        .await
        .expect("the follower connected in time")
        .unwrap()
        .expect("a line on stderr");
    assert!(ready.contains("following"), "{ready}");

    let started = Instant::now();
    let resp = reqwest::get(format!("{}/run/shop/tick", server.base))
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "tock");
    let line = tokio::time::timeout(Duration::from_secs(5), stdout.next_line())
        .await
        .expect("a record arrived within seconds")
        .unwrap()
        .expect("a line on stdout");
    let waited = started.elapsed();
    assert!(line.contains("tick"), "{line}");
    assert!(line.contains(" 200 "), "{line}");
    let logged = tokio::time::timeout(Duration::from_secs(5), stdout.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(logged.contains("tick logged"), "{logged}");
    // Well within the five seconds allowed above: the tail pushes each
    // run as it is recorded (generous, for a loaded CI machine).
    assert!(waited < Duration::from_secs(5), "took {waited:?}");
    follower.kill().await.unwrap();

    // Without --follow: the recent records, and as JSON.
    let out = run(home.path(), &[], &["logs", "shop", "--script", "tick"])
        .await
        .ok();
    assert!(out.stdout.contains("tick logged"), "{out:?}");
    let out = run(home.path(), &[], &["--json", "logs", "shop"])
        .await
        .ok();
    let records = out.json();
    assert_eq!(records[0]["script"], "tick");
    assert_eq!(records[0]["status"], 200);
}

#[tokio::test]
async fn push_is_idempotent_and_a_fresh_pull_pushes_back_with_no_new_version() {
    let server = Server::start().await;
    let home = logged_in(&server, "push").await;
    let project = TempDir::new("project");
    project.write(
        "picloud.toml",
        "app = \"shop\"\nname = \"The shop\"\n\n[scripts]\nhello = \"scripts/hello.rhai\"\n\
         echo = \"scripts/echo.rhai\"\n\n[limits]\nwall_clock_ms = 2000\n",
    );
    project.write("scripts/hello.rhai", "// greets\n\"hello\"\n");
    project.write("scripts/echo.rhai", "request.body\n");
    let dir = project.path().to_str().unwrap();

    // The first push creates the app, sets the limit, deploys both.
    let out = run(home.path(), &[], &["push", dir]).await.ok();
    assert!(out.stdout.contains("Created app shop"), "{out:?}");
    let app = server.get("/api/v1/admin/apps/shop").await;
    assert_eq!(app["name"], "The shop");
    let limits = server.get("/api/v1/admin/apps/shop/limits").await;
    assert_eq!(limits["wall_clock_ms"], 2000);
    let mut before = server.versions("shop").await;
    before.sort();
    assert_eq!(before, [("echo".to_owned(), 1), ("hello".to_owned(), 1)]);

    // Again: nothing new.
    let out = run(home.path(), &[], &["--json", "push", dir]).await.ok();
    let report = out.json();
    assert_eq!(report["created_app"], false);
    assert!(
        report["scripts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["unchanged"] == true),
        "{report}"
    );
    let mut after = server.versions("shop").await;
    after.sort();
    assert_eq!(after, before);

    // One file changed: only that script gets a version.
    project.write("scripts/echo.rhai", "\"echo: \" + request.body\n");
    run(home.path(), &[], &["push", dir]).await.ok();
    let mut after = server.versions("shop").await;
    after.sort();
    assert_eq!(after, [("echo".to_owned(), 2), ("hello".to_owned(), 1)]);

    // A pull into an empty directory, pushed back: no new version.
    let pulled = TempDir::new("pulled");
    let target = pulled.path().join("shop");
    run(
        home.path(),
        &[],
        &["pull", "--app", "shop", target.to_str().unwrap()],
    )
    .await
    .ok();
    assert_eq!(
        std::fs::read_to_string(target.join("scripts/hello.rhai")).unwrap(),
        "// greets\n\"hello\"\n"
    );
    assert_eq!(
        std::fs::read_to_string(target.join("scripts/echo.rhai")).unwrap(),
        "\"echo: \" + request.body\n"
    );
    let toml = std::fs::read_to_string(target.join("picloud.toml")).unwrap();
    assert!(toml.contains("app = \"shop\""), "{toml}");
    assert!(toml.contains("wall_clock_ms = 2000"), "{toml}");
    let out = run(home.path(), &[], &["push", target.to_str().unwrap()])
        .await
        .ok();
    assert_eq!(out.stdout.matches("unchanged").count(), 2, "{out:?}");
    let mut again = server.versions("shop").await;
    again.sort();
    assert_eq!(again, after);

    // A pull of another app into that directory is refused.
    run(home.path(), &[], &["apps", "create", "blog"])
        .await
        .ok();
    let out = run(
        home.path(),
        &[],
        &["pull", "--app", "blog", target.to_str().unwrap()],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");

    // A script that does not compile: the others still go, exit 1.
    project.write("scripts/hello.rhai", "let = 1;\n");
    project.write("scripts/echo.rhai", "\"echo 3\"\n");
    let out = run(home.path(), &[], &["push", dir]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("hello.rhai:1:"), "{out:?}");
    let mut last = server.versions("shop").await;
    last.sort();
    assert_eq!(last, [("echo".to_owned(), 3), ("hello".to_owned(), 1)]);
}

#[tokio::test]
async fn dev_runs_a_script_locally_with_no_server() {
    let home = TempDir::new("dev");
    let file = home.write(
        "api.rhai",
        "print(\"got \" + request.method);\ndebug(request.path);\n\
         response(201, #{ m: request.method, p: request.path, q: request.query.k ?? \"\",\n\
           h: request.headers[\"x-a\"] ?? \"\", b: request.body }, #{ \"x-dev\": \"yes\" })\n",
    );
    let path = file.to_str().unwrap();

    // No login, no PICLOUD_URL: the defaults, GET /.
    let out = run(home.path(), &[], &["dev", path]).await.ok();
    assert!(out.stdout.contains("got GET"), "{out:?}");
    assert!(out.stdout.contains("HTTP 201"), "{out:?}");
    assert!(out.stdout.contains("x-dev: yes"), "{out:?}");
    assert!(
        out.stdout.contains("content-type: application/json"),
        "{out:?}"
    );

    let request = r#"{"method": "put", "path": "/x/y", "query": {"k": "v"},
                      "headers": {"X-A": "b"}, "body": "hi"}"#;
    let out = run(
        home.path(),
        &[],
        &["--json", "dev", path, "--request", request],
    )
    .await
    .ok();
    let answer = out.json();
    assert_eq!(answer["status"], 201);
    assert_eq!(answer["headers"]["x-dev"], "yes");
    assert_eq!(answer["logs"][0], "got PUT");
    assert!(
        answer["logs"][1].as_str().unwrap().contains("/x/y"),
        "{answer}"
    );
    let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({ "m": "PUT", "p": "/x/y", "q": "v", "h": "b", "b": "hi" })
    );

    // Strict variables, as a deploy: an undefined one is a compile error.
    let undefined = home.write("undefined.rhai", "let a = 1;\nfoo + a\n");
    let out = run(home.path(), &[], &["dev", undefined.to_str().unwrap()]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("undefined.rhai:2:"), "{out:?}");

    // A runtime error: its logs, then exit 1 with the line.
    let failing = home.write("fail.rhai", "print(\"before\");\nthrow \"boom\";\n");
    let out = run(home.path(), &[], &["dev", failing.to_str().unwrap()]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("before"), "{out:?}");
    assert!(out.stderr.contains("boom"), "{out:?}");
    assert!(out.stderr.contains("line 2"), "{out:?}");

    // A request that is not JSON is a usage error.
    let out = run(home.path(), &[], &["dev", path, "--request", "{nope"]).await;
    assert_eq!(out.code, 2, "{out:?}");
}

#[tokio::test]
async fn json_output_is_the_servers_json() {
    let server = Server::start().await;
    let home = logged_in(&server, "json").await;
    run(home.path(), &[], &["apps", "create", "shop"])
        .await
        .ok();
    run(home.path(), &[], &["apps", "create", "blog"])
        .await
        .ok();
    let file = home.write("hello.rhai", "\"hi\"");
    run(
        home.path(),
        &[],
        &["deploy", file.to_str().unwrap(), "--app", "shop"],
    )
    .await
    .ok();

    let apps = run(home.path(), &[], &["apps", "list", "--json"])
        .await
        .ok()
        .json();
    let mut slugs: Vec<&str> = apps
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["slug"].as_str().unwrap())
        .collect();
    slugs.sort();
    assert_eq!(slugs, ["blog", "shop"]);

    let scripts = run(home.path(), &[], &["--json", "scripts", "list", "shop"])
        .await
        .ok()
        .json();
    assert_eq!(scripts[0]["name"], "hello");
    assert_eq!(scripts[0]["live_version"], 1);

    // Without --json, a table.
    let table = run(home.path(), &[], &["scripts", "list", "shop"])
        .await
        .ok();
    assert!(table.stdout.starts_with("NAME"), "{table:?}");
    assert!(serde_json::from_str::<Value>(&table.stdout).is_err());

    run(home.path(), &[], &["apps", "delete", "blog"])
        .await
        .ok();
    let apps = run(home.path(), &[], &["--json", "apps", "list"])
        .await
        .ok()
        .json();
    assert_eq!(apps.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn errors_exit_1_with_the_servers_message_and_usage_errors_exit_2() {
    let server = Server::start().await;
    let home = logged_in(&server, "errors").await;
    let file = home.write("hello.rhai", "\"hi\"");

    let out = run(home.path(), &[], &["scripts", "list", "nope"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.stderr.trim(), "picloud: app not found: nope");
    assert!(out.stdout.is_empty(), "{out:?}");

    let out = run(
        home.path(),
        &[],
        &["deploy", file.to_str().unwrap(), "--app", "nope"],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("app not found: nope"), "{out:?}");

    let out = run(home.path(), &[], &["logs", "nope"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("app not found: nope"), "{out:?}");

    // Usage errors: clap's exit code 2.
    let out = run(home.path(), &[], &["deploy", file.to_str().unwrap()]).await;
    assert_eq!(out.code, 2, "--app is required: {out:?}");
    let out = run(home.path(), &[], &["apps", "frobnicate"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    let out = run(
        home.path(),
        &[],
        &["invoke", "shop", "hello", "--header", "no colon"],
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");

    // The help lists the new commands next to the server's.
    let help = run(home.path(), &[], &["--help"]).await.ok();
    for command in [
        "serve", "migrate", "admin", "login", "apps", "deploy", "scripts", "invoke", "logs",
        "push", "pull", "dev",
    ] {
        assert!(
            help.stdout.contains(&format!("\n  {command} ")),
            "{command}: {help:?}"
        );
    }
}
