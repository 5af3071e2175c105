//! Property tests over the memory store: `require` agrees with the reference
//! model on random worlds, and random service call sequences agree with the
//! model of expected outcomes.

use picloud_core::testkit::service_model::{arb_service_ops, check_service_agrees_with_model};
use picloud_core::testkit::unique_tag;
use picloud_core::testkit::world::arb_world;
use picloud_store_memory::MemoryStore;
use proptest::prelude::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn require_agrees_with_the_model(spec in arb_world()) {
        runtime().block_on(async {
            let stores = MemoryStore::new().into_stores();
            let world = spec.install(&stores, &unique_tag()).await;
            world.check_require_agrees_with_model(&stores).await;
        });
    }

    #[test]
    fn service_sequences_agree_with_the_model(spec in arb_world(), ops in arb_service_ops()) {
        runtime().block_on(async {
            let stores = MemoryStore::new().into_stores();
            let world = spec.install(&stores, &unique_tag()).await;
            check_service_agrees_with_model(&stores, &world, &ops).await;
        });
    }

    /// Metamorphic: adding memberships of other users and other apps never
    /// changes a principal's decisions on an app.
    #[test]
    fn unrelated_memberships_change_nothing(spec in arb_world(), extra in arb_world()) {
        runtime().block_on(async {
            let stores = MemoryStore::new().into_stores();
            let world = spec.install(&stores, &unique_tag()).await;
            world.check_require_agrees_with_model(&stores).await;
            // A second, unrelated world in the same store.
            let _other = extra.install(&stores, &unique_tag()).await;
            world.check_require_agrees_with_model(&stores).await;
        });
    }
}
