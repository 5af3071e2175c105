//! Apps.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{DisplayName, Slug};
use crate::ids::AppId;

/// An app: one tenant, with its scripts, members and settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// Its id.
    pub id: AppId,
    /// Its unique slug, used in URLs (`/run/{slug}/...`).
    pub slug: Slug,
    /// A display name.
    pub name: DisplayName,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// What a store needs to create an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApp {
    /// The id to give it.
    pub id: AppId,
    /// Its slug (unique per instance).
    pub slug: Slug,
    /// Its display name.
    pub name: DisplayName,
    /// Its creation time.
    pub created_at: DateTime<Utc>,
}

impl NewApp {
    /// A new app with a fresh id, created now.
    pub fn new(slug: Slug, name: DisplayName) -> Self {
        Self {
            id: AppId::new(),
            slug,
            name,
            created_at: crate::clock::now(),
        }
    }

    /// The app this will become once stored.
    pub fn to_app(&self) -> App {
        App {
            id: self.id,
            slug: self.slug.clone(),
            name: self.name.clone(),
            created_at: self.created_at,
        }
    }
}

/// How much of a script error an app's public callers see (a per-app
/// setting; the detail always goes to the invocation record and the log).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum PublicErrors {
    /// The error text, its line and the limit hit (the default).
    #[default]
    Detailed,
    /// Only `{"error": "script error", "request_id": …}`.
    Generic,
}

impl PublicErrors {
    /// `detailed` or `generic`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Detailed => "detailed",
            Self::Generic => "generic",
        }
    }

    /// The setting named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "detailed" => Some(Self::Detailed),
            "generic" => Some(Self::Generic),
            _ => None,
        }
    }
}
