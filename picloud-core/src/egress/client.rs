//! The outbound HTTP client: [`Egress::send`].
//!
//! One request, with every hop of its redirects, goes through the same
//! gate:
//!
//! 1. the scheme is `http` or `https`;
//! 2. the host is in the app's allowlist of hosts, when it has one
//!    ([`host_matches`]);
//! 3. an IP-literal host passes the address rule
//!    ([`EgressAllow::check`]); a name is resolved by the configured
//!    [`Resolve`] *inside reqwest's connector* (reqwest's DNS hook), and
//!    only the addresses that pass the rule are returned to it, so the
//!    socket can only ever be opened to an address that was checked. There
//!    is no second lookup between the check and the connection for a DNS
//!    rebinding attack to slip into. A name all of whose addresses are
//!    refused fails with [`EgressError::Refused`], naming them.
//!
//! Proxies are off (an environment `HTTP_PROXY` would route around the
//! check), reqwest's own redirect and retry policies are off (redirects are
//! followed here, at most [`EgressConfig::max_redirects`], each hop checked
//! like the first), and the response body is read chunk by chunk and cut at
//! the size limit. The whole exchange — connections, redirects, body — is
//! bounded by the caller's deadline.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url, redirect};
use tokio::time::Instant;

use super::address::EgressAllow;
use super::resolver::{Resolve, SystemResolver};

/// The default cap on a response body: 4 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// The default number of redirects followed: 5.
pub const DEFAULT_MAX_REDIRECTS: usize = 5;
/// The default bound on one request, whatever deadline the caller gives: 30 s.
pub const DEFAULT_MAX_REQUEST_TIME: Duration = Duration::from_secs(30);

/// An outbound request, as a script describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutboundRequest {
    /// The method, any case (`get` is `GET`); empty means `GET`.
    pub method: String,
    /// An absolute `http` or `https` URL.
    pub url: String,
    /// Request headers in order; a repeated name sends each value.
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<Vec<u8>>,
    /// A cap on the response body below the client's
    /// [`EgressConfig::max_response_bytes`] (the smaller of the two
    /// applies).
    pub max_response_bytes: Option<usize>,
}

impl OutboundRequest {
    /// A request with this method and URL, no headers and no body.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            url: url.into(),
            ..Self::default()
        }
    }

    /// `GET url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new("GET", url)
    }

    /// `POST url` with `body`.
    pub fn post(url: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Self::new("POST", url).body(body)
    }

    /// This request with one more header.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// This request with `body`.
    #[must_use]
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }
}

/// What came back: the final response, after redirects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundResponse {
    /// The HTTP status.
    pub status: u16,
    /// Header names lowercase; the values of a repeated name joined with
    /// `", "`; values that are not UTF-8 decoded lossily.
    pub headers: BTreeMap<String, String>,
    /// The body, at most the size limit.
    pub body: Vec<u8>,
    /// Whether the body was cut at the size limit.
    pub truncated: bool,
    /// The URL that answered (the last hop of the redirects).
    pub url: String,
    /// How many redirects were followed.
    pub redirects: usize,
}

impl OutboundResponse {
    /// The body as text, invalid UTF-8 replaced by `U+FFFD`.
    #[must_use]
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// A header's value, by name in any case.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// Whether the `content-type` is JSON (`application/json`, or any
    /// `…+json` type).
    #[must_use]
    pub fn is_json(&self) -> bool {
        self.header("content-type").is_some_and(|value| {
            let essence = value.split(';').next().unwrap_or("").trim();
            essence.eq_ignore_ascii_case("application/json")
                || essence.to_ascii_lowercase().ends_with("+json")
        })
    }
}

