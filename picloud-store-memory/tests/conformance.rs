//! The memory store runs the whole public conformance suite.

use picloud_core::Stores;
use picloud_store_memory::MemoryStore;

async fn stores() -> Option<Stores> {
    Some(MemoryStore::new().into_stores())
}

picloud_core::conformance_tests!(stores);
