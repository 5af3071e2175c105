//! # picloud-core
//!
//! The heart of PiCloud: the domain types, the authorization rules, the ports
//! (repository traits) that stores implement, and the services that apply the
//! rules. It knows nothing of databases or HTTP, so that an embedder can bring
//! their own transport and a store author can bring their own database.
//!
//! - [`domain`]: ids, roles, users, apps and memberships.
//! - [`authz`]: the capability table as one pure function, plus [`authz::require`].
//! - [`ports`]: the repository traits and their error enums.
//! - [`members`]: the membership service (grant, change role, remove, list).
//! - [`apps`]: the apps service (create, list, show, with `my_role`).
//! - `auth` and `users` (feature `auth`): argon2 passwords, hashed tokens,
//!   login and bearer authentication, and the user directory service.
//! - `executor` (feature `executor`): compile Rhai scripts once and run them
//!   sandboxed, with limits, on a bounded and fair worker pool.
//! - `secrets` and `env` (feature `executor`): sealing secrets with
//!   XChaCha20-Poly1305 under per-app data keys wrapped by a master key, and
//!   the env service (variables and secrets, per app).
//! - `egress` (feature `egress`): outbound HTTP for scripts, which reaches
//!   the world but not the private network it runs in.
//! - `domains` (feature `executor`): custom domains and the in-memory map
//!   that routes them (and answers Caddy's on-demand TLS `ask`).
//! - [`metrics_names`]: the metrics recorded where things happen (runs, jobs),
//!   through the `metrics` facade (a no-op until a recorder is installed).
//! - `testkit` (feature `testkit`): the public conformance suite, proptest
//!   strategies and the reference model of the capability table.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod apps;
#[cfg(feature = "auth")]
#[cfg_attr(docsrs, doc(cfg(feature = "auth")))]
pub mod auth;
pub mod authz;
pub mod clock;
pub mod cluster;
pub mod domain;
#[cfg(feature = "executor")]
#[cfg_attr(docsrs, doc(cfg(feature = "executor")))]
pub mod domains;
#[cfg(feature = "egress")]
#[cfg_attr(docsrs, doc(cfg(feature = "egress")))]
pub mod egress;
#[cfg(feature = "executor")]
#[cfg_attr(docsrs, doc(cfg(feature = "executor")))]
pub mod env;
pub mod error;
#[cfg(feature = "executor")]
#[cfg_attr(docsrs, doc(cfg(feature = "executor")))]
pub mod events;
#[cfg(feature = "executor")]
#[cfg_attr(docsrs, doc(cfg(feature = "executor")))]
pub mod executor;
pub mod ids;
#[cfg(feature = "executor")]
#[cfg_attr(docsrs, doc(cfg(feature = "executor")))]
pub mod kv;
pub mod limits;
pub mod members;
pub mod metrics_names;
pub mod ports;
#[cfg(feature = "executor")]
#[cfg_attr(docsrs, doc(cfg(feature = "executor")))]
pub mod scripts;
#[cfg(feature = "executor")]
#[cfg_attr(docsrs, doc(cfg(feature = "executor")))]
pub mod secrets;
pub mod stores;
#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;
#[cfg(feature = "auth")]
#[cfg_attr(docsrs, doc(cfg(feature = "auth")))]
pub mod users;

pub use apps::{AppError, AppService, AppWithRole};
pub use authz::{AuthzDenied, Capability, decide, my_role, require};
pub use domain::{
    AdminUser, ApiToken, App, AppMembership, AppMembershipDetail, AppRole, Deployed, DisplayName,
    DisplayNameError, Email, EmailError, InstanceRole, InvocationRecord, NewAdminUser, NewApp,
    Principal, Script, ScriptName, ScriptVersion, ScriptVersionInfo, Slug, SlugError, TokenScope,
    Username, UsernameError,
};
pub use error::{ErrorKind, ServiceError};
pub use ids::{AdminUserId, AppId, TokenId};
pub use limits::Limits;
pub use members::{MembershipError, MembershipService};
pub use stores::Stores;
