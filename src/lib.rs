//! # PiCloud
//!
//! Self-hosted, event-driven serverless compute: upload a Rhai script, get an
//! HTTP endpoint. This facade crate re-exports the pieces:
//!
//! - everything in [`picloud_core`] (domain, authorization, ports, services);
//! - [`store::memory`] (feature `memory`): the in-memory store;
//! - `store::postgres` (feature `postgres`): the PostgreSQL store;
//! - `http` and `server` (feature `server`): the axum transport and the
//!   assembled server that the `picloud` binary (feature `cli`) runs.
//!
//! All are on by default; a library user who wants only the core and a store
//! sets `default-features = false`.
//!
//! ```
//! use std::sync::Arc;
//! use picloud::{MembershipService, Stores, store::memory::MemoryStore};
//!
//! let stores = Stores::from_shared(Arc::new(MemoryStore::new()));
//! let members = MembershipService::new(stores);
//! # let _ = members;
//! ```
#![forbid(unsafe_code)]

pub use picloud_core::*;

/// The store adapters compiled into this build.
pub mod store {
    #[cfg(feature = "memory")]
    pub use picloud_store_memory as memory;
    #[cfg(feature = "postgres")]
    pub use picloud_store_postgres as postgres;
}

/// The HTTP transport (feature `server`): routers, auth layer, errors.
#[cfg(feature = "server")]
pub use picloud_axum as http;

#[cfg(feature = "server")]
pub mod server;

/// The README's examples, compiled as doctests so they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
