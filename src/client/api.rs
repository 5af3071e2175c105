//! The HTTP side of the client commands: one PiCloud server, over plain
//! HTTP, with an optional bearer token.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;

use super::Failure;
use super::config::trim_url;

/// A PiCloud server's HTTP API.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// `url` checked and without its trailing slashes: `http://HOST[:PORT][/prefix]`.
/// `https://` is refused: this build has no TLS.
pub fn check_url(url: &str) -> Result<String, Failure> {
    let url = trim_url(url);
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Err(Failure::error(format!(
            "{url}: https:// is not supported: this picloud is built without TLS. \
             Use http:// to a server on this host or a private network, or reach a remote \
             server through an SSH tunnel (ssh -L 8080:127.0.0.1:8080 HOST)"
        )));
    }
    if !lower.starts_with("http://") || url.len() <= "http://".len() {
        return Err(Failure::error(format!(
            "{url}: not a server URL: expected http://HOST:PORT"
        )));
    }
    Ok(url.to_owned())
}

impl Api {
    /// The server at `url`, sending `token` (if any) as a bearer token.
    pub fn new(url: &str, token: Option<String>) -> Result<Self, Failure> {
        let base = check_url(url)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("picloud-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Failure::error(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { base, token, http })
    }

    /// The server from `PICLOUD_URL` or the stored login, with its token.
    /// Fails without a token when `need_token`.
    pub fn from_login(need_token: bool) -> Result<Self, Failure> {
        let (url, token) = super::config::resolve()?;
        if need_token && token.is_none() {
            return Err(Failure::error(format!(
                "no token for {url}: run `picloud login {url}`, or set {}",
                super::config::TOKEN_VAR
            )));
        }
        Self::new(&url, token)
    }

    /// Whether a token is sent.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// A request to `path` (starting with `/`), without the token.
    pub fn bare(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// A request to `path` (starting with `/`), with the token if any.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let builder = self.bare(method, path);
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// Sends `request`; a transport failure becomes a message naming the
    /// server.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, Failure> {
        request.send().await.map_err(|e| {
            let mut message = format!("cannot reach {}: {e}", self.base);
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            Failure::error(message)
        })
    }

    /// Sends `request` and reads a JSON answer: `Null` for an empty one
    /// (204), the server's `error` as the failure for a status of 400 or
    /// more.
    pub async fn json(&self, request: RequestBuilder) -> Result<Value, Failure> {
        let response = self.send(request).await?;
        let status = response.status();
        let body = read_json(response).await?;
        if status.is_client_error() || status.is_server_error() {
            return Err(server_failure(status, &body));
        }
        Ok(body)
    }

    /// `GET path` with the token, as JSON.
    pub async fn get(&self, path: &str) -> Result<Value, Failure> {
        self.json(self.request(Method::GET, path)).await
    }

    /// `method path` with a JSON body and the token, as JSON.
    pub async fn send_json(
        &self,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Result<Value, Failure> {
        self.json(self.request(method, path).json(body)).await
    }

    /// `DELETE path` with the token.
    pub async fn delete(&self, path: &str) -> Result<Value, Failure> {
        self.json(self.request(Method::DELETE, path)).await
    }
}

/// The body of `response` as JSON: `Null` when empty, a string when it is
/// not JSON.
pub async fn read_json(response: Response) -> Result<Value, Failure> {
    let bytes = response
        .bytes()
        .await
        .map_err(|e| Failure::error(format!("reading the answer: {e}")))?;
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    Ok(serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())))
}

/// The failure for an error answer: the server's `error` message (with
/// its line and column, when it has them), or the status.
pub fn server_failure(status: StatusCode, body: &Value) -> Failure {
    let mut message = match body.get("error").and_then(Value::as_str) {
        Some(error) => error.to_owned(),
        None => match body.as_str().map(str::trim).filter(|s| !s.is_empty()) {
            Some(text) => format!("HTTP {status}: {text}"),
            None => format!("HTTP {status}"),
        },
    };
    if let Some(line) = body.get("line").and_then(Value::as_u64) {
        match body.get("column").and_then(Value::as_u64) {
            Some(column) => message.push_str(&format!(" (line {line}, column {column})")),
            None => message.push_str(&format!(" (line {line})")),
        }
    }
    if status == StatusCode::UNAUTHORIZED {
        message.push_str(" (log in again: `picloud login URL`)");
    }
    Failure::error(message)
}

/// `segment` percent-encoded for one path segment (everything but
/// unreserved characters).
pub fn seg(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query string (`?a=1&b=2`, or empty) of the pairs whose value is set.
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(name, value)| value.as_ref().map(|v| format!("{name}={}", seg(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// `/api/v1/admin/apps/{app}` followed by `rest`.
pub fn app_path(app: &str, rest: &str) -> String {
    format!("/api/v1/admin/apps/{}{rest}", seg(app))
}
