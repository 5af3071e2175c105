//! What the end-to-end benches (`events`, `kv`) share: the command line's
//! store filter, and running a measurement on the memory store and, when
//! `DATABASE_URL` is set, on a fresh PostgreSQL database.

use std::future::Future;

/// Whether the command line's filter (the first argument that is not a
/// flag) selects `label`; no filter selects everything.
pub fn selected(label: &str) -> bool {
    std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .is_none_or(|f| label.contains(&f))
}

/// Runs `measure(label, database_url)` on the server runtime for each
/// selected store: `memory`, then `postgres` on a fresh database (or a
/// SKIPPED line naming `bench`). `cargo bench -- --list` runs nothing.
pub fn on_each_store<F, Fut>(bench: &str, measure: F)
where
    F: Fn(&'static str, Option<String>) -> Fut,
    Fut: Future<Output = ()>,
{
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = picloud::server::runtime().expect("a runtime");
    rt.block_on(async {
        if selected("memory") {
            measure("memory", None).await;
        }
        if selected("postgres") {
            match picloud::store::postgres::testing::database_url() {
                Some(_) => {
                    let url = picloud::store::postgres::testing::fresh_database_url()
                        .await
                        .expect("a fresh database");
                    measure("postgres", Some(url)).await;
                }
                None => println!("{bench} postgres SKIPPED (set DATABASE_URL)"),
            }
        }
    });
}
