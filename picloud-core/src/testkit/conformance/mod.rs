//! The public conformance suite: the observable contract of every port.
//!
//! Each case is a public `async fn(Stores)` that panics on a violation, and
//! asserts on error *variants*, not just on "is an error". A store crate runs
//! them all with one macro call in a test file:
//!
//! ```ignore
//! // tests/conformance.rs of a store crate. Needs tokio (macros,
//! // rt-multi-thread) as a dev-dependency.
//! async fn stores() -> Option<picloud_core::Stores> {
//!     Some(my_store::MyStore::new().into_stores())
//! }
//! picloud_core::conformance_tests!(stores);
//! ```
//!
//! The factory returns `None` to skip (say why on stderr: a store that needs
//! a server it cannot reach, for instance). Each case expects a fresh, empty
//! store from the factory, though most also work on a shared one.
//!
//! # Layout
//!
//! The cases live in one private module per port (`apps`, `authz`, `domains`, `env`,
//! `invocations`, `jobs`, `kv`, `members`, `nodes`, `scripts`, `settings`, `tokens`,
//! `users`), each naming its cases in a macro (`__conformance_apps_cases!`,
//! ...). Those lists,
//! joined by `__conformance_ports!`, both re-export the cases here and
//! generate the tests of [`conformance_tests!`](crate::conformance_tests), so
//! the two cannot drift: a name in a list without its function is an
//! unresolved import, and a case function left out of its list is never used
//! (a `dead_code` warning, an error under `-D warnings`). A new case is a
//! `pub async fn(Stores)` in its port's module plus its name in that module's
//! list; a new port is a module with its list plus one line in
//! `__conformance_ports!`.

mod apps;
mod authz;
mod domains;
mod env;
mod invocations;
mod jobs;
mod kv;
mod members;
mod nodes;
mod scripts;
mod settings;
mod tokens;
mod users;

use std::collections::HashSet;

use crate::domain::{InvocationRecord, ScriptName, Slug};

/// Re-exports one port module's listed cases, and only those.
macro_rules! reexport_cases {
    ($port:ident => $($case:ident),+ $(,)?) => {
        pub use self::$port::{$($case),+};
    };
}

crate::__conformance_ports!(reexport_cases;);

/// Expands to one `#[tokio::test]` per conformance case, each calling
/// `$factory().await` (an `async fn() -> Option<Stores>`) for a fresh store.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:path) => {
        $crate::__conformance_ports!($crate::__conformance_cases; $factory;);
    };
}

/// Hands every port module's case list to `$callback`, after `$args`: one
/// `$callback! { $($args)* port => case, ... }` per port.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_ports {
    ($($callback:ident)::+; $($args:tt)*) => {
        $crate::__conformance_apps_cases!($($callback)::+; $($args)*);
        $crate::__conformance_authz_cases!($($callback)::+; $($args)*);
        $crate::__conformance_domains_cases!($($callback)::+; $($args)*);
        $crate::__conformance_env_cases!($($callback)::+; $($args)*);
        $crate::__conformance_invocations_cases!($($callback)::+; $($args)*);
        $crate::__conformance_jobs_cases!($($callback)::+; $($args)*);
        $crate::__conformance_kv_cases!($($callback)::+; $($args)*);
        $crate::__conformance_members_cases!($($callback)::+; $($args)*);
        $crate::__conformance_nodes_cases!($($callback)::+; $($args)*);
        $crate::__conformance_scripts_cases!($($callback)::+; $($args)*);
        $crate::__conformance_settings_cases!($($callback)::+; $($args)*);
        $crate::__conformance_tokens_cases!($($callback)::+; $($args)*);
        $crate::__conformance_users_cases!($($callback)::+; $($args)*);
    };
}

/// One `#[tokio::test]` per case of one port's list.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($factory:path; $port:ident => $($case:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                if let Some(stores) = $factory().await {
                    $crate::testkit::conformance::$case(stores).await;
                }
            }
        )+
    };
}

fn slug(s: &str) -> Slug {
    Slug::parse(s).expect("valid slug")
}

/// Only the items of `all` that are in `mine`, in `all`'s order.
fn only<T: Clone, K: Eq + std::hash::Hash>(
    all: &[T],
    mine: &HashSet<K>,
    key: impl Fn(&T) -> K,
) -> Vec<T> {
    all.iter()
        .filter(|x| mine.contains(&key(x)))
        .cloned()
        .collect()
}

fn script_name(s: &str) -> ScriptName {
    ScriptName::parse(s).expect("valid script name")
}

fn record(script: crate::ids::ScriptId, i: i64) -> InvocationRecord {
    let failed = i % 2 == 1;
    InvocationRecord {
        script_id: script,
        version: 1,
        at: crate::clock::now() + chrono::Duration::milliseconds(i),
        status: if failed { 500 } else { 200 },
        duration_us: 10 + i as u64,
        logs: vec![format!("line {i}")],
        error: failed.then(|| "script error: boom".to_owned()),
        line: failed.then_some(3),
        column: failed.then_some(7),
        context: crate::domain::InvocationContext::http(
            &format!("req-{i}"),
            "POST",
            &format!("/items/{i}"),
            (i % 3 == 0).then_some("a=1&b=two%20words"),
        ),
    }
}
