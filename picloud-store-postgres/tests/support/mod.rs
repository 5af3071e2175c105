//! The crate's public test support (feature `test-support`), shared by every
//! test file and the bench.
#![allow(unused_imports)]

pub use picloud_store_postgres::testing::*;
