//! Scripts, their names and versions, and deploys.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::text::text_newtype;

use crate::ids::{AdminUserId, AppId, ScriptId};

/// A script's name within its app: 1–63 characters of lowercase `a-z`,
/// `0-9`, `_` and `-`, starting with a letter (the rule of app slugs, with
/// `_` allowed), used in URLs (`/run/{app}/{name}`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ScriptName(String);

/// Why a script name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "script name must be 1 to 63 characters of lowercase a-z, 0-9, '_' and '-', starting with a letter"
)]
pub struct ScriptNameError;

impl ScriptName {
    /// The longest name.
    pub const MAX_LEN: usize = 63;

    /// Validates `s` as a script name.
    pub fn parse(s: &str) -> Result<Self, ScriptNameError> {
        let ok = (1..=Self::MAX_LEN).contains(&s.len())
            && s.as_bytes()[0].is_ascii_lowercase()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ScriptNameError)
        }
    }

    /// A name as a store reads it back: [`parse`](Self::parse)'s rule, or
    /// the wider one of earlier versions (1–64 of `A-Za-z0-9_-`), so that a
    /// script deployed under it still loads and serves. New names always
    /// go through [`parse`](Self::parse).
    pub fn parse_stored(s: &str) -> Result<Self, ScriptNameError> {
        Self::parse(s).or_else(|_| {
            let ok = (1..=64).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if ok {
                Ok(Self(s.to_owned()))
            } else {
                Err(ScriptNameError)
            }
        })
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

text_newtype!(ScriptName, ScriptNameError);

/// A script of an app: a name, and which of its immutable versions is live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Script {
    /// Its id.
    pub id: ScriptId,
    /// Its app.
    pub app_id: AppId,
    /// Its name within the app.
    pub name: ScriptName,
    /// The version that `/run` executes (1-based).
    pub live_version: u32,
    /// The newest version (a rollback makes `live_version` lower than this).
    pub latest_version: u32,
    /// When it was first deployed.
    pub created_at: DateTime<Utc>,
    /// When it last changed (a deploy or a rollback).
    pub updated_at: DateTime<Utc>,
    /// Who may call its endpoint.
    pub visibility: Visibility,
}

/// Who may call a script's endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Anyone (the default): a serverless function's public URL.
    #[default]
    Public,
    /// Only callers with a PiCloud token holding `AppView` on its app; the
    /// token is removed before the script sees the request.
    Private,
}

impl Visibility {
    /// `public` or `private`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
        }
    }

    /// The visibility named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "public" => Some(Self::Public),
            "private" => Some(Self::Private),
            _ => None,
        }
    }
}

/// One immutable version of a script's source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptVersion {
    /// The script.
    pub script_id: ScriptId,
    /// 1, 2, 3, … in deploy order.
    pub version: u32,
    /// The Rhai source, as uploaded (it compiled at upload).
    pub source: String,
    /// Who deployed it.
    pub created_by: AdminUserId,
    /// When.
    pub created_at: DateTime<Utc>,
}

impl ScriptVersion {
    /// This version's metadata, without the source.
    pub fn info(&self) -> ScriptVersionInfo {
        ScriptVersionInfo {
            script_id: self.script_id,
            version: self.version,
            size_bytes: self.source.len() as u64,
            created_by: self.created_by,
            created_at: self.created_at,
        }
    }
}

/// One version of a script, without its source: what version listings
/// return, so that listing a script never loads every source it ever had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptVersionInfo {
    /// The script.
    pub script_id: ScriptId,
    /// 1, 2, 3, … in deploy order.
    pub version: u32,
    /// The source's size in bytes (UTF-8), as counted by the storage quota.
    pub size_bytes: u64,
    /// Who deployed it.
    pub created_by: AdminUserId,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// The outcome of a deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployed {
    /// The script, with the new version live.
    pub script: Script,
    /// The new version.
    pub version: ScriptVersion,
    /// True when this deploy created the script (version 1).
    pub created: bool,
    /// True when the source was the live version's already: nothing was
    /// stored, and `version` is that live version. Stores always say
    /// `false`; the script service finds the identical source first.
    pub unchanged: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_names_follow_the_rules() {
        assert!(ScriptName::parse("hello").is_ok());
        assert!(ScriptName::parse("echo_2-x").is_ok());
        assert!(ScriptName::parse(&"a".repeat(63)).is_ok());
        assert!(ScriptName::parse("Hello_World").is_err());
        assert!(ScriptName::parse("2fast").is_err());
        assert!(ScriptName::parse("_x").is_err());
        assert!(ScriptName::parse("-x").is_err());
        assert!(ScriptName::parse("").is_err());
        assert!(ScriptName::parse(&"a".repeat(64)).is_err());
        // What an earlier version stored still reads back.
        assert!(ScriptName::parse_stored("Hello_World").is_ok());
        assert!(ScriptName::parse_stored(&"a".repeat(64)).is_ok());
        assert!(ScriptName::parse_stored("a/b").is_err());
        assert!(ScriptName::parse("a/b").is_err());
        assert!(ScriptName::parse("a.b").is_err());
    }
}
