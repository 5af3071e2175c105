//! Per-app environment: plain variables and secrets, and the sealed forms
//! a store keeps of secrets and of each app's data key.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The most variables (plain and secret) one app may hold.
pub const ENV_MAX_VARS_PER_APP: usize = 100;
/// The largest value, in bytes.
pub const ENV_MAX_VALUE_BYTES: usize = 32 * 1024;
/// The longest name, in bytes.
pub const ENV_MAX_NAME_BYTES: usize = 64;

/// An environment variable's name: 1–64 characters, ASCII letters, digits
/// and `_`, not starting with a digit (so `env.NAME` works in a script).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EnvName(String);

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "an environment variable's name is 1-{ENV_MAX_NAME_BYTES} characters: ASCII letters, digits and _, not starting with a digit"
)]
pub struct EnvNameError;

impl EnvName {
    /// Checks `name`.
    pub fn parse(name: &str) -> Result<Self, EnvNameError> {
        let ok = !name.is_empty()
            && name.len() <= ENV_MAX_NAME_BYTES
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(EnvNameError)
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EnvName {
    type Error = EnvNameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<EnvName> for String {
    fn from(n: EnvName) -> Self {
        n.0
    }
}

impl std::fmt::Display for EnvName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Ciphertext with the nonce it was sealed under (an AEAD's output).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// The random nonce.
    pub nonce: Vec<u8>,
    /// The ciphertext, with its tag.
    pub ciphertext: Vec<u8>,
}

/// What a store keeps of a variable's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValue {
    /// A plain value, stored as it is.
    Plain(String),
    /// A secret, sealed under the app's data key (bound to the app and the
    /// name as associated data).
    Secret(Sealed),
}

/// One stored variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    /// Its name.
    pub name: EnvName,
    /// Its value, plain or sealed.
    pub value: EnvValue,
    /// When it was last written.
    pub updated_at: DateTime<Utc>,
}

/// An app's data key, sealed under a master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// Which master key sealed it: that key's fingerprint (see
    /// `secrets::MasterKey::id`), so a wrong master key is named as such.
    pub master_key_id: String,
    /// The sealed data key (bound to the app as associated data).
    pub sealed: Sealed,
}
