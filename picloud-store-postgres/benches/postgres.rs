//! Store latency: the memory store and PostgreSQL side by side, per operation.
//!
//! - `require`: `authz::require` for `AppEdit` by a member holding an explicit
//!   `editor` role, so the decision needs the store's `app_role` lookup.
//! - `list_for_app_enriched_1000`: the members list of an app with 1,000
//!   members (one join, ordered by username).
//! - `try_insert_remove`: a `try_insert` of a new pair followed by its
//!   `remove`, so every iteration inserts for real and the table stays small.
//!
//! `postgres` uses the store's defaults: a pooled connection is pinged before
//! use only when suspect (idle for `TEST_IDLE_AFTER`, or since a broken
//! connection was seen), and `app_role` is a coalesced point read on the
//! store's read lane; `postgres_pinged` is the same database through a pool
//! that pings every connection before each use (`test_before_acquire(true)`,
//! the store's default before), to show what that costs on the pool's
//! statements.
//!
//! Runs only when `DATABASE_URL` names a PostgreSQL superuser connection (a
//! fresh database is created and dropped); otherwise prints a skip line and
//! exits successfully. `cargo bench -p picloud-store-postgres`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use picloud_core::domain::{AdminUser, App, AppRole, InstanceRole};
use picloud_core::testkit::Fixture;
use picloud_core::{Capability, Principal, Stores};
use picloud_store_memory::MemoryStore;
use picloud_store_postgres::PostgresStore;
use tokio::runtime::Runtime;

/// Members of the big app.
const MEMBERS: usize = 1_000;

/// The data every benchmark reads, installed identically in each store.
#[derive(Clone)]
struct Setup {
    stores: Stores,
    /// An app on which `member` is an explicit editor.
    app: App,
    member: AdminUser,
    /// An app with `MEMBERS` members.
    big_app: App,
    /// A user with no membership, for `try_insert_remove`.
    loner: AdminUser,
}

impl Setup {
    async fn install(stores: Stores) -> Self {
        let fx = Fixture::new(stores.clone());
        let app = fx.app("app").await;
        let member = fx.user("member", InstanceRole::Member).await;
        stores
            .members
            .try_insert(app.id, member.id, AppRole::Editor)
            .await
            .expect("membership");
        let big_app = fx.app("big").await;
        for i in 0..MEMBERS {
            let u = fx.user(&format!("u{i:04}"), InstanceRole::Member).await;
            let role = AppRole::ALL[i % 3];
            stores
                .members
                .try_insert(big_app.id, u.id, role)
                .await
                .expect("membership");
        }
        let loner = fx.user("loner", InstanceRole::Member).await;
        Self {
            stores,
            app,
            member,
            big_app,
            loner,
        }
    }
}

fn bench_store(c: &mut Criterion, rt: &Runtime, stores: &[(&str, &Setup)]) {
    let mut group = c.benchmark_group("require");
    for (name, s) in stores {
        let p = Principal::of(&s.member);
        let cap = Capability::AppEdit(s.app.id);
        group.bench_function(*name, |b| {
            b.to_async(rt).iter(|| async {
                picloud_core::require(s.stores.authz.as_ref(), black_box(&p), cap)
                    .await
                    .expect("allowed")
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("list_for_app_enriched_1000");
    for (name, s) in stores {
        group.bench_function(*name, |b| {
            b.to_async(rt).iter(|| async {
                let rows = s
                    .stores
                    .members
                    .list_for_app_enriched(black_box(s.big_app.id))
                    .await
                    .expect("list");
                assert_eq!(rows.len(), MEMBERS);
                rows
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("try_insert_remove");
    for (name, s) in stores {
        group.bench_function(*name, |b| {
            b.to_async(rt).iter(|| async {
                let members = &s.stores.members;
                let row = members
                    .try_insert(s.app.id, s.loner.id, AppRole::Viewer)
                    .await
                    .expect("try_insert");
                assert!(row.is_some(), "a new pair is inserted");
                members.remove(s.app.id, s.loner.id).await.expect("remove");
            })
        });
    }
    group.finish();
}

fn main() {
    let url = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => {
            println!(
                "postgres bench SKIPPED: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres to run it"
            );
            return;
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let db = rt.block_on(support::TestDb::create(&url));
    let postgres = rt.block_on(Setup::install(db.store.clone().into_stores()));
    let pinged = PostgresStore::connect_with(
        PostgresStore::pool_options().test_before_acquire(true),
        db.options.clone(),
    );
    let pinged = Setup {
        stores: rt.block_on(pinged).expect("connect").into_stores(),
        ..postgres.clone()
    };
    let memory = rt.block_on(Setup::install(MemoryStore::new().into_stores()));

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench_store(
        &mut c,
        &rt,
        &[
            ("memory", &memory),
            ("postgres", &postgres),
            ("postgres_pinged", &pinged),
        ],
    );
    c.final_summary();

    drop((postgres, pinged));
    rt.block_on(db.drop());
}
