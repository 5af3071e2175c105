//! [`TokenRepository`] for [`PostgresStore`]: the `api_tokens` table.
//!
//! `find_by_hash` is on every authenticated request's path: one indexed
//! lookup (the unique `token_hash`) joined with the token's user, so a
//! deactivation is seen on the very next request without a second round trip.
//! It is a coalesced point read (`coalesce.rs`): under load, the lookups of
//! concurrent requests share a statement, each still answered by a statement
//! that started after it was asked for.
//!
//! Expired tokens are deleted by `create` (every login creates one), a
//! bounded batch at a time, so they never pile up and nothing runs in the
//! background.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use picloud_core::domain::{AdminUser, ApiToken, InstanceRole, NewApiToken, TokenScope};
use picloud_core::ids::{AdminUserId, TokenId};
use picloud_core::ports::{TokenRepoError, TokenRepository};
use sqlx::postgres::PgConnection;
use uuid::Uuid;

use crate::PostgresStore;
use crate::coalesce::Rows;
use crate::error::token_error;
use crate::health::pool_read;
use crate::rows::{DecodeError, display_name, email, parse_app_role, username};

/// A row of `api_tokens`.
#[derive(Debug, Clone, sqlx::FromRow)]
struct TokenRow {
    id: Uuid,
    user_id: Uuid,
    name: String,
    scope_app_id: Option<Uuid>,
    scope_max_role: Option<String>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
}

impl TryFrom<TokenRow> for ApiToken {
    type Error = DecodeError;

    fn try_from(r: TokenRow) -> Result<Self, Self::Error> {
        let scope = match (r.scope_app_id, r.scope_max_role) {
            (Some(app), Some(role)) => Some(TokenScope {
                app_id: app.into(),
                max_role: parse_app_role(role)?,
            }),
            (None, None) => None,
            (app, role) => {
                return Err(DecodeError::new("scope", format!("{app:?} / {role:?}")));
            }
        };
        Ok(ApiToken {
            id: r.id.into(),
            user_id: r.user_id.into(),
            name: display_name(r.name)?,
            scope,
            created_at: r.created_at,
            expires_at: r.expires_at,
        })
    }
}

/// A token joined with its user (user columns prefixed `u_`), and its hash.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct TokenWithUserRow {
    token_hash: String,
    #[sqlx(flatten)]
    token: TokenRow,
    u_username: String,
    u_email: Option<String>,
    u_instance_role: String,
    u_is_active: bool,
    u_created_at: DateTime<Utc>,
}

impl TokenWithUserRow {
    /// Its hash: the key of the coalesced `find_by_hash`.
    pub(crate) fn hash_of(&self) -> String {
        self.token_hash.clone()
    }
}

/// The tokens whose hash is one of `hashes`, each joined with its user: the
/// statement of the coalesced `find_by_hash`.
pub(crate) fn by_hashes<'c>(
    conn: &'c mut PgConnection,
    hashes: &'c [String],
) -> Rows<'c, TokenWithUserRow> {
    Box::pin(
        sqlx::query_as(
            "SELECT t.token_hash, t.id, t.user_id, t.name, t.scope_app_id, t.scope_max_role, \
                    t.created_at, t.expires_at, \
                    u.username AS u_username, u.email AS u_email, \
                    u.instance_role AS u_instance_role, u.is_active AS u_is_active, \
                    u.created_at AS u_created_at \
             FROM api_tokens t JOIN admin_users u ON u.id = t.user_id \
             WHERE t.token_hash = ANY($1)",
        )
        .bind(hashes)
        .fetch_all(conn),
    )
}

impl TryFrom<TokenWithUserRow> for (ApiToken, AdminUser) {
    type Error = DecodeError;

    fn try_from(r: TokenWithUserRow) -> Result<Self, Self::Error> {
        let instance_role = InstanceRole::parse(&r.u_instance_role)
            .ok_or_else(|| DecodeError::new("instance_role", r.u_instance_role.clone()))?;
        let user = AdminUser {
            id: r.token.user_id.into(),
            username: username(r.u_username)?,
            email: email(r.u_email)?,
            instance_role,
            is_active: r.u_is_active,
            created_at: r.u_created_at,
        };
        Ok((ApiToken::try_from(r.token)?, user))
    }
}

#[async_trait]
impl TokenRepository for PostgresStore {
    async fn create(&self, new: NewApiToken) -> Result<ApiToken, TokenRepoError> {
        let t = &new.token;
        // One statement: the insert, and the purge of a bounded batch of
        // expired tokens, oldest expiry first (on `api_tokens_expires_at_idx`).
        // SKIP LOCKED: concurrent creates purge different rows, never wait.
        // Both see the same snapshot, so the new token is never purged here.
        let row: TokenRow = sqlx::query_as(
            "WITH purged AS ( \
               DELETE FROM api_tokens WHERE id IN ( \
                 SELECT id FROM api_tokens WHERE expires_at <= now() \
                 ORDER BY expires_at LIMIT 64 FOR UPDATE SKIP LOCKED) \
             ) \
             INSERT INTO api_tokens \
               (id, user_id, name, token_hash, scope_app_id, scope_max_role, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             RETURNING id, user_id, name, scope_app_id, scope_max_role, created_at, expires_at",
        )
        .bind(t.id.as_uuid())
        .bind(t.user_id.as_uuid())
        .bind(t.name.as_str())
        .bind(&new.token_hash)
        .bind(t.scope.map(|s| s.app_id.as_uuid()))
        .bind(t.scope.map(|s| s.max_role.as_str()))
        .bind(t.created_at)
        .bind(t.expires_at)
        .fetch_one(&self.pool)
        .await
        .map_err(token_error)?;
        ApiToken::try_from(row).map_err(token_error)
    }

    async fn find_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<(ApiToken, AdminUser)>, TokenRepoError> {
        let row = self
            .lookups
            .tokens
            .get(token_hash.to_owned())
            .await
            .map_err(token_error)?
            .pop();
        row.map(<(ApiToken, AdminUser)>::try_from)
            .transpose()
            .map_err(token_error)
    }

    async fn list_for_user(&self, user: AdminUserId) -> Result<Vec<ApiToken>, TokenRepoError> {
        let rows: Vec<TokenRow> = pool_read!(self, |conn| {
            sqlx::query_as(
                "SELECT id, user_id, name, scope_app_id, scope_max_role, created_at, expires_at \
                 FROM api_tokens WHERE user_id = $1 ORDER BY created_at DESC, id",
            )
            .bind(user.as_uuid())
            .fetch_all(conn)
        })
        .map_err(token_error)?;
        rows.into_iter()
            .map(ApiToken::try_from)
            .collect::<Result<_, _>>()
            .map_err(token_error)
    }

    async fn revoke(&self, user: AdminUserId, id: TokenId) -> Result<(), TokenRepoError> {
        sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND user_id = $2")
            .bind(id.as_uuid())
            .bind(user.as_uuid())
            .execute(&self.pool)
            .await
            .map_err(token_error)?;
        Ok(())
    }
}
