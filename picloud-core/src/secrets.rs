//! Sealing secrets: envelope encryption with XChaCha20-Poly1305.
//!
//! Windmill encrypts its secrets with AES-256-CBC, no random IV, and the
//! key in the same database as the data. PiCloud does this instead:
//!
//! - **An AEAD with a random nonce.** XChaCha20-Poly1305 (RustCrypto's
//!   `chacha20poly1305`): a 24-byte nonce is large enough to draw at random
//!   for every seal, and the tag means a changed ciphertext does not open.
//! - **Bound to where it belongs.** The associated data names the app and
//!   the variable (`picloud/secret/v1/<app>/<name>`), so a ciphertext copied
//!   to another app or another name does not open there.
//! - **Envelopes.** Each app has its own random 256-bit [`DataKey`]; the
//!   store keeps it only wrapped (sealed) under the instance's [`MasterKey`],
//!   which lives outside the database (`PICLOUD_MASTER_KEY` or
//!   `PICLOUD_MASTER_KEY_FILE`). A wrapped key records which master key
//!   sealed it ([`MasterKey::id`]), so rotating the master key re-wraps the
//!   data keys (a few bytes per app) and never touches a secret.
//!
//! Plaintext keys live only in memory, zeroed by nothing in particular: the
//! process is trusted with them while it runs.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use crate::domain::{EnvName, Sealed, WrappedKey};
use crate::ids::AppId;

/// The length of a key, in bytes.
pub const KEY_BYTES: usize = 32;
/// The length of a nonce, in bytes.
pub const NONCE_BYTES: usize = 24;

/// Why a key could not be read, or a sealed value could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// A master key is not 64 hex characters.
    #[error("a master key is 64 hex characters (32 bytes), e.g. from `openssl rand -hex 32`")]
    BadKey,
    /// The wrapped key was sealed under another master key.
    #[error(
        "the data key was wrapped by master key {found}, not by the configured one ({configured}); set the master key it was written with, or rotate with `picloud admin rotate-master-key`"
    )]
    WrongMasterKey {
        /// The id the wrapped key names.
        found: String,
        /// The configured key's id.
        configured: String,
    },
    /// The ciphertext, nonce or associated data do not match: it was
    /// changed, or belongs to another app or name.
    #[error("a sealed value does not open: it was changed, or belongs elsewhere")]
    Corrupt,
    /// The operating system's random source failed.
    #[error("no randomness: {0}")]
    Random(String),
}

fn random<const N: usize>() -> Result<[u8; N], SecretError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| SecretError::Random(e.to_string()))?;
    Ok(buf)
}

fn seal(key: &[u8; KEY_BYTES], aad: &[u8], msg: &[u8]) -> Result<Sealed, SecretError> {
    let cipher = XChaCha20Poly1305::new_from_slice(key).map_err(|_| SecretError::BadKey)?;
    let nonce: [u8; NONCE_BYTES] = random()?;
    let ciphertext = cipher
        .encrypt(&XNonce::from(nonce), Payload { msg, aad })
        .map_err(|_| SecretError::Corrupt)?;
    Ok(Sealed {
        nonce: nonce.to_vec(),
        ciphertext,
    })
}

fn open(key: &[u8; KEY_BYTES], aad: &[u8], sealed: &Sealed) -> Result<Vec<u8>, SecretError> {
    let nonce: [u8; NONCE_BYTES] = sealed
        .nonce
        .as_slice()
        .try_into()
        .map_err(|_| SecretError::Corrupt)?;
    let cipher = XChaCha20Poly1305::new_from_slice(key).map_err(|_| SecretError::BadKey)?;
    cipher
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &sealed.ciphertext,
                aad,
            },
        )
        .map_err(|_| SecretError::Corrupt)
}

/// The associated data of an app's wrapped data key.
fn data_key_aad(app: AppId) -> Vec<u8> {
    format!("picloud/data-key/v1/{}", app.as_uuid()).into_bytes()
}

/// The associated data of a secret.
fn secret_aad(app: AppId, name: &EnvName) -> Vec<u8> {
    format!("picloud/secret/v1/{}/{}", app.as_uuid(), name.as_str()).into_bytes()
}

/// The instance's master key: it wraps every app's [`DataKey`] and never
/// reaches the store. Its `Debug` form shows only its [`id`](Self::id).
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey([u8; KEY_BYTES]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.id())
    }
}

impl MasterKey {
    /// A key from 64 hex characters (surrounding whitespace, such as a
    /// file's trailing newline, is ignored).
    pub fn from_hex(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        if text.len() != 2 * KEY_BYTES {
            return Err(SecretError::BadKey);
        }
        let bytes = hex::decode(text).map_err(|_| SecretError::BadKey)?;
        let key: [u8; KEY_BYTES] = bytes.try_into().map_err(|_| SecretError::BadKey)?;
        Ok(Self(key))
    }

    /// A fresh random key (the memory store's, which keeps nothing anyway).
    pub fn random() -> Result<Self, SecretError> {
        Ok(Self(random()?))
    }

