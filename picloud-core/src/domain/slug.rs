//! An app's slug.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::text::text_newtype;

/// An app's slug: 1–63 characters of `a-z0-9-`, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Slug(String);

/// Why a slug was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlugError {
    /// Empty, or longer than 63 characters.
    #[error("slug must be 1 to 63 characters long")]
    Length,
    /// Does not start with `a-z`.
    #[error("slug must start with a lowercase letter")]
    Start,
    /// Contains something other than `a-z`, `0-9` and `-`.
    #[error("slug may only contain lowercase letters, digits and '-'")]
    Charset,
}

impl Slug {
    /// The longest slug allowed.
    pub const MAX_LEN: usize = 63;

    /// Validates `s` as a slug.
    pub fn parse(s: &str) -> Result<Self, SlugError> {
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(SlugError::Length);
        }
        if !s.as_bytes()[0].is_ascii_lowercase() {
            return Err(SlugError::Start);
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(SlugError::Charset);
        }
        Ok(Self(s.to_owned()))
    }

    /// The slug as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

text_newtype!(Slug, SlugError);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_the_rules() {
        assert!(Slug::parse("a").is_ok());
        assert!(Slug::parse("my-app-2").is_ok());
        assert!(Slug::parse(&"a".repeat(63)).is_ok());
        assert_eq!(Slug::parse(""), Err(SlugError::Length));
        assert_eq!(Slug::parse(&"a".repeat(64)), Err(SlugError::Length));
        assert_eq!(Slug::parse("1app"), Err(SlugError::Start));
        assert_eq!(Slug::parse("-app"), Err(SlugError::Start));
        assert_eq!(Slug::parse("My-app"), Err(SlugError::Start));
        assert_eq!(Slug::parse("my_app"), Err(SlugError::Charset));
        assert_eq!(Slug::parse("app\u{e9}"), Err(SlugError::Charset));
        assert!(serde_json::from_str::<Slug>("\"Bad\"").is_err());
    }
}
