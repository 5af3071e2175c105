//! Rows as PostgreSQL returns them, and their checked conversion to domain
//! types.
//!
//! Roles and slugs are stored as text. The schema's CHECK constraints keep
//! them valid, but a row is still parsed rather than trusted: text that does
//! not parse (a role written by a newer or older PiCloud, a hand edit) is a
//! [`DecodeError`], which the store reports as a backend error instead of
//! panicking or inventing a role.

use std::fmt;

use chrono::{DateTime, Utc};
use picloud_core::domain::{
    AdminUser, App, AppMembership, AppMembershipDetail, AppRole, DisplayName, Email, InstanceRole,
    Slug, UserCredentials, Username,
};
use uuid::Uuid;

/// A column held a value that is not valid for its domain type.
#[derive(Debug)]
pub(crate) struct DecodeError {
    column: &'static str,
    value: String,
}

impl DecodeError {
    pub(crate) fn new(column: &'static str, value: impl Into<String>) -> Self {
        Self {
            column,
            value: value.into(),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid value in column {}: {:?}",
            self.column, self.value
        )
    }
}

impl std::error::Error for DecodeError {}

fn app_role(s: String) -> Result<AppRole, DecodeError> {
    AppRole::parse(&s).ok_or_else(|| DecodeError::new("role", s))
}

fn instance_role(s: String) -> Result<InstanceRole, DecodeError> {
    InstanceRole::parse(&s).ok_or_else(|| DecodeError::new("instance_role", s))
}

/// A username as stored. The schema does not check the form: a row written
/// by hand, or before the types checked it, is a [`DecodeError`].
pub(crate) fn username(s: String) -> Result<Username, DecodeError> {
    Username::parse(&s).map_err(|_| DecodeError::new("username", s))
}

/// An optional e-mail address as stored.
pub(crate) fn email(s: Option<String>) -> Result<Option<Email>, DecodeError> {
    s.map(|s| Email::parse(&s).map_err(|_| DecodeError::new("email", s)))
        .transpose()
}

/// An app's or a token's name as stored: exactly as stored (a name that
/// would need trimming was not written by the type, and is refused too).
pub(crate) fn display_name(s: String) -> Result<DisplayName, DecodeError> {
    match DisplayName::parse(&s) {
        Ok(name) if name.as_str() == s => Ok(name),
        _ => Err(DecodeError::new("name", s)),
    }
}

/// A row of `apps`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct AppRow {
    id: Uuid,
    slug: String,
    name: String,
    created_at: DateTime<Utc>,
}

impl AppRow {
    /// Its id: the key of the coalesced `get`.
    pub(crate) fn id_of(&self) -> Uuid {
        self.id
    }

    /// Its slug: the key of the coalesced `find_by_slug`.
    pub(crate) fn slug_of(&self) -> String {
        self.slug.clone()
    }
}

impl TryFrom<AppRow> for App {
    type Error = DecodeError;

    fn try_from(r: AppRow) -> Result<Self, Self::Error> {
        let slug = Slug::parse(&r.slug).map_err(|_| DecodeError::new("slug", r.slug))?;
        Ok(App {
            id: r.id.into(),
            slug,
            name: display_name(r.name)?,
            created_at: r.created_at,
        })
    }
}

/// A row of `admin_users`, without the password hash.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct UserRow {
    id: Uuid,
    username: String,
    email: Option<String>,
    instance_role: String,
    is_active: bool,
    created_at: DateTime<Utc>,
}

impl UserRow {
    /// Its id: the key of the coalesced `get`.
    pub(crate) fn id_of(&self) -> Uuid {
        self.id
    }
}

impl TryFrom<UserRow> for AdminUser {
    type Error = DecodeError;

    fn try_from(r: UserRow) -> Result<Self, Self::Error> {
        Ok(AdminUser {
            id: r.id.into(),
            username: username(r.username)?,
            email: email(r.email)?,
            instance_role: instance_role(r.instance_role)?,
            is_active: r.is_active,
            created_at: r.created_at,
        })
    }
}