    /// The key's fingerprint: 16 hex characters of a SHA-256 over a label
    /// and the key. It names the key in a [`WrappedKey`] and in messages
    /// without revealing it.
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"picloud master key id v1\0");
        h.update(self.0);
        hex::encode(&h.finalize()[..8])
    }

    /// Seals `key`, the data key of `app`, under this master key.
    pub fn wrap(&self, app: AppId, key: &DataKey) -> Result<WrappedKey, SecretError> {
        Ok(WrappedKey {
            master_key_id: self.id(),
            sealed: seal(&self.0, &data_key_aad(app), &key.0)?,
        })
    }

    /// Opens the data key of `app` from `wrapped`.
    pub fn unwrap_key(&self, app: AppId, wrapped: &WrappedKey) -> Result<DataKey, SecretError> {
        let configured = self.id();
        if wrapped.master_key_id != configured {
            return Err(SecretError::WrongMasterKey {
                found: wrapped.master_key_id.clone(),
                configured,
            });
        }
        let bytes = open(&self.0, &data_key_aad(app), &wrapped.sealed)?;
        let key: [u8; KEY_BYTES] = bytes.try_into().map_err(|_| SecretError::Corrupt)?;
        Ok(DataKey(key))
    }
}

/// One app's data key: it seals that app's secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey([u8; KEY_BYTES]);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(…)")
    }
}

impl DataKey {
    /// A fresh random key.
    pub fn random() -> Result<Self, SecretError> {
        Ok(Self(random()?))
    }

    /// Seals `value`, the secret `name` of `app`.
    pub fn seal(&self, app: AppId, name: &EnvName, value: &str) -> Result<Sealed, SecretError> {
        seal(&self.0, &secret_aad(app, name), value.as_bytes())
    }

    /// Opens the secret `name` of `app`.
    pub fn open(&self, app: AppId, name: &EnvName, sealed: &Sealed) -> Result<String, SecretError> {
        let bytes = open(&self.0, &secret_aad(app, name), sealed)?;
        String::from_utf8(bytes).map_err(|_| SecretError::Corrupt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> EnvName {
        EnvName::parse(s).unwrap()
    }

    #[test]
    fn a_secret_opens_only_for_its_app_and_name() {
        let app = AppId::new();
        let key = DataKey::random().unwrap();
        let sealed = key.seal(app, &name("TOKEN"), "hunter2").unwrap();
        assert_eq!(sealed.nonce.len(), NONCE_BYTES);
        assert!(!sealed.ciphertext.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(key.open(app, &name("TOKEN"), &sealed).unwrap(), "hunter2");
        assert_eq!(
            key.open(app, &name("OTHER"), &sealed),
            Err(SecretError::Corrupt)
        );
        assert_eq!(
            key.open(AppId::new(), &name("TOKEN"), &sealed),
            Err(SecretError::Corrupt)
        );
        let other = DataKey::random().unwrap();
        assert_eq!(
            other.open(app, &name("TOKEN"), &sealed),
            Err(SecretError::Corrupt)
        );
        let mut changed = sealed.clone();
        changed.ciphertext[0] ^= 1;
        assert_eq!(
            key.open(app, &name("TOKEN"), &changed),
            Err(SecretError::Corrupt)
        );
    }

    #[test]
    fn every_seal_draws_a_new_nonce() {
        let app = AppId::new();
        let key = DataKey::random().unwrap();
        let a = key.seal(app, &name("A"), "same").unwrap();
        let b = key.seal(app, &name("A"), "same").unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn a_data_key_unwraps_only_under_its_master_key_and_app() {
        let app = AppId::new();
        let master = MasterKey::random().unwrap();
        let data = DataKey::random().unwrap();
        let wrapped = master.wrap(app, &data).unwrap();
        assert_eq!(wrapped.master_key_id, master.id());
        assert_eq!(master.unwrap_key(app, &wrapped).unwrap(), data);
        assert_eq!(
            master.unwrap_key(AppId::new(), &wrapped),
            Err(SecretError::Corrupt)
        );
        let other = MasterKey::random().unwrap();
        assert!(matches!(
            other.unwrap_key(app, &wrapped),
            Err(SecretError::WrongMasterKey { .. })
        ));
        // Re-wrapped under the other key, the same data key comes back.
        let rewrapped = other.wrap(app, &data).unwrap();
        assert_eq!(other.unwrap_key(app, &rewrapped).unwrap(), data);
    }

    #[test]
    fn master_keys_are_64_hex_characters() {
        let hex64 = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let key = MasterKey::from_hex(&format!("  {hex64}\n")).unwrap();
        assert_eq!(key.id().len(), 16);
        assert!(!format!("{key:?}").contains("0011"));
        assert_eq!(MasterKey::from_hex(&hex64[..62]), Err(SecretError::BadKey));
        assert_eq!(
            MasterKey::from_hex(&hex64.replace('a', "g")),
            Err(SecretError::BadKey)
        );
    }
}
