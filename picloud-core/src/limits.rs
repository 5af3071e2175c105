//! Per-invocation limits.
//!
//! A script is untrusted code running inside the server process, so every
//! resource it can grab has a ceiling: time (a wall-clock deadline and an
//! operation count), native stack (call depth and expression depth, so deep
//! recursion becomes an error instead of a crashed process), memory (string,
//! array and map sizes, variable and function counts) and log volume.
//!
//! [`Limits`] has defaults that a normal request handler never reaches and
//! can be overridden per app (it is `Deserialize`, with every field
//! optional). Whatever an app asks for, [`Limits::validate`] bounds it and the
//! sandbox clamps it again ([`Limits::clamped`]) before use: rhai treats 0 as
//! "unlimited" for most of its limits, and an unlimited depth would let a
//! script overflow the native stack, which aborts the whole process.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The resource limits of one invocation.
///
/// Every field is a maximum. Zero is not "unlimited": [`Limits::validate`]
/// rejects it (except for [`Limits::max_output_bytes`], where 0 means "keep
/// no logs"), and [`Limits::clamped`] raises it to 1.
///
/// Serialized field names are the Rust names, except `wall_clock`, which is
/// `wall_clock_ms` (an integer number of milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Wall-clock time the script may run, from its first operation, in
    /// milliseconds on the wire (`wall_clock_ms`). Default 1 s, at most
    /// 60 s. Time spent waiting in the pool's queue does not count.
    #[serde(rename = "wall_clock_ms", with = "millis")]
    #[cfg_attr(feature = "openapi", schema(value_type = u64, default = 1000, example = 1000))]
    pub wall_clock: Duration,
    /// Rhai operations (roughly: expressions and statements evaluated).
    /// Default 50 million, about one second of a busy loop on one core in a
    /// release build, so the wall clock and this limit agree; unlike the wall
    /// clock it is deterministic, independent of load and machine.
    pub max_operations: u64,
    /// Nested script function calls (including closures). Default 64.
    pub max_call_depth: usize,
    /// Nesting depth of expressions and statements at the top level.
    /// Checked at compile time. Default 64.
    pub max_expr_depth: usize,
    /// Nesting depth of expressions and statements inside functions.
    /// Checked at compile time. Default 32.
    pub max_function_expr_depth: usize,
    /// Length in bytes of any string, and of all strings inside one array
    /// or map together. Default 1 MiB.
    pub max_string_bytes: usize,
    /// Elements of one array (nested arrays counted in full) or bytes of
    /// one BLOB. Default 10 000.
    pub max_array_len: usize,
    /// Properties of one object map (nested maps counted in full).
    /// Default 10 000.
    pub max_map_len: usize,
    /// Variables alive at once, including function parameters up the call
    /// stack. Default 512.
    pub max_variables: usize,
    /// Functions and closures defined by one script. Checked at compile
    /// time. Default 256.
    pub max_functions: usize,
    /// Bytes of `print`/`debug` output kept per invocation; the rest is
    /// dropped and the log ends with a truncation marker. Default 64 KiB.
    pub max_output_bytes: usize,
    /// Bytes of data all the run's variables may hold together, as the
    /// sandbox estimates them (string and key bytes, 16 bytes per value
    /// slot, 48 per map entry), summed over every function frame of the
    /// call stack, plus the bodies of every `response(...)` value the run
    /// creates. Checked by the periodic size scan. Default 64 MiB.
    pub max_memory_bytes: usize,
    /// Jobs the app may hold in its queue (queued, running and dead
    /// together): past it, `/async` answers 429 and stores nothing.
    /// Default 10 000, at most 1 000 000.
    pub max_queued_jobs: u64,
    /// Bytes of stored input (requests, payloads) those jobs may hold.
    /// Default 64 MiB, at most 1 GiB.
    pub max_queued_bytes: u64,
    /// Keys the app may hold in its KV state. Default 100 000, at most
    /// 10 000 000.
    pub kv_max_keys: u64,
    /// Bytes of keys and values the app's KV state may hold. Default
    /// 64 MiB, at most 8 GiB.
    pub kv_max_bytes: u64,
}

