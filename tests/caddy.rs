//! A real Caddy (Debian's 2.6.2) in front of PiCloud, with on-demand TLS
//! from its internal CA: HTTPS to a registered custom domain reaches the
//! app's script; an unregistered name fails the TLS handshake (Caddy's
//! `ask` to PiCloud said no). Also: `deploy/Caddyfile` validates.
//!
//! Caddy is found on the PATH. Missing, the tests say so loudly and pass,
//! except under `CI=true`, where they fail (`.ci/run` installs it). Every
//! connection stays on 127.0.0.1 (`curl --resolve`); Caddy uses its
//! internal CA only, so it makes no connection of its own. The deploy
//! Caddyfile itself runs in front of three nodes in `tests/cluster_caddy.rs`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use support::TestServer;

/// The `caddy` binary, or `None` (after saying so) when it is missing
/// outside CI.
fn caddy() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("caddy"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let message =
            "caddy is not installed (Debian: apt-get install caddy); the Caddy tests did not run";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
        eprintln!("SKIPPED: {message}");
    }
    found
}

/// A free TCP port on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Caddy running on a config, killed on drop.
struct Caddy(std::process::Child);

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `curl` over HTTPS to `name` on 127.0.0.1:`port` (no DNS): its exit
/// code and what it printed.
fn curl(name: &str, port: u16, path: &str) -> (i32, String) {
    let out = Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--insecure", // Caddy's internal CA is not in the system's store
            "--max-time",
            "10",
            "--resolve",
            &format!("{name}:{port}:127.0.0.1"),
            &format!("https://{name}:{port}{path}"),
        ])
        .output()
        .expect("curl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn write_config(dir: &Path, picloud_port: u16, http_port: u16, https_port: u16) -> PathBuf {
    let config = format!(
        r#"{{
	admin off
	skip_install_trust
	http_port {http_port}
	https_port {https_port}
	storage file_system {storage}
	on_demand_tls {{
		ask http://127.0.0.1:{picloud_port}/internal/tls-ask
	}}
}}

https:// {{
	tls internal {{
		on_demand
	}}
	reverse_proxy 127.0.0.1:{picloud_port}
}}
"#,
        storage = dir.join("storage").display(),
    );
    let path = dir.join("Caddyfile");
    std::fs::write(&path, config).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn https_to_a_custom_domain_reaches_its_script_and_an_unknown_name_does_not() {
    let Some(caddy) = caddy() else { return };
    let s = TestServer::memory().await;
    s.create_app("shop").await;
    let (status, body) = s
        .deploy(
            "shop",
            "hello",
            r#"#{ hello: "from shop", path: request.path }"#,
        )
        .await;
    assert!(status.is_success(), "{body}");
    let (status, body) = s
        .post(
            "/api/v1/admin/apps/shop/domains",
            &s.owner_token,
            json!({ "hostname": "shop.example.test" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let dir = std::env::temp_dir().join(format!("picloud-caddy-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (http_port, https_port) = (free_port(), free_port());
    let config = write_config(&dir, s.server.addr.port(), http_port, https_port);
    let log = std::fs::File::create(dir.join("caddy.log")).unwrap();
    let _caddy = Caddy(
        Command::new(&caddy)
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&config)
            .env("HOME", &dir)
            .env("XDG_DATA_HOME", dir.join("data"))
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("caddy starts"),
    );
    // Wait until Caddy listens.
    let mut listening = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", https_port))
            .await
            .is_ok()
        {
            listening = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let caddy_log = || std::fs::read_to_string(dir.join("caddy.log")).unwrap_or_default();
    assert!(listening, "caddy did not listen: {}", caddy_log());

    // The registered domain: a certificate is issued on demand, and the
    // request reaches the app's script, routed by Host.
    let (code, text) =
        tokio::task::spawn_blocking(move || curl("shop.example.test", https_port, "/hello/a?x=1"))
            .await
            .unwrap();
    assert_eq!(code, 0, "curl: {text}\ncaddy: {}", caddy_log());
    let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{text}"));
    assert_eq!(body, json!({ "hello": "from shop", "path": "/a" }));

    // An unregistered name: PiCloud's ask says 404, Caddy issues nothing,
    // the handshake fails.
    let (code, text) =
        tokio::task::spawn_blocking(move || curl("evil.example.test", https_port, "/hello"))
            .await
            .unwrap();
    assert_ne!(code, 0, "an unregistered name got an answer: {text}");
    assert!(
        !text.contains("from shop"),
        "an unregistered name reached the app: {text}"
    );

    // A domain removed: its certificate may stay in Caddy's cache, but
    // PiCloud no longer routes the name to the app.
    s.delete(
        "/api/v1/admin/apps/shop/domains/shop.example.test",
        &s.owner_token,
    )
    .await;
    let (_, text) =
        tokio::task::spawn_blocking(move || curl("shop.example.test", https_port, "/hello"))
            .await
            .unwrap();
    assert!(
        !text.contains("from shop"),
        "a removed domain still routes: {text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `deploy/Caddyfile` validates as shipped (its defaults: three nodes on
/// one machine, deploy/README.md), and as deploy/README.md configures it
/// for three machines with roles, through the variables it reads.
#[test]
fn the_deploy_caddyfile_validates() {
    let Some(caddy) = caddy() else { return };
    const VARS: [&str; 5] = [
        "PICLOUD_SITE",
        "PICLOUD_API_NODES",
        "PICLOUD_WORKER_NODES",
        "PICLOUD_TLS_ASK_PORT",
        "PICLOUD_CADDY_OPTIONS",
    ];
    let shipped: &[(&str, &str)] = &[];
    let three_machines: &[(&str, &str)] = &[
        ("PICLOUD_SITE", "picloud.example.com"),
        ("PICLOUD_API_NODES", "10.0.0.1:8080"),
        ("PICLOUD_WORKER_NODES", "10.0.0.2:8080 10.0.0.3:8080"),
        ("PICLOUD_CADDY_OPTIONS", "email ops@example.com"),
    ];
    let local: &[(&str, &str)] = &[("PICLOUD_SITE", "http://:8080")];
    for env in [shipped, three_machines, local] {
        let dir =
            std::env::temp_dir().join(format!("picloud-caddy-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmd = Command::new(&caddy);
        cmd.args(["validate", "--adapter", "caddyfile", "--config"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/Caddyfile"))
            .env("HOME", &dir)
            .env("XDG_DATA_HOME", dir.join("data"))
            .env("XDG_CONFIG_HOME", dir.join("config"));
        for var in VARS {
            cmd.env_remove(var);
        }
        let out = cmd
            .envs(env.iter().copied())
            .output()
            .expect("caddy validate runs");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            out.status.success(),
            "with {env:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
