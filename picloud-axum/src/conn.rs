//! Serving connections: an accept loop on hyper with timeouts, a connection
//! cap and a bounded graceful shutdown, plus the per-request limits that
//! guard against slow or oversized clients.
//!
//! [`serve_with`] replaces `axum::serve` for the server binary:
//! - a **header read timeout** ([`ServeOptions::header_read_timeout`]): a
//!   connection that has not sent a complete request head within it is
//!   closed. The timer also runs while a kept-alive connection waits for its
//!   next request, so it doubles as the idle keep-alive timeout;
//! - a **connection cap** ([`ServeOptions::max_connections`]): at the cap,
//!   the loop stops accepting, so further connections wait in the kernel's
//!   listen backlog (they are served as soon as one closes; a full backlog
//!   makes the kernel drop or refuse new ones);
//! - a **bounded shutdown** ([`ServeOptions::shutdown_grace`]): when the
//!   shutdown future completes the listener closes, idle connections close,
//!   requests in flight get the grace period, and whatever is still open
//!   after it is dropped;
//! - a **write stall timeout** ([`ServeOptions::write_timeout`]): a
//!   connection whose client stops reading, so that a write makes no
//!   progress for that long, is closed, and the answer it held is freed
//!   (a slow reader cannot pin a large answer in memory);
//! - a cap on the request head's size ([`MAX_HEAD_BYTES`], enforced by hyper).
//!
//! Each request carries `ConnectInfo<SocketAddr>` (the peer's address) as an
//! extension, as with axum's `into_make_service_with_connect_info`.
//!
//! [`standard_layers`](crate::standard_layers) adds the request-level
//! guards: [`body_deadline`] (a 408 when the body does not arrive in time)
//! and [`head_limits`] (a JSON 414 or 431 for a long URI or large headers).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tower::Service;
use tower_http::timeout::{DeadlineBody, TimeoutError};

use crate::error::ApiError;

/// The default [`ServeOptions::write_timeout`]: 30 s.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// The default [`ServeOptions::header_read_timeout`]: 30 s.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// The default request body deadline ([`body_deadline`]): 30 s.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// The default [`ServeOptions::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The default [`ServeOptions::shutdown_grace`]: 10 s.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The longest request URI (path and query) the router accepts: 8 KiB.
/// A longer one gets a JSON 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The most header bytes (names and values) the router accepts: 32 KiB.
/// More get a JSON 431.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// The largest request head (request line and headers) hyper reads: 64 KiB.
/// A larger one gets hyper's own 431, with an empty body.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How [`serve_with`] treats connections.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// How long a connection may take to send a complete request head, and
    /// how long a kept-alive connection may stay idle (default 30 s).
    pub header_read_timeout: Duration,
    /// The most connections open at once (default 1024); more wait in the
    /// kernel's listen backlog until one closes.
    pub max_connections: usize,
    /// How long requests in flight may take to finish after shutdown begins
    /// (default 10 s); then their connections are dropped.
    pub shutdown_grace: Duration,
    /// How long a write to the client may make no progress before the
    /// connection is closed (default 30 s).
    pub write_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
        }
    }
}

/// Serves `router` on `listener` with `options` until `shutdown` completes,
/// then lets requests in flight finish for at most
/// [`ServeOptions::shutdown_grace`] and returns.
///
/// # Panics
///
/// If `options.max_connections` is 0 or above tokio's semaphore limit.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> std::io::Result<()> {
    assert!(
        options.max_connections > 0,
        "max_connections must be positive"
    );
    let permits = Arc::new(Semaphore::new(options.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_header_size(MAX_HEAD_BYTES);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            // Reap finished connections so the set stays small.
            Some(_) = connections.join_next() => {}
            (permit, stream, peer) = accept(&listener, &permits) => {
                let router = router.clone();
                let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    let mut router = router.clone();
                    async move { Ok::<_, Infallible>(router.call(req).await.unwrap_or_else(|e| match e {})) }
                });
                let connection = graceful.watch(http.serve_connection(TokioIo::new(WriteStall::new(stream, options.write_timeout)), service));
                connections.spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    let open = connections.len();
    if open > 0 {
        tracing::info!(
            open,
            grace_ms = options.shutdown_grace.as_millis() as u64,
            "stopped accepting; waiting for connections to finish"
        );
    }
    if tokio::time::timeout(options.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the shutdown grace period; closing them"
        );
    }
    connections.shutdown().await;
    Ok(())
}

