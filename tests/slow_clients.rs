//! Slow and oversized clients against the real binary, over raw TCP on
//! 127.0.0.1: the header read timeout, the request body deadline (a JSON
//! 408), the connection cap, the bounded shutdown after SIGTERM, and the
//! statuses of over-long URIs and headers (JSON where the router answers,
//! hyper's empty body where hyper does).

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

struct Server {
    child: Child,
    addr: String,
}

/// Starts the binary on the memory store with `env`, and waits for its
/// ready line.
async fn spawn(env: &[(&str, &str)]) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_picloud"));
    cmd.env("PICLOUD_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .env(
            "PICLOUD_BOOTSTRAP_TOKEN",
            "slow_clients_test_token_0123456789abcdef",
        )
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("the binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let addr = loop {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .expect("the server became ready in time")
            .expect("stdout readable")
            .expect("the server did not exit");
        if let Some(rest) = support::strip_ansi(&line)
            .split("picloud ready on http://")
            .nth(1)
        {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Server { child, addr }
}

impl Server {
    async fn connect(&self) -> TcpStream {
        TcpStream::connect(&self.addr).await.expect("connect")
    }

    fn sigterm(&self) {
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// A full `GET /healthz` on a fresh connection answers 200.
    async fn healthy(&self) {
        let mut s = self.connect().await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let (status, _) = within(5, read_response(&mut s)).await;
        assert_eq!(status, 200);
    }
}

async fn within<T>(secs: u64, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("not done within {secs} s"))
}

/// Reads one response (a `Content-Length` body): its status and body.
async fn read_response(s: &mut TcpStream) -> (u16, Vec<u8>) {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.expect("read");
        assert!(n > 0, "closed before a response: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while buf.len() < head_end + len {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.expect("read");
        assert!(n > 0, "closed mid-body");
        buf.extend_from_slice(&chunk[..n]);
    }
    (status, buf[head_end..head_end + len].to_vec())
}

/// Reads until the server closes the connection (EOF or reset); returns
/// what it sent.
async fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
        }
    }
}

fn error_message(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).expect("a JSON body");
    v["error"].as_str().expect("an error message").to_owned()
}

#[tokio::test]
async fn a_client_stalled_mid_headers_is_disconnected_after_the_header_timeout() {
    let server = spawn(&[("PICLOUD_HEADER_TIMEOUT_MS", "500")]).await;
    let started = Instant::now();
    let mut stalled = server.connect().await;
    stalled
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        .await
        .unwrap();
    // Meanwhile the server serves others.
    server.healthy().await;
    let sent = within(5, read_until_closed(&mut stalled)).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400),
        "closed after {waited:?}, before the timeout"
    );
    assert!(
        sent.is_empty() || sent.starts_with(b"HTTP/1.1 408"),
        "no response but a timeout: {}",
        String::from_utf8_lossy(&sent)
    );
    server.healthy().await;
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_header_timeout() {
    let server = spawn(&[("PICLOUD_HEADER_TIMEOUT_MS", "500")]).await;
    let mut s = server.connect().await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(within(5, read_response(&mut s)).await.0, 200);
    let idle = Instant::now();
    let sent = within(5, read_until_closed(&mut s)).await;
    assert!(sent.is_empty(), "{}", String::from_utf8_lossy(&sent));
    // Not closed right after the response, but by the timer.
    assert!(
        idle.elapsed() >= Duration::from_millis(250),
        "{:?}",
        idle.elapsed()
    );
}

#[tokio::test]
async fn a_trickling_body_gets_a_json_408_at_the_body_deadline() {
    let server = spawn(&[("PICLOUD_BODY_TIMEOUT_MS", "500")]).await;
    let mut s = server.connect().await;
    s.write_all(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\n\
          Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{",
    )
    .await
    .unwrap();
    let started = Instant::now();
    // One byte every 100 ms: never idle for long, yet past the deadline.
    let (mut rd, mut wr) = s.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if wr.write_all(b" ").await.is_err() {
                break;
            }
        }
    });
    let mut buf = Vec::new();
    within(5, async {
        let mut chunk = [0u8; 4096];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    trickle.abort();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300), "after {waited:?}");
    let text = String::from_utf8_lossy(&buf).into_owned();
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    let body = &buf[buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
    assert!(error_message(body).contains("500 ms"), "{text}");
    server.healthy().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let server = spawn(&[("PICLOUD_MAX_CONNECTIONS", "2")]).await;
    let get = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
    // Two kept-alive connections, served once each: both hold a slot.
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    for s in [&mut a, &mut b] {
        s.write_all(get).await.unwrap();
        assert_eq!(within(5, read_response(s)).await.0, 200);
    }
    // The third connects (the kernel's backlog) but is not served...
    let mut c = server.connect().await;
    c.write_all(get).await.unwrap();
    let mut byte = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), c.read(&mut byte))
            .await
            .is_err(),
        "served beyond the cap"
    );
    // ...until one of the two closes.
    drop(a);
    assert_eq!(within(5, read_response(&mut c)).await.0, 200);
    drop(b);
    drop(c);
    // Both slots free again: two fresh clients are served in turn.
    server.healthy().await;
    server.healthy().await;
}

