//! Memory metering (feature `meter`): every byte a script run allocates is
//! counted, so [`Limits::max_memory_bytes`](super::Limits::max_memory_bytes)
//! holds whatever the script does.
//!
//! The sandbox's size scan sees the values in the variables of the frame
//! that is running. It cannot see values a native function is building
//! (`big.map(|x| …)` fills an array before it returns, and no scan sees
//! it), nor the variables of the frames below the running one. The meter
//! does not look at values at all: with jemalloc as the process's global
//! allocator ([`MeteredAllocator`]), each thread has a running count of the
//! bytes it allocated and freed, and the sandbox checks the difference
//! since the run started every few operations. A run's values live on its
//! own thread, so that difference is what the run holds; a value freed
//! elsewhere later (the response body) only makes it look larger.
//!
//! ```ignore
//! // In the binary (or the embedding application):
//! #[global_allocator]
//! static ALLOCATOR: picloud_core::executor::meter::MeteredAllocator =
//!     picloud_core::executor::meter::MeteredAllocator;
//! ```
//!
//! Without that line the meter counts nothing ([`is_active`] says so) and
//! the size scan is the only memory bound. jemalloc keeps the two counters
//! per thread anyway; reading them is two loads.

use std::sync::OnceLock;

use tikv_jemalloc_ctl::thread::{ThreadLocal, allocatedp, deallocatedp};

/// The global allocator that makes the meter work: jemalloc, which counts
/// each thread's allocations.
pub use tikv_jemallocator::Jemalloc as MeteredAllocator;

thread_local! {
    /// This thread's jemalloc counters, when jemalloc is the allocator.
    static COUNTERS: Option<(ThreadLocal<u64>, ThreadLocal<u64>)> = counters();
}

fn counters() -> Option<(ThreadLocal<u64>, ThreadLocal<u64>)> {
    Some((allocatedp::read().ok()?, deallocatedp::read().ok()?))
}

/// Bytes this thread has allocated and not freed (as a running balance
/// that may wrap; only differences mean anything), or `None` when the
/// global allocator is not jemalloc.
pub(crate) fn thread_balance() -> Option<u64> {
    if !is_active() {
        return None;
    }
    COUNTERS
        .try_with(|c| c.map(|(a, d)| a.get().wrapping_sub(d.get())))
        .ok()
        .flatten()
}

/// Whether allocations are being metered: the process's global allocator
/// is [`MeteredAllocator`].
pub fn is_active() -> bool {
    static ACTIVE: OnceLock<bool> = OnceLock::new();
    *ACTIVE.get_or_init(|| {
        // jemalloc is linked either way; its counters move only if it is
        // the allocator in use.
        let Some((allocated, _)) = COUNTERS.try_with(|c| *c).ok().flatten() else {
            return false;
        };
        let before = allocated.get();
        let probe = std::hint::black_box(vec![0_u8; 4096]);
        let after = allocated.get();
        drop(probe);
        after > before
    })
}