/// Why an outbound request failed; the messages are written for the
/// script's author.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EgressError {
    /// The URL (or a redirect's `Location`) is not a valid absolute URL.
    #[error("invalid URL `{url}`: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The method or a header is not valid HTTP.
    #[error("invalid request: {reason}")]
    BadRequest {
        /// What is wrong with it.
        reason: String,
    },
    /// The policy refused the request: the scheme, the app's allowlist of
    /// hosts, or the address rule.
    #[error("refused: {reason}")]
    Refused {
        /// Why, for a person: "127.0.0.1 is a loopback address".
        reason: String,
    },
    /// The host name could not be resolved.
    #[error("could not resolve {host}: {message}")]
    Dns {
        /// The name.
        host: String,
        /// The resolver's answer.
        message: String,
    },
    /// No connection could be made (refused, unreachable, TLS handshake).
    #[error("could not connect to {url}: {message}")]
    Connect {
        /// The URL of the hop that failed.
        url: String,
        /// The cause.
        message: String,
    },
    /// The connection failed after it was made (a reset, a malformed
    /// response).
    #[error("error talking to {url}: {message}")]
    Io {
        /// The URL of the hop that failed.
        url: String,
        /// The cause.
        message: String,
    },
    /// The deadline passed before the response was read.
    #[error("timed out: no complete response before the deadline")]
    Timeout,
    /// The server redirected more often than allowed.
    #[error("too many redirects (at most {max} are followed)")]
    TooManyRedirects {
        /// The limit.
        max: usize,
    },
    /// The HTTP client could not be built (by [`Egress::new`]).
    #[error("the HTTP client could not be built: {message}")]
    Client {
        /// The cause.
        message: String,
    },
}

/// The client's configuration.
#[derive(Clone)]
pub struct EgressConfig {
    /// Addresses reachable despite the address rule
    /// (`PICLOUD_EGRESS_ALLOW`).
    pub allow: EgressAllow,
    /// How names are resolved; [`SystemResolver`] by default.
    pub resolver: Arc<dyn Resolve>,
    /// The cap on a response body ([`DEFAULT_MAX_RESPONSE_BYTES`]).
    pub max_response_bytes: usize,
    /// How many redirects are followed ([`DEFAULT_MAX_REDIRECTS`]).
    pub max_redirects: usize,
    /// A bound on one request whatever deadline the caller passes
    /// ([`DEFAULT_MAX_REQUEST_TIME`]).
    pub max_request_time: Duration,
    /// The `user-agent` sent unless the request sets its own.
    pub user_agent: String,
}

impl Default for EgressConfig {
    fn default() -> Self {
        Self {
            allow: EgressAllow::default(),
            resolver: Arc::new(SystemResolver),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            max_request_time: DEFAULT_MAX_REQUEST_TIME,
            user_agent: concat!("picloud/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

impl fmt::Debug for EgressConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressConfig")
            .field("allow", &self.allow)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("max_redirects", &self.max_redirects)
            .field("max_request_time", &self.max_request_time)
            .field("user_agent", &self.user_agent)
            .finish_non_exhaustive()
    }
}

/// The outbound HTTP client of scripts. Cheap to clone: one connection
/// pool, shared.
#[derive(Clone)]
pub struct Egress {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    allow: Arc<EgressAllow>,
    max_response_bytes: usize,
    max_redirects: usize,
    max_request_time: Duration,
}

impl fmt::Debug for Egress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Egress")
            .field("allow", &self.inner.allow)
            .field("max_response_bytes", &self.inner.max_response_bytes)
            .field("max_redirects", &self.inner.max_redirects)
            .field("max_request_time", &self.inner.max_request_time)
            .finish_non_exhaustive()
    }
}

