//! Domain types: roles, the authenticated [`Principal`], users, apps and
//! memberships. Plain data with validation; no I/O.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{AdminUserId, AppId, ScriptId, TokenId};

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

/// Limits a principal to one app and at most one role there (a scoped API
/// token). A scoped principal holds no instance-wide capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TokenScope {
    /// The only app the principal may act on.
    pub app_id: AppId,
    /// The most the principal may do there, whatever the user's own role.
    pub max_role: AppRole,
}

/// The authenticated caller, as produced by an authentication layer (PiCloud's
/// own bearer-token layer, or an embedder's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Principal {
    /// Who is calling.
    pub user_id: AdminUserId,
    /// Their role on the instance.
    pub instance_role: InstanceRole,
    /// A deactivated principal holds no capability at all.
    pub is_active: bool,
    /// Set when the caller authenticated with an app-scoped token.
    pub scope: Option<TokenScope>,
}

impl Principal {
    /// An active, unscoped principal for `user`.
    pub fn of(user: &AdminUser) -> Self {
        Self {
            user_id: user.id,
            instance_role: user.instance_role,
            is_active: user.is_active,
            scope: None,
        }
    }

    /// The same principal, limited to `scope`.
    pub fn scoped(self, scope: TokenScope) -> Self {
        Self {
            scope: Some(scope),
            ..self
        }
    }
}

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

impl TryFrom<String> for Slug {
    type Error = SlugError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Slug> for String {
    fn from(s: Slug) -> Self {
        s.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An app: one tenant, with its scripts, members and settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// Its id.
    pub id: AppId,
    /// Its unique slug, used in URLs (`/run/{slug}/...`).
    pub slug: Slug,
    /// A display name.
    pub name: String,
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
    pub name: String,
    /// Its creation time.
    pub created_at: DateTime<Utc>,
}

impl NewApp {
    /// A new app with a fresh id, created now.
    pub fn new(slug: Slug, name: impl Into<String>) -> Self {
        Self {
            id: AppId::new(),
            slug,
            name: name.into(),
            created_at: crate::clock::now(),
        }
    }

    /// The app this will become once stored.
    pub fn into_app(self) -> App {
        App {
            id: self.id,
            slug: self.slug,
            name: self.name,
            created_at: self.created_at,
        }
    }
}

/// A user of the instance (called an "admin user" for historical reasons: every
/// user can log in to the admin API, with what their role allows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminUser {
    /// Their id.
    pub id: AdminUserId,
    /// Their unique login name.
    pub username: String,
    /// An optional e-mail address.
    pub email: Option<String>,
    /// Their role on the instance.
    pub instance_role: InstanceRole,
    /// False once deactivated: they can no longer authenticate or act.
    pub is_active: bool,
    /// When they were created.
    pub created_at: DateTime<Utc>,
}

/// What a store needs to create a user. The password arrives already hashed:
/// stores never see a plain secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAdminUser {
    /// The id to give them.
    pub id: AdminUserId,
    /// Their unique login name.
    pub username: String,
    /// An optional e-mail address.
    pub email: Option<String>,
    /// A PHC-format password hash (argon2), or `None` for a user who cannot log
    /// in with a password (tokens only).
    pub password_hash: Option<String>,
    /// Their role on the instance.
    pub instance_role: InstanceRole,
    /// Whether they start active.
    pub is_active: bool,
    /// Their creation time.
    pub created_at: DateTime<Utc>,
}

impl NewAdminUser {
    /// An active user with a fresh id, created now, without a password.
    pub fn new(username: impl Into<String>, instance_role: InstanceRole) -> Self {
        Self {
            id: AdminUserId::new(),
            username: username.into(),
            email: None,
            password_hash: None,
            instance_role,
            is_active: true,
            created_at: crate::clock::now(),
        }
    }

    /// The user this will become once stored.
    pub fn to_user(&self) -> AdminUser {
        AdminUser {
            id: self.id,
            username: self.username.clone(),
            email: self.email.clone(),
            instance_role: self.instance_role,
            is_active: self.is_active,
            created_at: self.created_at,
        }
    }
}

/// A user together with their password hash, for login only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCredentials {
    /// The user.
    pub user: AdminUser,
    /// Their PHC-format password hash, if they have one.
    pub password_hash: Option<String>,
}

/// An explicit membership row: `user` holds `role` on `app`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppMembership {
    /// The app.
    pub app_id: AppId,
    /// The member.
    pub user_id: AdminUserId,
    /// Their role on the app.
    pub role: AppRole,
    /// When the membership was granted.
    pub created_at: DateTime<Utc>,
}

