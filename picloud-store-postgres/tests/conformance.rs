//! The public conformance suite of `picloud-core`, run against PostgreSQL.
//!
//! Every case gets its own fresh, migrated database (see `support`), so that
//! cases which count or list everything see only their own rows. Without
//! `DATABASE_URL` every case is skipped with a notice (a failure under
//! `CI=true`).

mod support;

async fn stores() -> Option<picloud_core::Stores> {
    support::fresh_stores().await
}

picloud_core::conformance_tests!(stores);
