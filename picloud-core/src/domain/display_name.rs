//! Free-text display names.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::text::text_newtype;

/// Trims a free-text name (an app's or a token's) and checks it: 1 to `max`
/// characters, no control characters (a store need not keep NUL, and
/// PostgreSQL cannot). The error names the field: `what` is e.g. `"name"`.
pub fn validate_display_name<'a>(name: &'a str, what: &str, max: usize) -> Result<&'a str, String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > max {
        return Err(format!("{what} must be 1 to {max} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{what} must not contain control characters"));
    }
    Ok(name)
}

/// Why a display name was refused; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DisplayNameError(String);

/// A free-text name for people (an app's, a token's): trimmed, 1 to
/// [`DisplayName::MAX_LEN`] characters, no control characters (NUL
/// included), so every store keeps it the same.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DisplayName(String);

impl DisplayName {
    /// The longest name allowed, in characters.
    pub const MAX_LEN: usize = 200;

    /// Trims and checks `s` (at most [`Self::MAX_LEN`] characters).
    pub fn parse(s: &str) -> Result<Self, DisplayNameError> {
        Self::parse_field(s, "name", Self::MAX_LEN)
    }

    /// Trims and checks `s` as the field `what`, at most `max` characters
    /// (`max` is capped at [`Self::MAX_LEN`]).
    pub fn parse_field(s: &str, what: &str, max: usize) -> Result<Self, DisplayNameError> {
        validate_display_name(s, what, max.min(Self::MAX_LEN))
            .map(|name| Self(name.to_owned()))
            .map_err(DisplayNameError)
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

text_newtype!(DisplayName, DisplayNameError);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_are_trimmed_and_checked() {
        assert_eq!(DisplayName::parse("  Shop ").unwrap(), "Shop");
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse("a\0b").is_err());
        assert!(DisplayName::parse(&"a".repeat(201)).is_err());
        assert!(DisplayName::parse(&"\u{e9}".repeat(200)).is_ok());
        assert_eq!(
            DisplayName::parse_field("", "token name", 100)
                .unwrap_err()
                .to_string(),
            "token name must be 1 to 100 characters"
        );
        assert!(serde_json::from_str::<DisplayName>(r#""a\u0000""#).is_err());
    }
}