#[tokio::test]
async fn sigterm_with_stalled_clients_exits_zero_after_the_grace_period() {
    let mut server = spawn(&[("PICLOUD_SHUTDOWN_GRACE_MS", "1000")]).await;
    let mut stalled = server.connect().await;
    stalled
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    let trickling = server.connect().await;
    let (_rd, mut wr) = trickling.into_split();
    wr.write_all(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\n\
          Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
    )
    .await
    .unwrap();
    let trickle = tokio::spawn(async move {
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if wr.write_all(b" ").await.is_err() {
                break;
            }
        }
    });
    // Connections are accepted in order: once a later one is served, both
    // slow ones are open on the server.
    server.healthy().await;
    let started = Instant::now();
    server.sigterm();
    let exit = within(8, server.child.wait()).await.unwrap();
    let took = started.elapsed();
    trickle.abort();
    assert!(exit.success(), "exit status {exit}");
    assert!(
        took >= Duration::from_millis(800),
        "the grace period was not given: {took:?}"
    );
    assert!(
        took < Duration::from_millis(1000 + 3000),
        "took {took:?}, beyond the grace period and a margin"
    );
    // The stalled client was cut off, with no response.
    let sent = within(2, read_until_closed(&mut stalled)).await;
    assert!(sent.is_empty(), "{}", String::from_utf8_lossy(&sent));
}

#[tokio::test]
async fn oversized_heads_get_json_from_the_router_and_empty_bodies_from_hyper() {
    let server = spawn(&[]).await;
    let server = &server;
    let exchange = |request: Vec<u8>| async move {
        let mut s = server.connect().await;
        s.write_all(&request).await.unwrap();
        within(5, read_response(&mut s)).await
    };

    // A 10 KiB path: over the router's 8 KiB, a JSON 414.
    let long_path = format!("/{}", "a".repeat(10 * 1024));
    let (status, body) =
        exchange(format!("GET {long_path} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()).await;
    assert_eq!(status, 414);
    assert!(error_message(&body).contains("URI"));

    // 40 KiB of headers: over the router's 32 KiB, a JSON 431.
    let big = "b".repeat(40 * 1024);
    let (status, body) =
        exchange(format!("GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {big}\r\n\r\n").into_bytes())
            .await;
    assert_eq!(status, 431);
    assert!(error_message(&body).contains("headers"));

    // 100 KiB of headers: over hyper's 64 KiB head limit. Hyper answers
    // before any service runs: 431 with an empty body.
    let huge = "h".repeat(100 * 1024);
    let (status, body) =
        exchange(format!("GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {huge}\r\n\r\n").into_bytes())
            .await;
    assert_eq!(status, 431);
    assert!(body.is_empty());

    // More than 100 headers: hyper's 431, empty.
    let many: String = (0..120).map(|i| format!("X-H{i}: v\r\n")).collect();
    let (status, body) =
        exchange(format!("GET /healthz HTTP/1.1\r\nHost: t\r\n{many}\r\n").into_bytes()).await;
    assert_eq!(status, 431);
    assert!(body.is_empty());

    // A malformed request line: hyper's 400, empty.
    let (status, body) = exchange(b"GET /\x01 HTTP/1.1\r\nHost: t\r\n\r\n".to_vec()).await;
    assert_eq!(status, 400);
    assert!(body.is_empty());

    server.healthy().await;
}

/// A client that stops reading an answer: once a write has made no
/// progress for the write timeout, the connection closes and the answer it
/// held is freed (the second attack held 1 GB with 500 such clients).
#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_after_the_write_timeout() {
    let server = spawn(&[("PICLOUD_WRITE_TIMEOUT_MS", "500")]).await;
    let token = "slow_clients_test_token_0123456789abcdef";
    let client = {
        picloud_core::egress::install_crypto_provider();
        reqwest::Client::new()
    };
    let base = format!("http://{}", server.addr);
    let status = |r: reqwest::Response| r.status().as_u16();
    let created = client
        .post(format!("{base}/api/v1/admin/apps"))
        .bearer_auth(token)
        .json(&serde_json::json!({"slug": "big", "name": "Big"}))
        .send()
        .await
        .unwrap();
    assert_eq!(status(created), 201);
    let limits = client
        .put(format!("{base}/api/v1/admin/apps/big/limits"))
        .bearer_auth(token)
        .json(&serde_json::json!({"max_string_bytes": 16 * 1024 * 1024}))
        .send()
        .await
        .unwrap();
    assert_eq!(status(limits), 200);
    let deployed = client
        .put(format!("{base}/api/v1/admin/apps/big/scripts/answer"))
        .bearer_auth(token)
        .body("let s = \"x\"; s.pad(16000000, \"x\"); s")
        .send()
        .await
        .unwrap();
    assert_eq!(status(deployed), 201);

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(server.addr.parse().unwrap()).await.unwrap();
    s.write_all(b"GET /run/big/answer HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    // Read nothing while the server's writes stall, then drain.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let sent = within(10, read_until_closed(&mut s)).await;
    assert!(
        sent.len() < 16_000_000,
        "the whole answer was sent ({} bytes): the connection was not cut",
        sent.len()
    );
    server.healthy().await;
}
