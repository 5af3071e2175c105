//! The JSON shapes of the API. Requests refuse unknown fields, so a typo is a
//! 422 rather than a silently ignored value.

use chrono::{DateTime, Utc};
use picloud_core::apps::AppWithRole;
use picloud_core::{AdminUser, ApiToken, AppMembershipDetail, AppRole, InstanceRole};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A member of an app, joined with the user.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AppMemberDto {
    /// The member's user id.
    pub user_id: Uuid,
    /// The member's username.
    pub username: String,
    /// The member's e-mail, if any.
    pub email: Option<String>,
    /// The member's instance role.
    pub instance_role: InstanceRole,
    /// Whether the member is active (inactive members are listed too).
    pub is_active: bool,
    /// The member's role on the app.
    pub role: AppRole,
    /// When the membership was granted.
    pub created_at: DateTime<Utc>,
}

impl From<AppMembershipDetail> for AppMemberDto {
    fn from(d: AppMembershipDetail) -> Self {
        Self {
            user_id: d.user_id.into(),
            username: d.username.into(),
            email: d.email.map(Into::into),
            instance_role: d.instance_role,
            is_active: d.is_active,
            role: d.role,
            created_at: d.created_at,
        }
    }
}

/// `POST …/members`: grant a role to a user.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantMemberRequest {
    /// The user to add (an instance `member`, active).
    pub user_id: Uuid,
    /// Their role on the app.
    pub role: AppRole,
}

/// `PATCH …/members/{user_id}`: change a member's role.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchMemberRequest {
    /// The new role.
    pub role: AppRole,
}

/// A user of the instance.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserDto {
    /// The user's id.
    pub id: Uuid,
    /// The login name.
    pub username: String,
    /// The e-mail, if any.
    pub email: Option<String>,
    /// The instance role.
    pub instance_role: InstanceRole,
    /// Whether the user may log in and act.
    pub is_active: bool,
    /// When the user was created.
    pub created_at: DateTime<Utc>,
}

impl From<AdminUser> for UserDto {
    fn from(u: AdminUser) -> Self {
        Self {
            id: u.id.into(),
            username: u.username.into(),
            email: u.email.map(Into::into),
            instance_role: u.instance_role,
            is_active: u.is_active,
            created_at: u.created_at,
        }
    }
}

/// `POST /admin/admins`: create a user.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    /// 1–64 characters of `A-Za-z0-9._-`.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$", example = "mia")]
    pub username: String,
    /// Optional e-mail.
    #[serde(default)]
    #[schema(example = "mia@example.com")]
    pub email: Option<String>,
    /// 8 to 1024 characters.
    #[schema(min_length = 8, max_length = 1024, example = "correct horse battery")]
    pub password: String,
    /// The instance role; only owners may create admins and owners.
    pub instance_role: InstanceRole,
}

/// `PATCH /admin/admins/{id}`: activate, deactivate or change the role.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchUserRequest {
    /// Activate (`true`) or deactivate (`false`).
    #[serde(default)]
    pub is_active: Option<bool>,
    /// The new instance role (owners only).
    #[serde(default)]
    pub instance_role: Option<InstanceRole>,
}

/// An app, with the caller's effective role on it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AppDto {
    /// The app's id.
    pub id: Uuid,
    /// The app's slug.
    pub slug: String,
    /// The app's display name.
    pub name: String,
    /// When the app was created.
    pub created_at: DateTime<Utc>,
    /// The caller's effective role: `app_admin` for owners, `editor` for
    /// admins, the explicit role for members.
    pub my_role: Option<AppRole>,
}

impl From<AppWithRole> for AppDto {
    fn from(v: AppWithRole) -> Self {
        Self {
            id: v.app.id.into(),
            slug: v.app.slug.to_string(),
            name: v.app.name.into(),
            created_at: v.app.created_at,
            my_role: v.my_role,
        }
    }
}

/// `POST /admin/apps`: create an app.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAppRequest {
    /// 1–63 characters of `a-z0-9-`, starting with a letter.
    #[schema(pattern = "^[a-z][a-z0-9-]{0,62}$", example = "shop")]
    pub slug: String,
    /// A display name, 1–200 characters, not only spaces.
    #[schema(min_length = 1, max_length = 200, pattern = "\\S", example = "Shop")]
    pub name: String,
}

/// `PATCH /admin/apps/{id_or_slug}`: rename an app (its slug stays).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchAppRequest {
    /// The new display name, 1–200 characters, not only spaces.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "\\S",
        example = "Shop (EU)"
    )]
    pub name: String,
}

/// `POST /auth/login`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The username.
    pub username: String,
    /// The password.
    pub password: String,
}

/// `PUT /admin/me/password`: change the caller's own password.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    /// The present password; omitted only by a user who has none yet (the
    /// bootstrap owner `admin`, setting a first one).
    #[serde(default)]
    pub current_password: Option<String>,
    /// The new password (8–1024 characters).
    #[schema(min_length = 8, max_length = 1024, example = "correct horse battery")]
    pub new_password: String,
}

/// A successful login: a bearer token valid for 12 hours, and the user.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    /// Send it as `Authorization: Bearer <token>`.
    pub token: String,
    /// Who logged in.
    pub user: UserDto,
}

/// `/auth/session`: who is signed in (the token stays in the cookie).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionResponse {
    /// The signed-in user.
    pub user: UserDto,
}

/// `POST /admin/tokens`: issue an API token for yourself.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// A name for people, 1–100 characters, not only spaces.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "\\S",
        example = "ci deploy"
    )]
    pub name: String,
    /// Restrict the token to this app (id or slug).
    #[serde(default)]
    pub app: Option<String>,
    /// With `app`: the most the token may do there (default `app_admin`).
    #[serde(default)]
    pub max_role: Option<AppRole>,
    /// Seconds from now until the token stops working (1 to 316 224 000,
    /// ten years); without it, it works until revoked.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 316_224_000, example = 86400)]
    pub expires_in: Option<u64>,
}

/// A token's record (never the secret, except once in [`TokenCreatedDto`]).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenDto {
    /// The token's id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// The app it is limited to, if any.
    pub app_id: Option<Uuid>,
    /// The most it may do on that app.
    pub max_role: Option<AppRole>,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
}

impl From<ApiToken> for TokenDto {
    fn from(t: ApiToken) -> Self {
        Self {
            id: t.id.into(),
            name: t.name.into(),
            app_id: t.scope.map(|s| s.app_id.into()),
            max_role: t.scope.map(|s| s.max_role),
            created_at: t.created_at,
            expires_at: t.expires_at,
        }
    }
}

/// A token just issued: the secret is shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenCreatedDto {
    /// The secret. Store it now: it cannot be shown again.
    pub token: String,
    /// The record.
    #[serde(flatten)]
    pub record: TokenDto,
}
