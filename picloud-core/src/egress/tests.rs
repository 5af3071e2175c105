//! The client against real HTTP servers on loopback.
//!
//! Every connection a test makes goes to 127.0.0.0/8 or ::1, and every
//! name is resolved by a [`StaticResolver`]: no test touches another
//! network or sends a DNS query. Each server counts the connections it
//! accepted, so "refused" is proven by a listener that saw nothing.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::*;

/// A request as the test server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the test server answers.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    delay: Duration,
}

impl Reply {
    fn ok(body: impl Into<Vec<u8>>) -> Self {
        Self {
            status: 200,
            headers: Vec::new(),
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    fn redirect(status: u16, location: &str) -> Self {
        Self::ok("")
            .with_header("location", location)
            .status(status)
    }

    fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// A one-request-per-connection HTTP/1.1 server on a loopback listener.
struct Server {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(bind: &str, handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        let addr: SocketAddr = bind.parse().unwrap();
        assert!(
            addr.ip().is_loopback(),
            "test servers listen on loopback only"
        );
        Self::on(TcpListener::bind(addr).await.unwrap(), handler)
    }

    fn on(listener: TcpListener, handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let task = tokio::spawn({
            let accepted = Arc::clone(&accepted);
            let seen = Arc::clone(&seen);
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(serve(stream, Arc::clone(&handler), Arc::clone(&seen)));
                }
            }
        });
        Self {
            addr,
            accepted,
            seen,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve(mut stream: TcpStream, handler: Handler, seen: Arc<Mutex<Vec<Seen>>>) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    seen.lock().unwrap().push(request.clone());
    let reply = handler(&request);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut head = format!(
        "HTTP/1.1 {} Test\r\ncontent-length: {}\r\nconnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    // The client may hang up early (a cut body, a deadline): not an error.
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&reply.body).await;
    let _ = stream.shutdown().await;
}

async fn read_request(stream: &mut TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0_u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).ok()?.to_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let path = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Seen {
        method,
        path,
        headers,
        body,
    })
}

/// A resolver that counts its lookups.
#[derive(Debug)]
struct Counting {
    inner: StaticResolver,
    lookups: AtomicUsize,
}

#[async_trait]
impl Resolve for Counting {
    async fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.inner.resolve(host).await
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn egress_with(allow: &str, resolver: Arc<dyn Resolve>) -> Egress {
    Egress::new(EgressConfig {
        allow: EgressAllow::parse(allow).unwrap(),
        resolver,
        ..EgressConfig::default()
    })
    .unwrap()
}

/// A client whose names resolve through [`StaticResolver::new`].
fn egress(allow: &str) -> Egress {
    egress_with(allow, Arc::new(StaticResolver::new()))
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

fn refused_reason(result: Result<OutboundResponse, EgressError>) -> String {
    match result {
        Err(EgressError::Refused { reason }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn hello(_: &Seen) -> Reply {
    Reply::ok("hello")
        .with_header("X-Test", "Yes")
        .with_header("x-multi", "a")
        .with_header("X-Multi", "b")
}

#[tokio::test]
async fn get_reads_status_headers_and_body() {
    let server = Server::start("127.0.0.1:0", hello).await;
    let response = egress("127.0.0.1/32")
        .send(OutboundRequest::get(server.url("/hello?x=1")), soon(), None)
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "hello");
    assert_eq!(response.headers["x-test"], "Yes");
    assert_eq!(response.headers["x-multi"], "a, b");
    assert_eq!(response.header("X-TEST"), Some("Yes"));
    assert!(!response.truncated);
    assert_eq!(response.redirects, 0);
    assert_eq!(response.url, server.url("/hello?x=1"));
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].path, "/hello?x=1");
    assert!(
        seen[0]
            .header("user-agent")
            .unwrap()
            .starts_with("picloud/")
    );
}

#[tokio::test]
async fn post_sends_the_body_and_the_headers() {
    let server = Server::start("127.0.0.1:0", |_| Reply::ok("").status(201)).await;
    let request = OutboundRequest::post(server.url("/hook"), b"{\"a\":1}".to_vec())
        .header("Content-Type", "application/json")
        .header("X-Signature", "sha256=abc")
        .header("x-twice", "1")
        .header("X-Twice", "2");
    let response = egress("127.0.0.1")
        .send(request, soon(), None)
        .await
        .unwrap();
    assert_eq!(response.status, 201);
    let seen = &server.seen()[0];
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.body, b"{\"a\":1}");
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(seen.header("x-signature"), Some("sha256=abc"));
    assert_eq!(seen.header("content-length"), Some("7"));
    let twice: Vec<_> = seen
        .headers
        .iter()
        .filter(|(n, _)| n == "x-twice")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(twice, ["1", "2"]);
}

#[tokio::test]
async fn any_method_in_any_case() {
    let server = Server::start("127.0.0.1:0", |_| Reply::ok("")).await;
    let request = OutboundRequest::new("delete", server.url("/thing/1"));
    egress("127.0.0.1")
        .send(request, soon(), None)
        .await
        .unwrap();
    assert_eq!(server.seen()[0].method, "DELETE");
}

#[tokio::test]
async fn a_json_response_is_recognised_and_parses() {
    let server = Server::start("127.0.0.1:0", |_| {
        Reply::ok(r#"{"ok":true,"items":[1,2,3]}"#)
            .with_header("Content-Type", "application/json; charset=utf-8")
    })
    .await;
    let response = egress("127.0.0.1")
        .send(OutboundRequest::get(server.url("/")), soon(), None)
        .await
        .unwrap();
    assert!(response.is_json());
    let json: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(json, serde_json::json!({"ok": true, "items": [1, 2, 3]}));
}

#[tokio::test]
async fn a_big_response_is_cut_at_the_default_limit() {
    let server = Server::start("127.0.0.1:0", |_| {
        Reply::ok(vec![b'a'; DEFAULT_MAX_RESPONSE_BYTES + 1024 * 1024])
    })
    .await;
    let response = egress("127.0.0.1")
        .send(OutboundRequest::get(server.url("/big")), soon(), None)
        .await
        .unwrap();
    assert_eq!(response.body.len(), DEFAULT_MAX_RESPONSE_BYTES);
    assert!(response.truncated);
}

#[tokio::test]
async fn a_request_may_lower_the_limit_but_not_raise_it() {
    let server = Server::start("127.0.0.1:0", |_| Reply::ok(vec![b'b'; 10_000])).await;
    let client = Egress::new(EgressConfig {
        allow: EgressAllow::parse("127.0.0.1").unwrap(),
        resolver: Arc::new(StaticResolver::new()),
        max_response_bytes: 5_000,
        ..EgressConfig::default()
    })
    .unwrap();
    let mut request = OutboundRequest::get(server.url("/"));
    request.max_response_bytes = Some(100);
    let lowered = client.send(request.clone(), soon(), None).await.unwrap();
    assert_eq!((lowered.body.len(), lowered.truncated), (100, true));
    request.max_response_bytes = Some(1_000_000);
    let capped = client.send(request.clone(), soon(), None).await.unwrap();
    assert_eq!((capped.body.len(), capped.truncated), (5_000, true));
    request.max_response_bytes = Some(10_000);
    let whole = egress("127.0.0.1")
        .send(request, soon(), None)
        .await
        .unwrap();
    assert_eq!((whole.body.len(), whole.truncated), (10_000, false));
}

#[tokio::test]
async fn a_slow_server_is_cut_by_the_deadline() {
    let server = Server::start("127.0.0.1:0", |_| {
        Reply::ok("late").after(Duration::from_secs(30))
    })
    .await;
    let started = Instant::now();
    let result = egress("127.0.0.1")
        .send(
            OutboundRequest::get(server.url("/slow")),
            started + Duration::from_millis(300),
            None,
        )
        .await;
    assert_eq!(result, Err(EgressError::Timeout));
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn a_deadline_already_past_makes_no_connection() {
    let server = Server::start("127.0.0.1:0", hello).await;
    let result = egress("127.0.0.1")
        .send(OutboundRequest::get(server.url("/")), Instant::now(), None)
        .await;
    assert_eq!(result, Err(EgressError::Timeout));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.accepted(), 0);
}

#[tokio::test]
async fn max_request_time_bounds_a_long_deadline() {
    let server = Server::start("127.0.0.1:0", |_| {
        Reply::ok("late").after(Duration::from_secs(30))
    })
    .await;
    let client = Egress::new(EgressConfig {
        allow: EgressAllow::parse("127.0.0.1").unwrap(),
        resolver: Arc::new(StaticResolver::new()),
        max_request_time: Duration::from_millis(200),
        ..EgressConfig::default()
    })
    .unwrap();
    let started = Instant::now();
    let result = client
        .send(OutboundRequest::get(server.url("/")), soon(), None)
        .await;
    assert_eq!(result, Err(EgressError::Timeout));
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn loopback_is_refused_without_a_connection() {
    let v4 = Server::start("127.0.0.1:0", hello).await;
    let v6 = Server::start("[::1]:0", hello).await;
    let client = egress("");
    let p4 = v4.port();
    let cases = [
        (v4.url("/"), "127.0.0.1 is a loopback address"),
        (
            format!("http://localhost:{p4}/"),
            "localhost resolves only to refused addresses: 127.0.0.1 is a loopback address; ::1 is a loopback address",
        ),
        (
            format!("http://LOCALHOST.:{p4}/"),
            "resolves only to refused addresses",
        ),
        (v6.url("/"), "::1 is a loopback address"),
        // Other spellings of the same addresses.
        (
            format!("http://2130706433:{p4}/"),
            "127.0.0.1 is a loopback address",
        ),
        (
            format!("http://0x7f.1:{p4}/"),
            "127.0.0.1 is a loopback address",
        ),
        (
            format!("http://127.1:{p4}/"),
            "127.0.0.1 is a loopback address",
        ),
        (
            format!("http://[::ffff:127.0.0.1]:{p4}/"),
            "::ffff:127.0.0.1 is a loopback address",
        ),
        (
            format!("http://0.0.0.0:{p4}/"),
            "0.0.0.0 is an unspecified address",
        ),
        (
            format!("https://127.0.0.1:{p4}/"),
            "127.0.0.1 is a loopback address",
        ),
        (
            format!("http://[::]:{}/", v6.port()),
            ":: is an unspecified address",
        ),
    ];
    for (url, expected) in cases {
        let reason = refused_reason(client.send(OutboundRequest::get(&url), soon(), None).await);
        assert!(reason.contains(expected), "{url}: {reason}");
    }
    assert_eq!(v4.accepted(), 0);
    assert_eq!(v6.accepted(), 0);
}

#[tokio::test]
async fn the_allowance_opens_exactly_its_members() {
    let server = Server::start("127.0.0.1:0", hello).await;
    let port = server.port();
    // localhost resolves to 127.0.0.1 and ::1; only the first is allowed,
    // and the connection goes there.
    let client = egress("127.0.0.1/32");
    let response = client
        .send(
            OutboundRequest::get(format!("http://localhost:{port}/")),
            soon(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(response.text(), "hello");
    let v6 = refused_reason(
        client
            .send(
                OutboundRequest::get(format!("http://[::1]:{port}/")),
                soon(),
                None,
            )
            .await,
    );
    assert_eq!(v6, "::1 is a loopback address");
    assert_eq!(server.accepted(), 1);
}

/// Binds 127.0.0.1 and 127.0.0.2 on one port number.
async fn twin_listeners() -> (TcpListener, TcpListener) {
    for _ in 0..20 {
        let first = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = first.local_addr().unwrap().port();
        if let Ok(second) = TcpListener::bind(("127.0.0.2", port)).await {
            return (first, second);
        }
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2");
}

#[tokio::test]
async fn a_name_connects_only_to_its_checked_addresses() {
    let (allowed, other) = twin_listeners().await;
    let allowed = Server::on(allowed, |_| Reply::ok("checked"));
    let other = Server::on(other, |_| Reply::ok("unchecked"));
    // The refused address comes first: a connector given both would try it.
    let resolver = StaticResolver::empty().with("mixed.test", [ip("127.0.0.2"), ip("127.0.0.1")]);
    let client = egress_with("127.0.0.1/32", Arc::new(resolver));
    let url = format!("http://mixed.test:{}/", allowed.port());
    for _ in 0..3 {
        let response = client
            .send(OutboundRequest::get(&url), soon(), None)
            .await
            .unwrap();
        assert_eq!(response.text(), "checked");
    }
    assert_eq!(other.accepted(), 0);
}

#[tokio::test]
async fn a_redirect_to_a_refused_address_is_refused_before_connecting() {
    let target = Server::start("127.0.0.2:0", hello).await;
    let location = target.url("/");
    let origin = Server::start("127.0.0.1:0", move |_| Reply::redirect(302, &location)).await;
    let reason = refused_reason(
        egress("127.0.0.1/32")
            .send(OutboundRequest::get(origin.url("/start")), soon(), None)
            .await,
    );
    assert_eq!(reason, "127.0.0.2 is a loopback address");
    assert_eq!(origin.accepted(), 1);
    assert_eq!(target.accepted(), 0);
}

#[tokio::test]
async fn a_redirect_to_a_name_with_refused_addresses_is_refused() {
    let target = Server::start("127.0.0.2:0", hello).await;
    let location = format!("http://inside.test:{}/", target.port());
    let origin = Server::start("127.0.0.1:0", move |_| Reply::redirect(301, &location)).await;
    let resolver = StaticResolver::empty().with("inside.test", [ip("127.0.0.2")]);
    let reason = refused_reason(
        egress_with("127.0.0.1", Arc::new(resolver))
            .send(OutboundRequest::get(origin.url("/")), soon(), None)
            .await,
    );
    assert_eq!(
        reason,
        "inside.test resolves only to refused addresses: 127.0.0.2 is a loopback address"
    );
    assert_eq!(target.accepted(), 0);
}

#[tokio::test]
async fn redirects_are_followed_with_relative_locations() {
    let server = Server::start("127.0.0.1:0", |seen| match seen.path.as_str() {
        "/a" => Reply::redirect(301, "/b"),
        "/b" => Reply::redirect(302, "c?x=1"),
        _ => Reply::ok(seen.path.clone()),
    })
    .await;
    let response = egress("127.0.0.1")
        .send(OutboundRequest::get(server.url("/a")), soon(), None)
        .await
        .unwrap();
    assert_eq!(response.text(), "/c?x=1");
    assert_eq!(response.redirects, 2);
    assert_eq!(response.url, server.url("/c?x=1"));
}

#[tokio::test]
async fn see_other_turns_a_post_into_a_get_without_body() {
    for status in [301, 302, 303] {
        let server = Server::start("127.0.0.1:0", move |seen| match seen.path.as_str() {
            "/form" => Reply::redirect(status, "/done"),
            _ => Reply::ok("done"),
        })
        .await;
        let request = OutboundRequest::post(server.url("/form"), "a=1")
            .header("content-type", "application/x-www-form-urlencoded");
        let response = egress("127.0.0.1")
            .send(request, soon(), None)
            .await
            .unwrap();
        assert_eq!(response.text(), "done");
        let seen = server.seen();
        assert_eq!(seen[1].method, "GET", "{status}");
        assert!(seen[1].body.is_empty(), "{status}");
        assert_eq!(seen[1].header("content-type"), None, "{status}");
        assert_eq!(seen[1].header("content-length"), None, "{status}");
    }
}

#[tokio::test]
async fn temporary_and_permanent_redirects_keep_method_and_body() {
    for status in [307, 308] {
        let server = Server::start("127.0.0.1:0", move |seen| match seen.path.as_str() {
            "/old" => Reply::redirect(status, "/new"),
            _ => Reply::ok("moved"),
        })
        .await;
        let request = OutboundRequest::new("PUT", server.url("/old"))
            .body("payload")
            .header("content-type", "text/plain");
        egress("127.0.0.1")
            .send(request, soon(), None)
            .await
            .unwrap();
        let seen = server.seen();
        assert_eq!(seen[1].method, "PUT", "{status}");
        assert_eq!(seen[1].body, b"payload", "{status}");
        assert_eq!(seen[1].header("content-type"), Some("text/plain"));
    }
}

#[tokio::test]
async fn credentials_do_not_follow_a_redirect_to_another_origin() {
    let other = Server::start("127.0.0.1:0", |_| Reply::ok("other")).await;
    let location = other.url("/landing");
    let origin = Server::start("127.0.0.1:0", move |seen| match seen.path.as_str() {
        "/same" => Reply::redirect(307, "/here"),
        "/here" => Reply::ok("here"),
        _ => Reply::redirect(307, &location),
    })
    .await;
    let client = egress("127.0.0.1");
    let with_secrets = |url: String| {
        OutboundRequest::get(url)
            .header("Authorization", "Bearer secret")
            .header("Cookie", "session=1")
            .header("X-Api-Key", "also-dropped")
    };
    client
        .send(with_secrets(origin.url("/same")), soon(), None)
        .await
        .unwrap();
    let here = &origin.seen()[1];
    assert_eq!(here.header("authorization"), Some("Bearer secret"));
    assert_eq!(here.header("cookie"), Some("session=1"));

    client
        .send(with_secrets(origin.url("/away")), soon(), None)
        .await
        .unwrap();
    let landing = &other.seen()[0];
    assert_eq!(landing.path, "/landing");
    assert_eq!(landing.header("authorization"), None);
    assert_eq!(landing.header("cookie"), None);
    // Every header the caller set: an API key may go by any name.
    assert_eq!(landing.header("x-api-key"), None);
}

#[tokio::test]
async fn at_most_five_redirects_are_followed() {
    let server = Server::start("127.0.0.1:0", |_| Reply::redirect(302, "/again")).await;
    let result = egress("127.0.0.1")
        .send(OutboundRequest::get(server.url("/")), soon(), None)
        .await;
    assert_eq!(result, Err(EgressError::TooManyRedirects { max: 5 }));
    // The first request and five redirects; the sixth is not followed.
    assert_eq!(server.seen().len(), 6);
}

#[tokio::test]
async fn other_redirect_statuses_and_a_missing_location_are_answers() {
    let server = Server::start("127.0.0.1:0", |seen| match seen.path.as_str() {
        "/304" => Reply::redirect(304, "/elsewhere"),
        _ => Reply::ok("").status(302),
    })
    .await;
    let client = egress("127.0.0.1");
    let not_modified = client
        .send(OutboundRequest::get(server.url("/304")), soon(), None)
        .await
        .unwrap();
    assert_eq!(not_modified.status, 304);
    let bare = client
        .send(OutboundRequest::get(server.url("/302")), soon(), None)
        .await
        .unwrap();
    assert_eq!((bare.status, bare.redirects), (302, 0));
}

#[tokio::test]
async fn a_redirect_to_another_scheme_is_refused() {
    let server = Server::start("127.0.0.1:0", |_| {
        Reply::redirect(302, "file:///etc/passwd")
    })
    .await;
    let reason = refused_reason(
        egress("127.0.0.1")
            .send(OutboundRequest::get(server.url("/")), soon(), None)
            .await,
    );
    assert_eq!(
        reason,
        "only http and https URLs may be requested, not file:"
    );
}

#[tokio::test]
async fn the_apps_hosts_are_checked_before_any_lookup_or_connection() {
    let server = Server::start("127.0.0.1:0", hello).await;
    let port = server.port();
    let resolver = Arc::new(Counting {
        inner: StaticResolver::empty()
            .with("api.example.test", [ip("127.0.0.1")])
            .with("other.test", [ip("127.0.0.1")]),
        lookups: AtomicUsize::new(0),
    });
    let client = egress_with("127.0.0.1", resolver.clone());
    let hosts = vec!["*.example.test".to_owned()];

    let reason = refused_reason(
        client
            .send(
                OutboundRequest::get(format!("http://other.test:{port}/")),
                soon(),
                Some(&hosts),
            )
            .await,
    );
    assert_eq!(reason, "other.test is not among this app's allowed hosts");
    let literal = refused_reason(
        client
            .send(OutboundRequest::get(server.url("/")), soon(), Some(&hosts))
            .await,
    );
    assert_eq!(literal, "127.0.0.1 is not among this app's allowed hosts");
    assert_eq!(resolver.lookups.load(Ordering::SeqCst), 0);
    assert_eq!(server.accepted(), 0);

    let response = client
        .send(
            OutboundRequest::get(format!("http://api.example.test:{port}/")),
            soon(),
            Some(&hosts),
        )
        .await
        .unwrap();
    assert_eq!(response.text(), "hello");
    // No list at all: no restriction by host.
    client
        .send(
            OutboundRequest::get(format!("http://other.test:{port}/")),
            soon(),
            None,
        )
        .await
        .unwrap();
    // An empty list: nothing.
    refused_reason(
        client
            .send(
                OutboundRequest::get(format!("http://api.example.test:{port}/")),
                soon(),
                Some(&[]),
            )
            .await,
    );
}

#[tokio::test]
async fn every_hop_passes_the_apps_hosts() {
    let server = Server::start("127.0.0.1:0", |seen| match seen.path.as_str() {
        "/" => Reply::redirect(302, "http://127.0.0.1/elsewhere"),
        _ => Reply::ok("no"),
    })
    .await;
    let resolver = StaticResolver::empty().with("api.example.test", [ip("127.0.0.1")]);
    let hosts = vec!["api.example.test".to_owned()];
    let reason = refused_reason(
        egress_with("127.0.0.1", Arc::new(resolver))
            .send(
                OutboundRequest::get(format!("http://api.example.test:{}/", server.port())),
                soon(),
                Some(&hosts),
            )
            .await,
    );
    assert_eq!(reason, "127.0.0.1 is not among this app's allowed hosts");
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn bad_urls_schemes_and_requests_fail_before_connecting() {
    let client = egress("127.0.0.1");
    let send = |request: OutboundRequest| client.send(request, soon(), None);
    assert!(matches!(
        send(OutboundRequest::get("not a url")).await,
        Err(EgressError::BadUrl { .. })
    ));
    assert!(matches!(
        send(OutboundRequest::get("/relative/path")).await,
        Err(EgressError::BadUrl { .. })
    ));
    assert_eq!(
        refused_reason(send(OutboundRequest::get("ftp://127.0.0.1/file")).await),
        "only http and https URLs may be requested, not ftp:"
    );
    assert_eq!(
        refused_reason(send(OutboundRequest::get("file:///etc/passwd")).await),
        "only http and https URLs may be requested, not file:"
    );
    assert!(matches!(
        send(OutboundRequest::new("NO SPACES", "http://127.0.0.1:9/")).await,
        Err(EgressError::BadRequest { .. })
    ));
    assert!(matches!(
        send(OutboundRequest::get("http://127.0.0.1:9/").header("x", "a\nb")).await,
        Err(EgressError::BadRequest { .. })
    ));
}

#[tokio::test]
async fn an_unknown_name_is_a_resolution_error() {
    let result = egress("127.0.0.1")
        .send(OutboundRequest::get("http://nowhere.test/"), soon(), None)
        .await;
    let Err(EgressError::Dns { host, message }) = result else {
        panic!("expected a resolution error, got {result:?}");
    };
    assert_eq!(host, "nowhere.test");
    assert!(message.contains("unknown host"), "{message}");
}

#[tokio::test]
async fn a_closed_port_is_a_connection_error() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let result = egress("127.0.0.1")
        .send(
            OutboundRequest::get(format!("http://127.0.0.1:{port}/")),
            soon(),
            None,
        )
        .await;
    let Err(EgressError::Connect { url, message }) = result else {
        panic!("expected a connection error, got {result:?}");
    };
    assert_eq!(url, format!("http://127.0.0.1:{port}/"));
    assert!(!message.is_empty());
}

#[tokio::test]
async fn https_speaks_tls() {
    // A plain HTTP server answers the TLS handshake with an HTTP error:
    // the handshake (ring provider, webpki roots) fails on it.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let plain = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut hello = [0_u8; 5];
        stream.read_exact(&mut hello).await.unwrap();
        let _ = stream
            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await;
        hello
    });
    let result = egress("127.0.0.1")
        .send(
            OutboundRequest::get(format!("https://127.0.0.1:{port}/")),
            soon(),
            None,
        )
        .await;
    assert!(
        matches!(result, Err(EgressError::Connect { .. })),
        "{result:?}"
    );
    // A TLS record: handshake (22), protocol major version 3.
    let hello = plain.await.unwrap();
    assert_eq!(&hello[..2], &[22, 3]);
}

#[tokio::test]
async fn error_messages_read_well() {
    assert_eq!(
        EgressError::Refused {
            reason: "127.0.0.1 is a loopback address".into()
        }
        .to_string(),
        "refused: 127.0.0.1 is a loopback address"
    );
    assert_eq!(
        EgressError::Timeout.to_string(),
        "timed out: no complete response before the deadline"
    );
    assert_eq!(
        EgressError::TooManyRedirects { max: 5 }.to_string(),
        "too many redirects (at most 5 are followed)"
    );
}
