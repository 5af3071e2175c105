//! Per-app key-value state: keys, entries, quotas and their limits.
//!
//! Plain data: what a key may be, what a stored entry holds, and what an
//! app may keep. The store keeps values as JSON text; the sandbox turns
//! them into script values and back.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The longest key, in bytes (Workers KV's limit).
pub const KV_MAX_KEY_BYTES: usize = 512;
/// The largest value, in bytes of its JSON text.
pub const KV_MAX_VALUE_BYTES: usize = 1024 * 1024;
/// The most KV operations one run may make.
pub const KV_MAX_OPS_PER_RUN: usize = 1000;
/// The most keys one `list` page holds.
pub const KV_MAX_LIST_LIMIT: usize = 1000;
/// The longest TTL a key may be given: one year.
pub const KV_MAX_TTL_SECS: u64 = 365 * 24 * 3600;

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvKeyError {
    /// The empty string.
    #[error("a key may not be empty")]
    Empty,
    /// More than [`KV_MAX_KEY_BYTES`].
    #[error("a key may hold at most {KV_MAX_KEY_BYTES} bytes")]
    TooLong,
    /// A control character (newlines included).
    #[error("a key may not hold control characters")]
    Control,
}

/// Checks a key: 1 to [`KV_MAX_KEY_BYTES`] bytes of UTF-8 without control
/// characters.
pub fn validate_kv_key(key: &str) -> Result<(), KvKeyError> {
    if key.is_empty() {
        return Err(KvKeyError::Empty);
    }
    if key.len() > KV_MAX_KEY_BYTES {
        return Err(KvKeyError::TooLong);
    }
    if key.chars().any(char::is_control) {
        return Err(KvKeyError::Control);
    }
    Ok(())
}

/// One stored key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    /// The key.
    pub key: String,
    /// The value, as JSON text.
    pub value: String,
    /// The entry's version: it changes on every write of the key, and a
    /// store never hands out the same version twice for one app (a key
    /// deleted and written again gets a new one), so a compare-and-set
    /// cannot be fooled by a key that went and came back.
    pub version: i64,
    /// When the key expires, if it was written with a TTL.
    pub expires_at: Option<DateTime<Utc>>,
    /// When the key was last written.
    pub updated_at: DateTime<Utc>,
}

impl KvEntry {
    /// The bytes this entry counts against its app's quota: its key and
    /// its value.
    pub fn size_bytes(&self) -> u64 {
        (self.key.len() + self.value.len()) as u64
    }
}

/// What an app may keep: a write that would pass either bound is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvQuota {
    /// Keys (unexpired or not yet swept).
    pub max_keys: u64,
    /// Bytes of keys and values together.
    pub max_bytes: u64,
}

/// What an app holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvUsage {
    /// Keys held (an expired key counts until it is swept or overwritten).
    pub keys: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
}

impl KvUsage {
    /// The usage after a write of an entry of `bytes` bytes (key and value)
    /// that replaces an entry of `replaced` bytes (expired or not), or
    /// creates a key (`None`).
    pub const fn after_write(&self, replaced: Option<u64>, bytes: u64) -> KvUsage {
        match replaced {
            Some(old) => KvUsage {
                keys: self.keys,
                bytes: self.bytes.saturating_sub(old).saturating_add(bytes),
            },
            None => KvUsage {
                keys: self.keys.saturating_add(1),
                bytes: self.bytes.saturating_add(bytes),
            },
        }
    }

    /// Whether `quota` admits going from this usage to `next`: a write may
    /// not take either count past its bound. One that does not grow a count
    /// is always admitted, so an app above a lowered quota can still
    /// shrink or rewrite what it holds.
    pub const fn admits(&self, next: KvUsage, quota: KvQuota) -> bool {
        (next.keys <= quota.max_keys || next.keys <= self.keys)
            && (next.bytes <= quota.max_bytes || next.bytes <= self.bytes)
    }
}

/// The integer a stored value holds, for `incr`: `None` unless the JSON
/// text is an integer (`-?(0|[1-9][0-9]*)`, JSON whitespace around it
/// allowed) within the range of an `i64`.
pub fn kv_integer(value: &str) -> Option<i64> {
    let t = value.trim_matches([' ', '\t', '\n', '\r']);
    let digits = t.strip_prefix('-').unwrap_or(t);
    let json = match digits.as_bytes() {
        [b'0'] => true,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if json { t.parse().ok() } else { None }
}

/// One page of [`KvStore::kv_list`](crate::ports::KvStore::kv_list).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvPage {
    /// Keys with the prefix, in byte order, unexpired.
    pub keys: Vec<String>,
    /// Pass this as `after` for the next page; `None` at the end.
    pub cursor: Option<String>,
}

/// A write to one key (set or compare-and-set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvWrite {
    /// The key (already validated).
    pub key: String,
    /// The value as JSON text (at most [`KV_MAX_VALUE_BYTES`]).
    pub value: String,
    /// Seconds until it expires; `None` keeps it until deleted.
    pub ttl_secs: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded_and_printable() {
        assert_eq!(validate_kv_key(""), Err(KvKeyError::Empty));
        assert!(validate_kv_key(&"k".repeat(KV_MAX_KEY_BYTES)).is_ok());
        assert_eq!(
            validate_kv_key(&"k".repeat(KV_MAX_KEY_BYTES + 1)),
            Err(KvKeyError::TooLong)
        );
        assert_eq!(validate_kv_key("a\nb"), Err(KvKeyError::Control));
        assert!(validate_kv_key("user:42/visits ü").is_ok());
    }

    #[test]
    fn only_json_integers_in_range_count() {
        assert_eq!(kv_integer("42"), Some(42));
        assert_eq!(kv_integer(" -7\n"), Some(-7));
        assert_eq!(kv_integer("0"), Some(0));
        assert_eq!(kv_integer(&i64::MIN.to_string()), Some(i64::MIN));
        for bad in [
            "",
            "-",
            "01",
            "+1",
            "1.0",
            "1e3",
            "\"1\"",
            "true",
            "null",
            "[1]",
            "9223372036854775808",
        ] {
            assert_eq!(kv_integer(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_write_is_admitted_unless_it_grows_past_the_quota() {
        let quota = KvQuota {
            max_keys: 2,
            max_bytes: 10,
        };
        let held = KvUsage { keys: 1, bytes: 6 };
        assert_eq!(held.after_write(None, 4), KvUsage { keys: 2, bytes: 10 });
        assert!(held.admits(held.after_write(None, 4), quota));
        assert!(!held.admits(held.after_write(None, 5), quota));
        assert_eq!(held.after_write(Some(6), 9), KvUsage { keys: 1, bytes: 9 });
        // Above a lowered quota, a write that does not grow is admitted.
        let over = KvUsage { keys: 3, bytes: 20 };
        assert!(over.admits(over.after_write(Some(5), 5), quota));
        assert!(over.admits(over.after_write(Some(5), 2), quota));
        assert!(!over.admits(over.after_write(Some(5), 6), quota));
        assert!(!over.admits(over.after_write(None, 0), quota));
    }
}
