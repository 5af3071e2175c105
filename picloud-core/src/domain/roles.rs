//! The instance and app roles.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A user's role on the whole instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum InstanceRole {
    /// Everything, everywhere, including changing instance roles.
    Owner,
    /// Manages users and creates apps; an implicit `editor` on every app.
    Admin,
    /// Sees only the apps they were given an explicit role on.
    Member,
}

impl InstanceRole {
    /// Every instance role, for tables and property tests.
    pub const ALL: [InstanceRole; 3] = [Self::Owner, Self::Admin, Self::Member];

    /// The snake_case name, as serialized.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for InstanceRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user's explicit role on one app. Ordered: `Viewer < Editor < AppAdmin`,
/// and a higher role can do everything a lower one can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AppRole {
    /// Reads the app: scripts, logs, settings.
    Viewer,
    /// Changes scripts, schedules, domains and environment.
    Editor,
    /// Also manages members and settings, and may delete the app.
    AppAdmin,
}

impl AppRole {
    /// Every app role, lowest first.
    pub const ALL: [AppRole; 3] = [Self::Viewer, Self::Editor, Self::AppAdmin];

    /// The snake_case name, as serialized.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Editor => "editor",
            Self::AppAdmin => "app_admin",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for AppRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_serialize_in_snake_case() {
        assert_eq!(
            serde_json::to_string(&AppRole::AppAdmin).unwrap(),
            "\"app_admin\""
        );
        assert_eq!(
            serde_json::to_string(&InstanceRole::Owner).unwrap(),
            "\"owner\""
        );
        assert!(serde_json::from_str::<AppRole>("\"superuser\"").is_err());
        for r in AppRole::ALL {
            assert_eq!(AppRole::parse(r.as_str()), Some(r));
        }
        for r in InstanceRole::ALL {
            assert_eq!(InstanceRole::parse(r.as_str()), Some(r));
        }
    }

    #[test]
    fn app_roles_are_ordered() {
        assert!(AppRole::Viewer < AppRole::Editor);
        assert!(AppRole::Editor < AppRole::AppAdmin);
    }
}
