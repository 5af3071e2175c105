//! Outbound HTTP for scripts: the engine-independent part behind
//! `http::get`, `http::post` and `http::request`.
//!
//! A script may call the APIs of the world, but not the network it runs
//! in. Three pieces make that so:
//!
//! - [`address`]: the rule, one pure function ([`refusal`]) saying which IP
//!   addresses are off limits and why (loopback, private, link-local, the
//!   cloud metadata service, …, and IPv6 forms embedding such an IPv4
//!   address), and [`EgressAllow`], the operator's exceptions
//!   (`PICLOUD_EGRESS_ALLOW`).
//! - [`resolver`]: a replaceable name resolver ([`Resolve`]), the system's
//!   by default, a fixed map ([`StaticResolver`]) in tests.
//! - [`client`]: [`Egress`], a reqwest client that connects only to checked
//!   addresses (the check sits inside reqwest's DNS hook, so there is no gap
//!   between checking and connecting), follows redirects itself and checks
//!   every hop, caps the response body, and bounds the whole exchange by a
//!   deadline. `https` goes through rustls with the pure-Rust `ring`
//!   provider and Mozilla's root certificates (`webpki-roots`), the same on
//!   every machine.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use picloud_core::egress::{Egress, EgressAllow, EgressConfig, OutboundRequest};
//!
//! let egress = Egress::new(EgressConfig {
//!     allow: EgressAllow::parse("10.1.2.3, 192.168.7.0/24")?,
//!     ..EgressConfig::default()
//! })?;
//! let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
//! let request = OutboundRequest::get("https://api.example.com/v1/things")
//!     .header("accept", "application/json");
//! let response = egress.send(request, deadline, None).await?;
//! println!("{} {}", response.status, response.text());
//! # Ok(()) }
//! ```
//!
//! # Network time counts against a run's wall clock
//!
//! A script run's limit is wall-clock time, not CPU time: the sandbox
//! fixes a deadline (an [`Instant`](tokio::time::Instant)) when the run
//! starts, and its `on_progress` hook stops the script once the clock is
//! past it. While a script waits for the network, no operation runs and the
//! hook is not called — so the wait itself must be bounded by the same
//! deadline. That is why [`Egress::send`] takes the deadline rather than a
//! timeout of its own:
//!
//! - The sandbox's `http::*` functions run on a dedicated thread of the
//!   worker pool (never inline on an async worker: a network call is an
//!   effect outside the run, so an inline attempt moves to the pool before
//!   it happens). There they call
//!   `tokio::runtime::Handle::block_on(egress.send(request, run_deadline,
//!   app_hosts))` with a handle to the server's runtime. The pool thread is
//!   not a runtime thread, so `block_on` is allowed; the I/O itself is
//!   driven by the runtime's reactor, and the pool thread only sleeps.
//! - `send` wraps the whole exchange — resolution, connection, TLS, every
//!   redirect hop, the body — in `tokio::time::timeout_at(deadline)`. At
//!   the deadline the future is dropped, which closes the connection, and
//!   the call returns [`EgressError::Timeout`] promptly.
//! - Back in the script, the next operation's `on_progress` check finds the
//!   deadline passed and ends the run with the `WallClock` limit, as if the
//!   script had spent the time computing. (The sandbox may also map
//!   `Timeout` to that limit directly.) A blocked worker therefore holds
//!   its pool slot for at most the run's wall-clock limit, exactly like a
//!   busy loop, and the pool's fairness rules (half the workers per tenant)
//!   keep one tenant's slow upstream from starving the others.
//! - [`EgressConfig::max_request_time`] bounds a single request further,
//!   for callers with long deadlines (jobs).

pub mod address;
pub mod client;
pub mod resolver;

pub use address::{EgressAllow, EgressAllowError, Refusal, embedded_ipv4, refusal};
pub use client::{
    DEFAULT_MAX_REDIRECTS, DEFAULT_MAX_REQUEST_TIME, DEFAULT_MAX_RESPONSE_BYTES, Egress,
    EgressConfig, EgressError, OutboundRequest, OutboundResponse, host_matches,
};
pub use resolver::{Resolve, StaticResolver, SystemResolver};

/// Makes rustls's `ring` provider the process's default, once (later calls
/// do nothing).
///
/// With this feature, the `reqwest` of the whole build is compiled with
/// `rustls-no-provider` (cargo unifies features), and a `reqwest::Client`
/// built without a provider configured panics. [`Egress::new`] calls this;
/// so must a program that builds other reqwest clients in the same build
/// (the `picloud` binary's CLI, tests, benches) before it builds them.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // See `client::tls_config` on the deprecation.
        #[allow(deprecated)]
        let provider = rustls::crypto::ring::default_provider();
        // Another provider installed first is as good.
        let _ = provider.install_default();
    });
}

#[cfg(test)]
mod tests;
