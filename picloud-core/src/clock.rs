//! The one clock every store uses.
//!
//! PostgreSQL keeps `timestamptz` to the microsecond. Truncating here means a
//! timestamp read back from any store equals the one that was written, so the
//! memory and Postgres stores stay observably identical.

use chrono::{DateTime, SubsecRound, Utc};

/// Now, truncated to microseconds.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