impl Limits {
    /// The highest wall clock [`Limits::validate`] accepts: 60 s.
    pub const MAX_WALL_CLOCK: Duration = Duration::from_secs(60);
    /// The highest operation count accepted: more than a script can run
    /// within [`Limits::MAX_WALL_CLOCK`], so the wall clock is what ends it.
    pub const MAX_OPERATIONS: u64 = 5_000_000_000;
    /// The highest call depth accepted. The worker's stack check stops
    /// recursion that would not fit anyway; this keeps the limit meaningful.
    pub const MAX_CALL_DEPTH: usize = 256;
    /// The highest expression depth accepted (top level and in functions).
    /// Parsing recurses once per level; `executor::compile` parses
    /// on a thread whose stack fits this depth even in a debug build.
    pub const MAX_EXPR_DEPTH: usize = 256;
    /// The highest string size accepted: 64 MiB.
    pub const MAX_STRING_BYTES: usize = 64 * 1024 * 1024;
    /// The highest array and map sizes accepted. They also bound how deep
    /// data can nest, and so the native recursion over it (see
    /// `ExecutorConfig::stack_size`).
    pub const MAX_COLLECTION_LEN: usize = 100_000;
    /// The highest variable and function counts accepted.
    pub const MAX_DEFINITIONS: usize = 10_000;
    /// The highest log volume accepted: 16 MiB.
    pub const MAX_OUTPUT_BYTES: usize = 16 * 1024 * 1024;
    /// The highest memory budget accepted: 512 MiB.
    pub const MAX_MEMORY_BYTES: usize = 512 * 1024 * 1024;
    /// The highest `max_queued_jobs` accepted.
    pub const MAX_QUEUED_JOBS: u64 = 1_000_000;
    /// The highest `max_queued_bytes` accepted: 1 GiB.
    pub const MAX_QUEUED_BYTES: u64 = 1024 * 1024 * 1024;
    /// The highest `kv_max_keys` accepted.
    pub const MAX_KV_KEYS: u64 = 10_000_000;
    /// The highest `kv_max_bytes` accepted: 8 GiB.
    pub const MAX_KV_BYTES: u64 = 8 * 1024 * 1024 * 1024;

    /// Checks that every limit is positive and below the hard ceilings.
    /// For an API that lets an app override its limits: reject bad values
    /// with a message instead of clamping them silently.
    pub fn validate(&self) -> Result<(), LimitsError> {
        fn positive(field: &'static str, value: u64) -> Result<(), LimitsError> {
            if value == 0 {
                Err(LimitsError {
                    field,
                    reason: "must be greater than 0".into(),
                })
            } else {
                Ok(())
            }
        }
        fn at_most(field: &'static str, value: usize, max: usize) -> Result<(), LimitsError> {
            positive(field, value as u64)?;
            if value > max {
                return Err(LimitsError {
                    field,
                    reason: format!("must be at most {max}"),
                });
            }
            Ok(())
        }
        if self.wall_clock.is_zero() {
            return positive("wall_clock_ms", 0);
        }
        if self.wall_clock > Self::MAX_WALL_CLOCK {
            return Err(LimitsError {
                field: "wall_clock_ms",
                reason: format!("must be at most {}", Self::MAX_WALL_CLOCK.as_millis()),
            });
        }
        positive("max_operations", self.max_operations)?;
        if self.max_operations > Self::MAX_OPERATIONS {
            return Err(LimitsError {
                field: "max_operations",
                reason: format!("must be at most {}", Self::MAX_OPERATIONS),
            });
        }
        at_most("max_call_depth", self.max_call_depth, Self::MAX_CALL_DEPTH)?;
        at_most("max_expr_depth", self.max_expr_depth, Self::MAX_EXPR_DEPTH)?;
        at_most(
            "max_function_expr_depth",
            self.max_function_expr_depth,
            Self::MAX_EXPR_DEPTH,
        )?;
        at_most(
            "max_string_bytes",
            self.max_string_bytes,
            Self::MAX_STRING_BYTES,
        )?;
        at_most(
            "max_array_len",
            self.max_array_len,
            Self::MAX_COLLECTION_LEN,
        )?;
        at_most("max_map_len", self.max_map_len, Self::MAX_COLLECTION_LEN)?;
        at_most("max_variables", self.max_variables, Self::MAX_DEFINITIONS)?;
        at_most("max_functions", self.max_functions, Self::MAX_DEFINITIONS)?;
        at_most(
            "max_memory_bytes",
            self.max_memory_bytes,
            Self::MAX_MEMORY_BYTES,
        )?;
        for (field, value, max) in [
            (
                "max_queued_jobs",
                self.max_queued_jobs,
                Self::MAX_QUEUED_JOBS,
            ),
            (
                "max_queued_bytes",
                self.max_queued_bytes,
                Self::MAX_QUEUED_BYTES,
            ),
            ("kv_max_keys", self.kv_max_keys, Self::MAX_KV_KEYS),
            ("kv_max_bytes", self.kv_max_bytes, Self::MAX_KV_BYTES),
        ] {
            positive(field, value)?;
            if value > max {
                return Err(LimitsError {
                    field,
                    reason: format!("must be at most {max}"),
                });
            }
        }
        if self.max_output_bytes > Self::MAX_OUTPUT_BYTES {
            return Err(LimitsError {
                field: "max_output_bytes",
                reason: format!("must be at most {}", Self::MAX_OUTPUT_BYTES),
            });
        }
        Ok(())
    }