/// rustls with the `ring` provider, Mozilla's roots, HTTP/1.1 by ALPN.
fn tls_config() -> Result<rustls::ClientConfig, EgressError> {
    // rustls 0.23.48 deprecates the ring provider because it lacks the
    // post-quantum key exchange; its alternative, aws-lc-rs, builds a large
    // C library. Classical key exchange is what every API server offers.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EgressError::Client {
            message: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

impl Egress {
    /// A client with this configuration.
    ///
    /// # Errors
    /// [`EgressError::Client`] if reqwest or rustls refuse the
    /// configuration (an invalid user agent).
    pub fn new(config: EgressConfig) -> Result<Self, EgressError> {
        super::install_crypto_provider();
        let allow = Arc::new(config.allow);
        let resolver = CheckedResolver {
            resolver: config.resolver,
            allow: Arc::clone(&allow),
        };
        let client = reqwest::Client::builder()
            .redirect(redirect::Policy::none())
            .retry(reqwest::retry::never())
            .no_proxy()
            .referer(false)
            .http1_only()
            .dns_resolver(resolver)
            .user_agent(config.user_agent)
            // No idle connections kept: a script calling many hosts that
            // keep connections alive would otherwise hold a socket per host
            // (reqwest bounds idle connections per host, not in all), and
            // use up the process's file descriptors.
            .pool_max_idle_per_host(0)
            .tls_backend_preconfigured(tls_config()?)
            .build()
            .map_err(|e| EgressError::Client {
                message: innermost(&e),
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                allow,
                max_response_bytes: config.max_response_bytes,
                max_redirects: config.max_redirects,
                max_request_time: config.max_request_time,
            }),
        })
    }

    /// The addresses reachable despite the rule.
    #[must_use]
    pub fn allow(&self) -> &EgressAllow {
        &self.inner.allow
    }

    /// Sends `request` and reads the response, following redirects, all
    /// before `deadline` (and within [`EgressConfig::max_request_time`]).
    ///
    /// `hosts` is the app's allowlist of hosts, if it has one: exact names
    /// (`api.example.com`, an IP literal) and wildcards (`*.example.com`,
    /// any name below `example.com`); see [`host_matches`]. Every hop must
    /// pass it, and the address rule, before a connection is made.
    ///
    /// # Errors
    /// See [`EgressError`]: a refusal, a bad URL or request, a resolution
    /// or connection failure, too many redirects, the deadline.
    pub async fn send(
        &self,
        request: OutboundRequest,
        deadline: Instant,
        hosts: Option<&[String]>,
    ) -> Result<OutboundResponse, EgressError> {
        let now = Instant::now();
        if deadline <= now {
            // `timeout_at` would poll the exchange once, enough to start
            // a connection that can never be used.
            return Err(EgressError::Timeout);
        }
        let bound = now
            .checked_add(self.inner.max_request_time)
            .unwrap_or(deadline);
        tokio::time::timeout_at(deadline.min(bound), self.exchange(request, hosts))
            .await
            .unwrap_or(Err(EgressError::Timeout))
    }

    async fn exchange(
        &self,
        request: OutboundRequest,
        hosts: Option<&[String]>,
    ) -> Result<OutboundResponse, EgressError> {
        let mut method = parse_method(&request.method)?;
        let mut headers = parse_headers(&request.headers)?;
        let mut body = request.body.map(Bytes::from);
        let limit = request
            .max_response_bytes
            .map_or(self.inner.max_response_bytes, |max| {
                max.min(self.inner.max_response_bytes)
            });
        let mut url = Url::parse(&request.url).map_err(|e| EgressError::BadUrl {
            url: request.url.clone(),
            reason: e.to_string(),
        })?;
        let mut redirects = 0;
        loop {
            self.check_target(&url, hosts)?;
            let mut builder = self
                .inner
                .client
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(body) = &body {
                builder = builder.body(body.clone());
            }
            let response = builder.send().await.map_err(|e| classify(&e, &url))?;
            let status = response.status().as_u16();
            let location = match status {
                301 | 302 | 303 | 307 | 308 => response.headers().get(header::LOCATION),
                _ => None,
            };
            let Some(location) = location else {
                return read_response(response, &url, redirects, limit).await;
            };
            if redirects >= self.inner.max_redirects {
                return Err(EgressError::TooManyRedirects {
                    max: self.inner.max_redirects,
                });
            }
            let location = String::from_utf8_lossy(location.as_bytes()).into_owned();
            let next = url.join(&location).map_err(|e| EgressError::BadUrl {
                url: location.clone(),
                reason: format!("redirect from {}: {e}", shown(&url)),
            })?;
            if matches!(status, 301..=303) && method != Method::HEAD {
                // The browsers' rule, which servers rely on: the next hop
                // is a GET without the body.
                method = Method::GET;
                body = None;
                for name in [
                    header::CONTENT_TYPE,
                    header::CONTENT_LENGTH,
                    header::CONTENT_ENCODING,
                    header::TRANSFER_ENCODING,
                ] {
                    headers.remove(name);
                }
            }
            if next.origin() != url.origin() {
                // Headers meant for one server (credentials above all, and
                // an API key may go by any name) are not sent to another.
                headers.clear();
            }
            drop(response);
            url = next;
            redirects += 1;
        }
    }

    /// The gate every hop passes before a connection: scheme, the app's
    /// hosts, and the address rule for an IP literal (a name is checked
    /// when it is resolved, see [`CheckedResolver`]).
    fn check_target(&self, url: &Url, hosts: Option<&[String]>) -> Result<(), EgressError> {
        let scheme = url.scheme();
        if scheme != "http" && scheme != "https" {
            return Err(EgressError::Refused {
                reason: format!("only http and https URLs may be requested, not {scheme}:"),
            });
        }
        let Some(host) = url.host_str().filter(|host| !host.is_empty()) else {
            return Err(EgressError::BadUrl {
                url: shown(url),
                reason: "no host".to_owned(),
            });
        };
        // url writes an IPv6 literal in brackets, an IPv4 literal in
        // canonical dotted form (it has already turned `2130706433` or
        // `0x7f.1` into `127.0.0.1`).
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Some(patterns) = hosts
            && !patterns.iter().any(|pattern| host_matches(pattern, host))
        {
            return Err(EgressError::Refused {
                reason: format!("{host} is not among this app's allowed hosts"),
            });
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            self.inner
                .allow
                .check(ip)
                .map_err(|why| EgressError::Refused {
                    reason: format!("{ip} is {why}"),
                })?;
        }
        Ok(())
    }
}