/// A membership row joined with its user, as the members list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppMembershipDetail {
    /// The member's id.
    pub user_id: AdminUserId,
    /// The member's login name.
    pub username: String,
    /// The member's e-mail, if any.
    pub email: Option<String>,
    /// The member's instance role.
    pub instance_role: InstanceRole,
    /// Whether the member is active (inactive members are still listed).
    pub is_active: bool,
    /// Their role on the app.
    pub role: AppRole,
    /// When the membership was granted.
    pub created_at: DateTime<Utc>,
}

impl AppMembershipDetail {
    /// Joins a membership row with its user. The caller guarantees they match.
    pub fn compose(user: &AdminUser, membership: &AppMembership) -> Self {
        debug_assert_eq!(user.id, membership.user_id);
        Self {
            user_id: user.id,
            username: user.username.clone(),
            email: user.email.clone(),
            instance_role: user.instance_role,
            is_active: user.is_active,
            role: membership.role,
            created_at: membership.created_at,
        }
    }
}

/// Why a username was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("username must be 1 to 64 characters of a-z, A-Z, 0-9, '.', '_' and '-'")]
pub struct UsernameError;

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

/// Checks a username: 1–64 characters of `A-Za-z0-9._-`.
pub fn validate_username(username: &str) -> Result<(), UsernameError> {
    let ok = (1..=64).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok { Ok(()) } else { Err(UsernameError) }
}

/// An API token's stored record. The secret itself is never stored: only a
/// hash of it, which [`NewApiToken`] carries and nothing reads back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    /// Its id.
    pub id: TokenId,
    /// The user it authenticates as.
    pub user_id: AdminUserId,
    /// A name for people ("ci deploy", "login").
    pub name: String,
    /// If set, the token acts only on this app, with at most this role.
    pub scope: Option<TokenScope>,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
}

/// What a store needs to create a token: the record and the secret's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiToken {
    /// The record.
    pub token: ApiToken,
    /// The hash of the secret (see `picloud_core::auth::hash_token`).
    pub token_hash: String,
}

/// A script's name within its app: 1–64 characters of `A-Za-z0-9_-`, used in
/// URLs (`/run/{app}/{name}`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ScriptName(String);

/// Why a script name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("script name must be 1 to 64 characters of a-z, A-Z, 0-9, '_' and '-'")]
pub struct ScriptNameError;

impl ScriptName {
    /// Validates `s` as a script name.
    pub fn parse(s: &str) -> Result<Self, ScriptNameError> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ScriptNameError)
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ScriptName {
    type Error = ScriptNameError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<ScriptName> for String {
    fn from(s: ScriptName) -> Self {
        s.0
    }
}

impl fmt::Display for ScriptName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

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
}

/// One invocation of a script, as the invocation log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationRecord {
    /// The script.
    pub script_id: ScriptId,
    /// The version that ran.
    pub version: u32,
    /// When it started.
    pub at: DateTime<Utc>,
    /// The HTTP status it answered with.
    pub status: u16,
    /// How long it took, in microseconds.
    pub duration_us: u64,
    /// What it printed (`print` and `debug`), bounded.
    pub logs: Vec<String>,
    /// The error, if it failed.
    pub error: Option<String>,
}

impl InvocationRecord {
    /// The bytes this record holds for retention: its log lines and its
    /// error text (UTF-8). The invocation log's byte bounds count these.
    pub fn log_bytes(&self) -> usize {
        self.logs.iter().map(String::len).sum::<usize>()
            + self.error.as_ref().map_or(0, String::len)
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

    #[test]
    fn script_names_follow_the_rules() {
        assert!(ScriptName::parse("hello").is_ok());
        assert!(ScriptName::parse("Echo_2-x").is_ok());
        assert!(ScriptName::parse("").is_err());
        assert!(ScriptName::parse(&"a".repeat(65)).is_err());
        assert!(ScriptName::parse("a/b").is_err());
        assert!(ScriptName::parse("a.b").is_err());
    }

    #[test]
    fn usernames_follow_the_rules() {
        assert!(validate_username("ann").is_ok());
        assert!(validate_username("Ann.B_c-1").is_ok());
        assert!(validate_username("").is_err());
        assert!(validate_username(&"a".repeat(65)).is_err());
        assert!(validate_username("ann smith").is_err());
        assert!(validate_username("ann/..").is_err());
    }
}