/// Waits for a free connection slot, then for a connection. Both steps are
/// cancel safe, so the accept loop may drop this future at any point.
async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
) -> (OwnedSemaphorePermit, TcpStream, SocketAddr) {
    let permit = Arc::clone(permits)
        .acquire_owned()
        .await
        .expect("the connection semaphore is never closed");
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => return (permit, stream, peer),
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                // Out of file descriptors, for instance: back off instead of
                // spinning; connections that finish free some.
                tracing::error!(error = %e, "accept failed; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Errors that concern one connection only (the peer went away before it
/// was accepted).
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Middleware: the request body must arrive completely within the given
/// time after the head (a deadline, not an idle timeout, so trickling one
/// byte at a time does not extend it). When it does not, the client gets a
/// 408 `{"error": …}` and the connection is closed. Requests without a body
/// are untouched. Use it with `axum::middleware::from_fn_with_state`.
pub async fn body_deadline(State(timeout): State<Duration>, req: Request, next: Next) -> Response {
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let timed_out = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&timed_out);
    let req = req.map(|body| {
        Body::new(DeadlineBody::new(timeout, body).map_err(move |e| {
            if e.is::<TimeoutError>() {
                flag.store(true, Ordering::Relaxed);
            }
            e
        }))
    });
    let response = next.run(req).await;
    if !timed_out.load(Ordering::Relaxed) {
        return response;
    }
    let mut response = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        format!(
            "the request body did not arrive within {} ms",
            timeout.as_millis()
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Middleware: a JSON 414 for a URI longer than [`MAX_URI_BYTES`] and a
/// JSON 431 for headers larger than [`MAX_HEADER_BYTES`]. (Heads beyond
/// [`MAX_HEAD_BYTES`] never get this far: hyper answers them itself.)
pub async fn head_limits(req: Request, next: Next) -> Response {
    if let Some(refused) = head_limit_error(&req) {
        return refused;
    }
    next.run(req).await
}

/// [`head_limits`] and [`body_deadline`] in one middleware: one boxed
/// future and one service clone per request instead of two. What
/// [`standard_layers`](crate::standard_layers) uses.
pub async fn request_guards(State(timeout): State<Duration>, req: Request, next: Next) -> Response {
    if let Some(refused) = head_limit_error(&req) {
        return refused;
    }
    body_deadline(State(timeout), req, next).await
}

/// The 414 or 431 for a request past the head limits, if it is.
fn head_limit_error(req: &Request) -> Option<Response> {
    let uri_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return Some(
            ApiError::new(
                StatusCode::URI_TOO_LONG,
                format!("the request URI is longer than {MAX_URI_BYTES} bytes"),
            )
            .into_response(),
        );
    }
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return Some(
            ApiError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!("the request headers are larger than {MAX_HEADER_BYTES} bytes"),
            )
            .into_response(),
        );
    }
    None
}

/// A stream whose writes fail with `TimedOut` once one has made no
/// progress for `limit`: the timer starts when a write would block and is
/// cleared by any progress.
struct WriteStall<S> {
    inner: S,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteStall<S> {
    fn new(inner: S, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Called when a write made no progress: arms the timer, or fails once
    /// it has run out.
    fn stall(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading",
            )),
            Poll::Pending => Poll::Pending,
        }
    }

    fn on_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match result {
            Poll::Pending => match self.stall(cx) {
                Poll::Ready(err) => Poll::Ready(Err(err)),
                Poll::Pending => Poll::Pending,
            },
            done => {
                self.stalled = None;
                done
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteStall<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteStall<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.on_write(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.on_write(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.on_write(cx, result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
