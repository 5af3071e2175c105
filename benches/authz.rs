//! Authorization speed: the pure decision, and `require` through the memory
//! store (with and without the explicit-role lookup).
//!
//! Targets (issue "Core library"): under 50 ns for the pure decision, under
//! 500 ns for `require` over the memory store.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use picloud::store::memory::MemoryStore;
use picloud::{AppRole, Capability, InstanceRole, Principal, decide, require};
use picloud_core::testkit::Fixture;

fn bench_authz(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let stores = MemoryStore::new().into_stores();
    let fx = Fixture::new(stores.clone());
    let (owner, member, app) = rt.block_on(async {
        let owner = fx.user("owner", InstanceRole::Owner).await;
        let member = fx.user("member", InstanceRole::Member).await;
        let app = fx.app("app").await;
        // A realistic store: many apps and memberships besides the one asked about.
        for i in 0..1_000 {
            let other = fx.app(&format!("other-{i}")).await;
            stores
                .members
                .try_insert(other.id, member.id, AppRole::Viewer)
                .await
                .unwrap();
        }
        stores
            .members
            .try_insert(app.id, member.id, AppRole::Editor)
            .await
            .unwrap();
        (owner, member, app)
    });
    let (owner, member) = (Principal::of(&owner), Principal::of(&member));
    let edit = Capability::AppEdit(app.id);

    let mut g = c.benchmark_group("authz");
    g.bench_function("decide (pure)", |b| {
        b.iter(|| {
            decide(
                black_box(&member),
                black_box(Some(AppRole::Editor)),
                black_box(edit),
            )
        })
    });
    g.bench_function("require via memory store (member, with lookup)", |b| {
        b.to_async(&rt)
            .iter(|| async { require(stores.authz.as_ref(), black_box(&member), edit).await })
    });
    g.bench_function("require via memory store (owner, no lookup)", |b| {
        b.to_async(&rt)
            .iter(|| async { require(stores.authz.as_ref(), black_box(&owner), edit).await })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = bench_authz
}
criterion_main!(benches);