/// A row of `admin_users` with the password hash, for login.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct CredentialsRow {
    #[sqlx(flatten)]
    user: UserRow,
    password_hash: Option<String>,
}

impl TryFrom<CredentialsRow> for UserCredentials {
    type Error = DecodeError;

    fn try_from(r: CredentialsRow) -> Result<Self, Self::Error> {
        Ok(UserCredentials {
            user: r.user.try_into()?,
            password_hash: r.password_hash,
        })
    }
}

/// A row of `app_members`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct MemberRow {
    app_id: Uuid,
    user_id: Uuid,
    role: String,
    created_at: DateTime<Utc>,
}

impl TryFrom<MemberRow> for AppMembership {
    type Error = DecodeError;

    fn try_from(r: MemberRow) -> Result<Self, Self::Error> {
        Ok(AppMembership {
            app_id: r.app_id.into(),
            user_id: r.user_id.into(),
            role: app_role(r.role)?,
            created_at: r.created_at,
        })
    }
}

/// A row of `app_members` joined with its user.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct MemberDetailRow {
    user_id: Uuid,
    username: String,
    email: Option<String>,
    instance_role: String,
    is_active: bool,
    role: String,
    created_at: DateTime<Utc>,
}

impl TryFrom<MemberDetailRow> for AppMembershipDetail {
    type Error = DecodeError;

    fn try_from(r: MemberDetailRow) -> Result<Self, Self::Error> {
        Ok(AppMembershipDetail {
            user_id: r.user_id.into(),
            username: username(r.username)?,
            email: email(r.email)?,
            instance_role: instance_role(r.instance_role)?,
            is_active: r.is_active,
            role: app_role(r.role)?,
            created_at: r.created_at,
        })
    }
}

/// An explicit role as stored (`app_members.role`).
pub(crate) fn parse_app_role(s: String) -> Result<AppRole, DecodeError> {
    app_role(s)
}

/// Converts every row, failing on the first that does not decode.
pub(crate) fn convert_all<R, T>(rows: Vec<R>) -> Result<Vec<T>, DecodeError>
where
    T: TryFrom<R, Error = DecodeError>,
{
    rows.into_iter().map(T::try_from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_roles_and_bad_slugs_do_not_decode() {
        let row = MemberRow {
            app_id: Uuid::new_v4(),
            user_id: Uuid::new_v4(),
            role: "superuser".into(),
            created_at: Utc::now(),
        };
        let e = AppMembership::try_from(row).unwrap_err();
        assert_eq!(e.to_string(), "invalid value in column role: \"superuser\"");
        let row = AppRow {
            id: Uuid::new_v4(),
            slug: "Not A Slug".into(),
            name: "x".into(),
            created_at: Utc::now(),
        };
        assert!(App::try_from(row).is_err());
        let row = UserRow {
            id: Uuid::new_v4(),
            username: "u".into(),
            email: None,
            instance_role: "root".into(),
            is_active: true,
            created_at: Utc::now(),
        };
        assert!(AdminUser::try_from(row).is_err());
    }

    #[test]
    fn names_and_addresses_that_the_types_refuse_do_not_decode() {
        let user = |username: &str, email: Option<&str>| UserRow {
            id: Uuid::new_v4(),
            username: username.into(),
            email: email.map(Into::into),
            instance_role: "member".into(),
            is_active: true,
            created_at: Utc::now(),
        };
        assert!(AdminUser::try_from(user("ann", Some("ann@example.org"))).is_ok());
        let e = AdminUser::try_from(user("Alice Smith", None)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value in column username: \"Alice Smith\""
        );
        assert!(AdminUser::try_from(user("ann", Some("not an address"))).is_err());
        let row = AppRow {
            id: Uuid::new_v4(),
            slug: "shop".into(),
            name: "  ".into(),
            created_at: Utc::now(),
        };
        assert!(App::try_from(row).is_err());
        // Decoding is exact: a name the type would trim was not written by it.
        let row = AppRow {
            id: Uuid::new_v4(),
            slug: "shop".into(),
            name: " Shop ".into(),
            created_at: Utc::now(),
        };
        assert!(App::try_from(row).is_err());
    }
}
