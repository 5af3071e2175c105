//! The route handlers, one module per resource. Handlers parse, call a core
//! service with the caller's [`Principal`](picloud_core::Principal), and map
//! the result: no rule lives here.

pub mod apps;
pub mod auth;
pub mod cluster;
pub mod domains;
pub mod events;
pub mod logs;
pub mod members;
pub mod run;
pub mod scripts;
pub mod state;
pub mod tokens;
pub mod users;
