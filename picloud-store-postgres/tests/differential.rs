//! Property tests against PostgreSQL:
//!
//! - the memory store and the PostgreSQL store agree, observation by
//!   observation, on random worlds and random sequences of repository
//!   operations;
//! - `require` through PostgreSQL agrees with the reference model of the
//!   capability table on random worlds;
//! - random grant / change-role / remove sequences through the membership
//!   service agree with the service model.
//!
//! The case count is modest (24 by default) because every case talks to a
//! real database; set `PROPTEST_CASES` for more. Async code runs on one tokio
//! runtime per property, with `block_on` inside each case.

mod support;

use picloud_core::testkit::ops::{Observation, RepoOp, apply, arb_repo_ops};
use picloud_core::testkit::service_model::{arb_service_ops, check_service_agrees_with_model};
use picloud_core::testkit::unique_tag;
use picloud_core::testkit::world::{WorldSpec, arb_world};
use picloud_store_memory::MemoryStore;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tokio::runtime::Runtime;

use support::TestDb;

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: support::proptest_cases(24),
        // Cases are real database round trips: keep shrinking bounded.
        max_shrink_iters: 256,
        ..Config::default()
    })
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs `ops` on a fresh memory store and on a fresh PostgreSQL database,
/// both holding the same world under the same tag.
///
/// A fresh database per case (rather than one shared database with a tag per
/// case) because `CountActiveOwners` counts every owner in the store: its
/// observations are only comparable on stores holding just this world.
async fn observe_both(
    url: &str,
    spec: &WorldSpec,
    ops: &[RepoOp],
) -> (Vec<Observation>, Vec<Observation>) {
    let tag = unique_tag();
    let memory = MemoryStore::new().into_stores();
    let world = spec.install(&memory, &tag).await;
    let from_memory = apply(&memory, &world, ops).await;

    let db = TestDb::create(url).await;
    let postgres = db.store.clone().into_stores();
    let world = spec.install(&postgres, &tag).await;
    let from_postgres = apply(&postgres, &world, ops).await;
    drop(postgres);
    db.drop().await;
    (from_memory, from_postgres)
}

#[test]
fn memory_and_postgres_agree_on_random_operations() {
    let Some(url) = support::database_url() else {
        return;
    };
    let rt = runtime();
    runner()
        .run(&(arb_world(), arb_repo_ops()), |(spec, ops)| {
            let (memory, postgres) = rt.block_on(observe_both(&url, &spec, &ops));
            prop_assert_eq!(memory, postgres, "ops: {:?}", ops);
            Ok(())
        })
        .unwrap();
}

#[test]
fn require_through_postgres_agrees_with_the_model() {
    let Some(url) = support::database_url() else {
        return;
    };
    let rt = runtime();
    // One database for the whole property: each case installs its world under
    // a unique tag, and the check only looks at that world's users and apps.
    let db = rt.block_on(TestDb::create(&url));
    let stores = db.store.clone().into_stores();
    runner()
        .run(&arb_world(), |spec| {
            rt.block_on(async {
                let world = spec.install(&stores, &unique_tag()).await;
                world.check_require_agrees_with_model(&stores).await;
            });
            Ok(())
        })
        .unwrap();
    drop(stores);
    rt.block_on(db.drop());
}

#[test]
fn membership_service_over_postgres_agrees_with_the_model() {
    let Some(url) = support::database_url() else {
        return;
    };
    let rt = runtime();
    // One database, a unique tag per case: the service model only reads the
    // members of its own world's first app.
    let db = rt.block_on(TestDb::create(&url));
    let stores = db.store.clone().into_stores();
    runner()
        .run(&(arb_world(), arb_service_ops()), |(spec, ops)| {
            rt.block_on(async {
                let world = spec.install(&stores, &unique_tag()).await;
                check_service_agrees_with_model(&stores, &world, &ops).await;
            });
            Ok(())
        })
        .unwrap();
    drop(stores);
    rt.block_on(db.drop());
}
