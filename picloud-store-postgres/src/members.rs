//! [`AppMembersRepository`] and [`AuthzRepository`] for [`PostgresStore`]: the
//! `app_members` table.
//!
//! Every method is exactly one SQL statement, so each is atomic without an
//! explicit transaction, and concurrent calls are decided by PostgreSQL:
//!
//! - `try_insert` is `INSERT … ON CONFLICT (app_id, user_id) DO NOTHING
//!   RETURNING`: no row back means the pair existed, and an existing row is
//!   never touched. A missing app or user is a foreign-key violation, which
//!   the error mapping turns into `NotFound`.
//! - `update_role` is `UPDATE … RETURNING`: it can never create a row, so a
//!   concurrent `remove` cannot be undone by it.
//! - `upsert` is `INSERT … ON CONFLICT DO UPDATE … RETURNING`, keeping the
//!   original `created_at`.
//! - `list_for_app_enriched` is one join, ordered by username in byte order.
//! - `app_role` (every authorization of a member) is a coalesced point read
//!   (`coalesce.rs`).
//!
//! Creation times come from `picloud_core::clock::now` (microsecond precision),
//! exactly as the memory store stamps them.

use async_trait::async_trait;
use picloud_core::domain::{AppMembership, AppMembershipDetail, AppRole};
use picloud_core::ids::{AdminUserId, AppId};
use picloud_core::ports::{
    AppMembersRepoError, AppMembersRepository, AuthzRepoError, AuthzRepository,
};
use sqlx::postgres::PgConnection;
use uuid::Uuid;

use crate::PostgresStore;
use crate::coalesce::Rows;
use crate::error::{authz_error, member_error};
use crate::health::pool_read;
use crate::rows::{MemberDetailRow, MemberRow, convert_all, parse_app_role};

/// An explicit role, with its key.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct RoleRow {
    app_id: Uuid,
    user_id: Uuid,
    role: String,
}

impl RoleRow {
    /// Its (app, user) pair: the key of the coalesced `app_role`.
    pub(crate) fn key_of(&self) -> (Uuid, Uuid) {
        (self.app_id, self.user_id)
    }
}

/// The explicit roles of the (app, user) `pairs` that have one: the
/// statement of the coalesced `app_role`.
pub(crate) fn roles_of<'c>(
    conn: &'c mut PgConnection,
    pairs: &'c [(Uuid, Uuid)],
) -> Rows<'c, RoleRow> {
    let (apps, users): (Vec<Uuid>, Vec<Uuid>) = pairs.iter().copied().unzip();
    Box::pin(async move {
        sqlx::query_as(
            "SELECT m.app_id, m.user_id, m.role \
             FROM unnest($1::uuid[], $2::uuid[]) AS k(app_id, user_id) \
             JOIN app_members m ON m.app_id = k.app_id AND m.user_id = k.user_id",
        )
        .bind(apps)
        .bind(users)
        .fetch_all(conn)
        .await
    })
}

fn membership(row: Option<MemberRow>) -> Result<Option<AppMembership>, AppMembersRepoError> {
    row.map(AppMembership::try_from)
        .transpose()
        .map_err(member_error)
}

#[async_trait]
impl AppMembersRepository for PostgresStore {
    async fn list_for_app_enriched(
        &self,
        app: AppId,
    ) -> Result<Vec<AppMembershipDetail>, AppMembersRepoError> {
        let rows: Vec<MemberDetailRow> = pool_read!(self, |conn| {
            sqlx::query_as(
                "SELECT u.id AS user_id, u.username, u.email, u.instance_role, u.is_active, \
                        m.role, m.created_at \
                 FROM app_members m JOIN admin_users u ON u.id = m.user_id \
                 WHERE m.app_id = $1 \
                 ORDER BY u.username COLLATE \"C\"",
            )
            .bind(app.as_uuid())
            .fetch_all(conn)
        })
        .map_err(member_error)?;
        convert_all(rows).map_err(member_error)
    }

    async fn find(
        &self,
        app: AppId,
        user: AdminUserId,
    ) -> Result<Option<AppMembership>, AppMembersRepoError> {
        let row: Option<MemberRow> = pool_read!(self, |conn| {
            sqlx::query_as(
                "SELECT app_id, user_id, role, created_at FROM app_members \
                 WHERE app_id = $1 AND user_id = $2",
            )
            .bind(app.as_uuid())
            .bind(user.as_uuid())
            .fetch_optional(conn)
        })
        .map_err(member_error)?;
        membership(row)
    }

    async fn try_insert(
        &self,
        app: AppId,
        user: AdminUserId,
        role: AppRole,
    ) -> Result<Option<AppMembership>, AppMembersRepoError> {
        let row: Option<MemberRow> = sqlx::query_as(
            "INSERT INTO app_members (app_id, user_id, role, created_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (app_id, user_id) DO NOTHING \
             RETURNING app_id, user_id, role, created_at",
        )
        .bind(app.as_uuid())
        .bind(user.as_uuid())
        .bind(role.as_str())
        .bind(picloud_core::clock::now())
        .fetch_optional(&self.pool)
        .await
        .map_err(member_error)?;
        membership(row)
    }

    async fn update_role(
        &self,
        app: AppId,
        user: AdminUserId,
        role: AppRole,
    ) -> Result<Option<AppMembership>, AppMembersRepoError> {
        let row: Option<MemberRow> = sqlx::query_as(
            "UPDATE app_members SET role = $3 \
             WHERE app_id = $1 AND user_id = $2 \
             RETURNING app_id, user_id, role, created_at",
        )
        .bind(app.as_uuid())
        .bind(user.as_uuid())
        .bind(role.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(member_error)?;
        membership(row)
    }

    async fn upsert(
        &self,
        app: AppId,
        user: AdminUserId,
        role: AppRole,
    ) -> Result<AppMembership, AppMembersRepoError> {
        let row: MemberRow = sqlx::query_as(
            "INSERT INTO app_members (app_id, user_id, role, created_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (app_id, user_id) DO UPDATE SET role = EXCLUDED.role \
             RETURNING app_id, user_id, role, created_at",
        )
        .bind(app.as_uuid())
        .bind(user.as_uuid())
        .bind(role.as_str())
        .bind(picloud_core::clock::now())
        .fetch_one(&self.pool)
        .await
        .map_err(member_error)?;
        AppMembership::try_from(row).map_err(member_error)
    }

    async fn remove(&self, app: AppId, user: AdminUserId) -> Result<(), AppMembersRepoError> {
        sqlx::query("DELETE FROM app_members WHERE app_id = $1 AND user_id = $2")
            .bind(app.as_uuid())
            .bind(user.as_uuid())
            .execute(&self.pool)
            .await
            .map_err(member_error)?;
        Ok(())
    }
}

#[async_trait]
impl AuthzRepository for PostgresStore {
    async fn app_role(
        &self,
        app: AppId,
        user: AdminUserId,
    ) -> Result<Option<AppRole>, AuthzRepoError> {
        let row = self
            .lookups
            .roles
            .get((app.as_uuid(), user.as_uuid()))
            .await
            .map_err(authz_error)?
            .pop();
        row.map(|r| parse_app_role(r.role))
            .transpose()
            .map_err(authz_error)
    }
}