/// Whether `host` (a URL's host: a lowercase name or an IP literal without
/// brackets) matches `pattern` from an app's allowlist of hosts: the same
/// name (case and a trailing dot ignored, brackets around an IPv6 literal
/// allowed), or for `*.example.com` any name *below* `example.com` (not
/// `example.com` itself). Names are compared in their ASCII (punycode) form.
#[must_use]
pub fn host_matches(pattern: &str, host: &str) -> bool {
    fn normalize(name: &str) -> String {
        let name = name.trim();
        let name = name.strip_suffix('.').unwrap_or(name);
        let name = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name);
        name.to_ascii_lowercase()
    }
    let pattern = normalize(pattern);
    let host = normalize(host);
    if pattern.is_empty() {
        return false;
    }
    match pattern.strip_prefix('*') {
        Some(suffix) if suffix.starts_with('.') && suffix.len() > 1 => {
            host.len() > suffix.len() && host.ends_with(suffix)
        }
        Some(_) => false,
        None => pattern == host,
    }
}

fn parse_method(method: &str) -> Result<Method, EgressError> {
    let method = method.trim();
    if method.is_empty() {
        return Ok(Method::GET);
    }
    Method::from_bytes(method.to_ascii_uppercase().as_bytes()).map_err(|_| {
        EgressError::BadRequest {
            reason: format!("`{method}` is not an HTTP method"),
        }
    })
}

fn parse_headers(headers: &[(String, String)]) -> Result<HeaderMap, EgressError> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let header_name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| EgressError::BadRequest {
                reason: format!("`{name}` is not a valid header name"),
            })?;
        let header_value = HeaderValue::from_str(value).map_err(|_| EgressError::BadRequest {
            reason: format!("the value of header `{name}` is not valid (no line breaks)"),
        })?;
        map.append(header_name, header_value);
    }
    Ok(map)
}