    /// These limits forced into the accepted ranges: zeros become 1, values
    /// above a ceiling become the ceiling. The sandbox applies this to every
    /// `Limits` it is given, so no input can switch a limit off.
    #[must_use]
    pub fn clamped(&self) -> Self {
        let within = |v: usize, max: usize| v.clamp(1, max);
        Self {
            wall_clock: self
                .wall_clock
                .clamp(Duration::from_millis(1), Self::MAX_WALL_CLOCK),
            max_operations: self.max_operations.clamp(1, Self::MAX_OPERATIONS),
            max_call_depth: within(self.max_call_depth, Self::MAX_CALL_DEPTH),
            max_expr_depth: within(self.max_expr_depth, Self::MAX_EXPR_DEPTH),
            max_function_expr_depth: within(self.max_function_expr_depth, Self::MAX_EXPR_DEPTH),
            max_string_bytes: within(self.max_string_bytes, Self::MAX_STRING_BYTES),
            max_array_len: within(self.max_array_len, Self::MAX_COLLECTION_LEN),
            max_map_len: within(self.max_map_len, Self::MAX_COLLECTION_LEN),
            max_variables: within(self.max_variables, Self::MAX_DEFINITIONS),
            max_functions: within(self.max_functions, Self::MAX_DEFINITIONS),
            max_output_bytes: self.max_output_bytes.min(Self::MAX_OUTPUT_BYTES),
            max_memory_bytes: within(self.max_memory_bytes, Self::MAX_MEMORY_BYTES),
            max_queued_jobs: self.max_queued_jobs.clamp(1, Self::MAX_QUEUED_JOBS),
            max_queued_bytes: self.max_queued_bytes.clamp(1, Self::MAX_QUEUED_BYTES),
            kv_max_keys: self.kv_max_keys.clamp(1, Self::MAX_KV_KEYS),
            kv_max_bytes: self.kv_max_bytes.clamp(1, Self::MAX_KV_BYTES),
        }
    }
}

impl Limits {
    /// The app's KV quota under these limits.
    pub fn kv_quota(&self) -> crate::domain::KvQuota {
        crate::domain::KvQuota {
            max_keys: self.kv_max_keys,
            max_bytes: self.kv_max_bytes,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            wall_clock: Duration::from_secs(1),
            max_operations: 50_000_000,
            max_call_depth: 64,
            max_expr_depth: 64,
            max_function_expr_depth: 32,
            max_string_bytes: 1024 * 1024,
            max_array_len: 10_000,
            max_map_len: 10_000,
            max_variables: 512,
            max_functions: 256,
            max_output_bytes: 64 * 1024,
            max_memory_bytes: 64 * 1024 * 1024,
            max_queued_jobs: 10_000,
            max_queued_bytes: 64 * 1024 * 1024,
            kv_max_keys: 100_000,
            kv_max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A limit value that [`Limits::validate`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid limit {field}: {reason}")]
pub struct LimitsError {
    /// The serialized name of the field.
    pub field: &'static str,
    /// Why it was refused.
    pub reason: String,
}

/// Which limit a script hit. Carried by
/// `executor::ExecError::LimitExceeded` and
/// `executor::CompileError::limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LimitKind {
    /// [`Limits::wall_clock`].
    WallClock,
    /// [`Limits::max_operations`].
    Operations,
    /// [`Limits::max_call_depth`].
    CallDepth,
    /// [`Limits::max_expr_depth`] or [`Limits::max_function_expr_depth`].
    ExprDepth,
    /// [`Limits::max_string_bytes`] (also a string literal at compile time).
    StringSize,
    /// [`Limits::max_array_len`] (also an array literal at compile time).
    ArraySize,
    /// [`Limits::max_map_len`] (also a map literal at compile time).
    MapSize,
    /// [`Limits::max_variables`].
    Variables,
    /// [`Limits::max_functions`].
    Functions,
    /// [`Limits::max_memory_bytes`].
    Memory,
    /// The compile budget: parsing the source took too long (see
    /// `CompileBudget`).
    CompileTime,
    /// The worker's native stack: recursion too deep for the thread even
    /// within the call-depth limit (a backstop; see `Sandbox::with_stack_limit`).
    Stack,
}

impl LimitKind {
    /// A short name for messages: "wall clock", "operations", ...
    pub fn name(self) -> &'static str {
        match self {
            Self::WallClock => "wall clock",
            Self::Operations => "operations",
            Self::CallDepth => "call depth",
            Self::ExprDepth => "expression depth",
            Self::StringSize => "string size",
            Self::ArraySize => "array size",
            Self::MapSize => "map size",
            Self::Variables => "variables",
            Self::Functions => "functions",
            Self::Memory => "memory",
            Self::CompileTime => "compile time",
            Self::Stack => "native stack",
        }
    }
}

impl std::fmt::Display for LimitKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `Duration` as an integer number of milliseconds, for `wall_clock_ms`.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_u64(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
        u64::deserialize(de).map(Duration::from_millis)
    }
}
