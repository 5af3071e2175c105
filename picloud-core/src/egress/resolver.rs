//! Name resolution, replaceable.
//!
//! The client never lets reqwest resolve a name itself: it asks a
//! [`Resolve`], checks every answer against the address rule, and hands
//! reqwest only the addresses that passed (see [`super::client`]). The
//! resolver is a trait so that tests answer from a map ([`StaticResolver`])
//! and never send a DNS query, and so that an embedder can bring its own
//! (a caching or DNS-over-HTTPS resolver).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use async_trait::async_trait;

/// Resolves a host name to its addresses.
#[async_trait]
pub trait Resolve: Send + Sync + std::fmt::Debug {
    /// The addresses of `host` (a name, never an IP literal: those are not
    /// resolved), in the order to try them.
    ///
    /// # Errors
    /// Any failure to resolve: an unknown name, a resolver that does not
    /// answer.
    async fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>>;
}

/// The operating system's resolver (`getaddrinfo`, through tokio's
/// blocking pool).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

/// Lookups of [`SystemResolver`] running at once. `getaddrinfo` cannot be
/// cancelled: a lookup whose caller gave up (its run's wall clock ended)
/// goes on holding a blocking thread until the system's resolver times
/// out. Each lookup holds a permit until `getaddrinfo` returns, so names
/// that never answer hold at most this many threads, not tokio's whole
/// blocking pool; later lookups wait for a permit within their caller's
/// deadline.
pub const SYSTEM_LOOKUPS_AT_ONCE: usize = 16;

fn lookups() -> &'static Arc<tokio::sync::Semaphore> {
    static LOOKUPS: std::sync::OnceLock<Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    LOOKUPS.get_or_init(|| Arc::new(tokio::sync::Semaphore::new(SYSTEM_LOOKUPS_AT_ONCE)))
}

#[async_trait]
impl Resolve for SystemResolver {
    async fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        use std::net::ToSocketAddrs;
        let permit = Arc::clone(lookups())
            .acquire_owned()
            .await
            .map_err(io::Error::other)?;
        let host = host.to_owned();
        let addrs = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            // The port is required by the API and ignored by the caller.
            (host.as_str(), 0).to_socket_addrs().map(Vec::from_iter)
        })
        .await
        .map_err(io::Error::other)??;
        let mut ips: Vec<IpAddr> = Vec::new();
        for addr in addrs {
            if !ips.contains(&addr.ip()) {
                ips.push(addr.ip());
            }
        }
        Ok(ips)
    }
}

/// A fixed map from names to addresses, for tests and for hosts pinned by
/// configuration. Names match case-insensitively, a trailing dot ignored;
/// an unknown name is an [`io::ErrorKind::NotFound`] error.
///
/// [`StaticResolver::new`] knows `localhost` (`127.0.0.1` and `::1`).
#[derive(Debug, Clone)]
pub struct StaticResolver {
    names: HashMap<String, Vec<IpAddr>>,
}

impl StaticResolver {
    /// A resolver that knows only `localhost`.
    #[must_use]
    pub fn new() -> Self {
        Self::empty().with(
            "localhost",
            [
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ],
        )
    }

    /// A resolver that knows no name at all.
    #[must_use]
    pub fn empty() -> Self {
        Self {
            names: HashMap::new(),
        }
    }

    /// This resolver, answering `ips` for `name` (replacing what it
    /// answered before).
    #[must_use]
    pub fn with(mut self, name: &str, ips: impl IntoIterator<Item = IpAddr>) -> Self {
        self.names
            .insert(normalize(name), ips.into_iter().collect());
        self
    }
}

impl Default for StaticResolver {
    fn default() -> Self {
        Self::new()
    }
}

/// Lowercase, without the trailing dot of a fully qualified name.
fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

#[async_trait]
impl Resolve for StaticResolver {
    async fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        self.names
            .get(&normalize(host))
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("unknown host {host}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_resolver_knows_localhost_in_both_families() {
        let ips = StaticResolver::new().resolve("localhost").await.unwrap();
        assert_eq!(
            ips,
            [
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            ]
        );
    }

    #[tokio::test]
    async fn static_resolver_ignores_case_and_the_trailing_dot() {
        let ip: IpAddr = "127.0.0.7".parse().unwrap();
        let resolver = StaticResolver::empty().with("API.Example.test.", [ip]);
        assert_eq!(resolver.resolve("api.example.test").await.unwrap(), [ip]);
        assert_eq!(resolver.resolve("API.EXAMPLE.TEST.").await.unwrap(), [ip]);
    }

    #[tokio::test]
    async fn static_resolver_unknown_name_is_not_found() {
        let err = StaticResolver::empty()
            .resolve("localhost")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("localhost"));
    }

    #[tokio::test]
    async fn with_replaces_an_earlier_answer() {
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        let resolver = StaticResolver::new().with("localhost", [ip]);
        assert_eq!(resolver.resolve("localhost").await.unwrap(), [ip]);
    }
}