/// Reads the status, headers and at most `limit` bytes of body.
async fn read_response(
    mut response: reqwest::Response,
    url: &Url,
    redirects: usize,
    limit: usize,
) -> Result<OutboundResponse, EgressError> {
    let status = response.status().as_u16();
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in response.headers() {
        let value = String::from_utf8_lossy(value.as_bytes());
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    let announced = response
        .content_length()
        .map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let mut body = Vec::with_capacity(announced.min(limit));
    let mut truncated = false;
    while let Some(chunk) = response.chunk().await.map_err(|e| classify(&e, url))? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            truncated = true;
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(OutboundResponse {
        status,
        headers,
        body,
        truncated,
        url: shown(url),
        redirects,
    })
}

/// A URL for messages and for [`OutboundResponse::url`]: without its
/// user name and password.
fn shown(url: &Url) -> String {
    let mut url = url.clone();
    // Both fail only for URLs that cannot have credentials.
    let _ = url.set_password(None);
    let _ = url.set_username("");
    url.to_string()
}

/// The deepest cause's message: reqwest's own ("error sending request")
/// says less than the `Connection refused` underneath.
fn innermost(error: &(dyn StdError + 'static)) -> String {
    let mut deepest = error;
    while let Some(source) = deepest.source() {
        deepest = source;
    }
    deepest.to_string()
}

/// Turns reqwest's error into ours; a refusal or a resolution failure from
/// [`CheckedResolver`] is found in the error's causes.
fn classify(error: &reqwest::Error, url: &Url) -> EgressError {
    let mut cause: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(hook) = current.downcast_ref::<ResolveRefusal>() {
            return match hook.clone() {
                ResolveRefusal::Refused(reason) => EgressError::Refused { reason },
                ResolveRefusal::Dns { host, message } => EgressError::Dns { host, message },
            };
        }
        cause = current.source();
    }
    let message = innermost(error);
    if error.is_timeout() {
        EgressError::Timeout
    } else if error.is_connect() {
        EgressError::Connect {
            url: shown(url),
            message,
        }
    } else if error.is_builder() {
        EgressError::BadRequest { reason: message }
    } else {
        EgressError::Io {
            url: shown(url),
            message,
        }
    }
}

/// What [`CheckedResolver`] fails with; [`classify`] finds it again among
/// reqwest's error's causes.
#[derive(Debug, Clone, thiserror::Error)]
enum ResolveRefusal {
    #[error("{0}")]
    Refused(String),
    #[error("could not resolve {host}: {message}")]
    Dns { host: String, message: String },
}

/// How many refused addresses a message names.
const NAMED_REFUSALS: usize = 3;

/// The addresses of `host` a connection may go to; an error when there is
/// none.
fn checked_addresses(
    host: &str,
    ips: &[IpAddr],
    allow: &EgressAllow,
) -> Result<Vec<IpAddr>, ResolveRefusal> {
    if ips.is_empty() {
        return Err(ResolveRefusal::Dns {
            host: host.to_owned(),
            message: "no addresses".to_owned(),
        });
    }
    let mut allowed = Vec::with_capacity(ips.len());
    let mut refused = Vec::new();
    for &ip in ips {
        match allow.check(ip) {
            Ok(()) => allowed.push(ip),
            Err(why) => refused.push(format!("{ip} is {why}")),
        }
    }
    if allowed.is_empty() {
        let more = refused.len().saturating_sub(NAMED_REFUSALS);
        refused.truncate(NAMED_REFUSALS);
        let mut reason = format!(
            "{host} resolves only to refused addresses: {}",
            refused.join("; ")
        );
        if more > 0 {
            reason.push_str(&format!(" (and {more} more)"));
        }
        return Err(ResolveRefusal::Refused(reason));
    }
    Ok(allowed)
}

/// reqwest's DNS hook: resolves with the configured [`Resolve`] and returns
/// only the addresses the rule allows, so that the connector cannot open a
/// socket anywhere else.
struct CheckedResolver {
    resolver: Arc<dyn Resolve>,
    allow: Arc<EgressAllow>,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = Arc::clone(&self.resolver);
        let allow = Arc::clone(&self.allow);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let ips = resolver
                .resolve(&host)
                .await
                .map_err(|e| ResolveRefusal::Dns {
                    host: host.clone(),
                    message: e.to_string(),
                })?;
            let allowed = checked_addresses(&host, &ips, &allow)?;
            // Port 0 is replaced by the URL's (or the scheme's) port.
            let addrs: reqwest::dns::Addrs =
                Box::new(allowed.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns_match_exact_names_and_wildcard_subdomains() {
        assert!(host_matches("api.example.com", "api.example.com"));
        assert!(host_matches("API.Example.com.", "api.example.com"));
        assert!(host_matches(" api.example.com ", "api.example.com."));
        assert!(!host_matches("api.example.com", "example.com"));
        assert!(!host_matches("example.com", "api.example.com"));
        assert!(host_matches("*.example.com", "api.example.com"));
        assert!(host_matches("*.example.com", "a.b.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.example.com", "badexample.com"));
        assert!(!host_matches("*.example.com", "example.com.evil.test"));
        assert!(!host_matches("*example.com", "badexample.com"));
        assert!(!host_matches("*", "example.com"));
        assert!(!host_matches("*.", "example.com"));
        assert!(!host_matches("", ""));
        assert!(host_matches("203.0.113.5", "203.0.113.5"));
        assert!(host_matches("[2001:db8::1]", "2001:db8::1"));
        assert!(host_matches("2001:db8::1", "2001:db8::1"));
    }

    #[test]
    fn methods_parse_in_any_case_and_default_to_get() {
        assert_eq!(parse_method("").unwrap(), Method::GET);
        assert_eq!(parse_method("post").unwrap(), Method::POST);
        assert_eq!(parse_method(" Patch ").unwrap(), Method::PATCH);
        assert!(matches!(
            parse_method("GE T"),
            Err(EgressError::BadRequest { .. })
        ));
    }

    #[test]
    fn bad_headers_are_bad_requests() {
        let bad_name = parse_headers(&[("x y".into(), "v".into())]).unwrap_err();
        assert!(
            bad_name
                .to_string()
                .contains("`x y` is not a valid header name")
        );
        let bad_value = parse_headers(&[("x".into(), "a\r\nb".into())]).unwrap_err();
        assert!(bad_value.to_string().contains("header `x`"));
        let repeated =
            parse_headers(&[("X-A".into(), "1".into()), ("x-a".into(), "2".into())]).unwrap();
        assert_eq!(repeated.get_all("x-a").iter().count(), 2);
    }

    #[test]
    fn checked_addresses_keep_only_allowed_ones_in_order() {
        let allow = EgressAllow::parse("127.0.0.1").unwrap();
        let ips: Vec<IpAddr> = ["127.0.0.2", "127.0.0.1", "::1", "8.8.8.8"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let kept = checked_addresses("x.test", &ips, &allow).unwrap();
        assert_eq!(kept, [ips[1], ips[3]]);
    }

    #[test]
    fn a_name_with_only_refused_addresses_names_them() {
        let ips: Vec<IpAddr> = [
            "127.0.0.1",
            "::1",
            "169.254.169.254",
            "10.0.0.1",
            "10.0.0.2",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let err = checked_addresses("evil.test", &ips, &EgressAllow::default()).unwrap_err();
        let ResolveRefusal::Refused(reason) = err else {
            panic!("expected a refusal");
        };
        assert_eq!(
            reason,
            "evil.test resolves only to refused addresses: 127.0.0.1 is a loopback address; \
             ::1 is a loopback address; 169.254.169.254 is the cloud metadata address \
             (and 2 more)"
        );
    }

    #[test]
    fn no_addresses_at_all_is_a_resolution_failure() {
        let err = checked_addresses("empty.test", &[], &EgressAllow::default()).unwrap_err();
        assert!(matches!(err, ResolveRefusal::Dns { .. }));
    }

    #[test]
    fn urls_are_shown_without_credentials() {
        let url = Url::parse("https://user:secret@example.com/a?b=1").unwrap();
        assert_eq!(shown(&url), "https://example.com/a?b=1");
    }

    #[test]
    fn json_content_types_are_recognised() {
        let response = |ct: &str| OutboundResponse {
            status: 200,
            headers: BTreeMap::from([("content-type".to_owned(), ct.to_owned())]),
            body: Vec::new(),
            truncated: false,
            url: String::new(),
            redirects: 0,
        };
        assert!(response("application/json").is_json());
        assert!(response("Application/JSON; charset=utf-8").is_json());
        assert!(response("application/problem+json").is_json());
        assert!(!response("text/plain").is_json());
        assert!(!response("application/jsonp").is_json());
    }

    #[test]
    fn the_client_builds_with_tls() {
        let egress = Egress::new(EgressConfig {
            resolver: Arc::new(super::super::resolver::StaticResolver::new()),
            ..EgressConfig::default()
        })
        .unwrap();
        assert!(egress.allow().is_empty());
    }
}
