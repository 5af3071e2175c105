//! # PiCloud
//!
//! Self-hosted, event-driven serverless compute: upload a Rhai script, get an
//! HTTP endpoint. This facade crate re-exports the pieces:
//!
//! - [`picloud_core`]'s modules and its most used types, listed one by one:
//!   domain, authorization, ports, `Stores` and the services; `auth` and
//!   `users` (feature `auth`), `executor` and `scripts` (feature
//!   `executor`), `testkit` (feature `testkit`, for store authors);
//! - [`store::memory`] (feature `memory`): the in-memory store;
//! - `store::postgres` (feature `postgres`): the PostgreSQL store;
//! - `http` and `server` (feature `server`): the axum transport and the
//!   assembled server that the `picloud` binary (feature `cli`) runs, with
//!   its Prometheus exporter (`metrics`).
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
#![cfg_attr(docsrs, feature(doc_cfg))]

// An explicit list, not `pub use picloud_core::*`: what this crate promises
// is written here, and a new item in the core is not public here by accident.
#[doc(inline)]
pub use picloud_core::{apps, authz, clock, cluster, domain, ids, limits, members, ports, stores};

#[cfg(feature = "auth")]
#[cfg_attr(docsrs, doc(cfg(feature = "auth")))]
#[doc(inline)]
pub use picloud_core::{auth, users};

#[cfg(feature = "executor")]
#[cfg_attr(docsrs, doc(cfg(feature = "executor")))]
#[doc(inline)]
pub use picloud_core::{domains, env, executor, kv, scripts, secrets};

#[cfg(feature = "egress")]
#[cfg_attr(docsrs, doc(cfg(feature = "egress")))]
#[doc(inline)]
pub use picloud_core::egress;

#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
#[doc(inline)]
pub use picloud_core::testkit;

#[doc(inline)]
pub use picloud_core::{
    AdminUser, AdminUserId, ApiToken, App, AppError, AppId, AppMembership, AppMembershipDetail,
    AppRole, AppService, AppWithRole, AuthzDenied, Capability, Deployed, DisplayName,
    DisplayNameError, Email, EmailError, InstanceRole, InvocationRecord, Limits, MembershipError,
    MembershipService, NewAdminUser, NewApp, Principal, Script, ScriptName, ScriptVersion,
    ScriptVersionInfo, Slug, SlugError, Stores, TokenId, TokenScope, Username, UsernameError,
    decide, my_role, require,
};

/// The store adapters compiled into this build.
pub mod store {
    #[cfg(feature = "memory")]
    #[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
    #[doc(inline)]
    pub use picloud_store_memory as memory;
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    #[doc(inline)]
    pub use picloud_store_postgres as postgres;
}

/// The HTTP transport (feature `server`): routers, auth layer, errors.
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
#[doc(inline)]
pub use picloud_axum as http;

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod server;

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod metrics;

/// The README's examples, compiled as doctests so they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
