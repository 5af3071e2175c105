//! [`AdminUserRepository`] for [`PostgresStore`]: the `admin_users` table.
//!
//! Updates are `UPDATE … RETURNING`, so "no such user" is simply "no row
//! returned" and needs no prior read. The list is ordered by username with
//! `COLLATE "C"` (byte order), as the memory store orders it.
//! `update_guarded` locks the rows its owner checks read, in one
//! transaction with the change, and decides with core's pure
//! [`check_user_change`]. `get` (who am I, and the log stream's re-checks)
//! is a coalesced point read (`coalesce.rs`).

use async_trait::async_trait;
use picloud_core::domain::{
    AdminUser, InstanceRole, NewAdminUser, OwnerStanding, UserChange, UserCredentials,
    check_user_change,
};
use picloud_core::ids::AdminUserId;
use picloud_core::ports::{AdminUserRepoError, AdminUserRepository};
use sqlx::postgres::PgConnection;
use uuid::Uuid;

use crate::PostgresStore;
use crate::coalesce::Rows;
use crate::error::user_error;
use crate::health::pool_read;
use crate::rows::{CredentialsRow, UserRow, convert_all};

/// The users whose id is one of `ids`: the statement of the coalesced `get`.
pub(crate) fn by_ids<'c>(conn: &'c mut PgConnection, ids: &'c [Uuid]) -> Rows<'c, UserRow> {
    Box::pin(
        sqlx::query_as(
            "SELECT id, username, email, instance_role, is_active, created_at \
             FROM admin_users WHERE id = ANY($1)",
        )
        .bind(ids)
        .fetch_all(conn),
    )
}

/// Turns an `UPDATE … RETURNING` result into the updated user, or `NotFound`.
fn updated(row: Option<UserRow>) -> Result<AdminUser, AdminUserRepoError> {
    let row = row.ok_or(AdminUserRepoError::NotFound)?;
    AdminUser::try_from(row).map_err(|e| user_error(e, None))
}

#[async_trait]
impl AdminUserRepository for PostgresStore {
    async fn create(&self, user: NewAdminUser) -> Result<AdminUser, AdminUserRepoError> {
        let row: UserRow = sqlx::query_as(
            "INSERT INTO admin_users \
               (id, username, email, password_hash, instance_role, is_active, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             RETURNING id, username, email, instance_role, is_active, created_at",
        )
        .bind(user.id.as_uuid())
        .bind(user.username.as_str())
        .bind(user.email.as_deref())
        .bind(user.password_hash.as_deref())
        .bind(user.instance_role.as_str())
        .bind(user.is_active)
        .bind(user.created_at)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| user_error(e, Some(&user)))?;
        AdminUser::try_from(row).map_err(|e| user_error(e, None))
    }

    async fn get(&self, id: AdminUserId) -> Result<Option<AdminUser>, AdminUserRepoError> {
        let row = self
            .lookups
            .users
            .get(id.as_uuid())
            .await
            .map_err(|e| user_error(e, None))?
            .pop();
        row.map(AdminUser::try_from)
            .transpose()
            .map_err(|e| user_error(e, None))
    }

    async fn find_by_username(
        &self,
        username: &str,
    ) -> Result<Option<AdminUser>, AdminUserRepoError> {
        let row: Option<UserRow> = pool_read!(self, |conn| {
            sqlx::query_as(
                "SELECT id, username, email, instance_role, is_active, created_at \
                 FROM admin_users WHERE username = $1",
            )
            .bind(username)
            .fetch_optional(conn)
        })
        .map_err(|e| user_error(e, None))?;
        row.map(AdminUser::try_from)
            .transpose()
            .map_err(|e| user_error(e, None))
    }

    async fn credentials(
        &self,
        username: &str,
    ) -> Result<Option<UserCredentials>, AdminUserRepoError> {
        let row: Option<CredentialsRow> = pool_read!(self, |conn| {
            sqlx::query_as(
                "SELECT id, username, email, instance_role, is_active, created_at, password_hash \
                 FROM admin_users WHERE username = $1",
            )
            .bind(username)
            .fetch_optional(conn)
        })
        .map_err(|e| user_error(e, None))?;
        row.map(UserCredentials::try_from)
            .transpose()
            .map_err(|e| user_error(e, None))
    }

    async fn list(&self) -> Result<Vec<AdminUser>, AdminUserRepoError> {
        let rows: Vec<UserRow> = pool_read!(self, |conn| {
            sqlx::query_as(
                "SELECT id, username, email, instance_role, is_active, created_at \
                 FROM admin_users ORDER BY username COLLATE \"C\"",
            )
            .fetch_all(conn)
        })
        .map_err(|e| user_error(e, None))?;
        convert_all(rows).map_err(|e| user_error(e, None))
    }

    async fn update_guarded(
        &self,
        id: AdminUserId,
        role: Option<InstanceRole>,
        is_active: Option<bool>,
        may_touch_owner: bool,
    ) -> Result<AdminUser, AdminUserRepoError> {
        let fail = |e: sqlx::Error| user_error(e, None);
        let mut tx = self.pool.begin().await.map_err(fail)?;
        // Lock the target and every active owner, in one statement and in id
        // order: concurrent calls then take their locks in the same order
        // (no deadlock), and a change of an owner committed meanwhile is
        // seen (READ COMMITTED re-checks each row it waited for), so two
        // demotions of the last two owners cannot both count the other.
        // NO KEY UPDATE: foreign-key checks (memberships, tokens) do not wait.
        let locked: Vec<UserRow> = sqlx::query_as(
            "SELECT id, username, email, instance_role, is_active, created_at \
             FROM admin_users \
             WHERE (instance_role = 'owner' AND is_active) OR id = $1 \
             ORDER BY id FOR NO KEY UPDATE",
        )
        .bind(id.as_uuid())
        .fetch_all(&mut *tx)
        .await
        .map_err(fail)?;
        let locked: Vec<AdminUser> = convert_all(locked).map_err(|e| user_error(e, None))?;
        let standing = |u: &AdminUser| OwnerStanding::new(u.instance_role, u.is_active);
        let target = locked
            .iter()
            .find(|u| u.id == id)
            .map(standing)
            .ok_or(AdminUserRepoError::NotFound)?;
        let others = locked
            .iter()
            .filter(|u| u.id != id && standing(u).is_active_owner())
            .count();
        // Checked on the locked rows, so a promotion to owner committed an
        // instant ago is seen here (an early return rolls the lock back).
        let change = UserChange {
            instance_role: role,
            is_active,
        };
        check_user_change(target, change, may_touch_owner, others)?;
        let row: Option<UserRow> = sqlx::query_as(
            "UPDATE admin_users SET instance_role = COALESCE($2, instance_role), \
             is_active = COALESCE($3, is_active) WHERE id = $1 \
             RETURNING id, username, email, instance_role, is_active, created_at",
        )
        .bind(id.as_uuid())
        .bind(role.map(InstanceRole::as_str))
        .bind(is_active)
        .fetch_optional(&mut *tx)
        .await
        .map_err(fail)?;
        let user = updated(row)?;
        tx.commit().await.map_err(fail)?;
        Ok(user)
    }

    async fn set_password_hash(
        &self,
        id: AdminUserId,
        password_hash: Option<String>,
    ) -> Result<(), AdminUserRepoError> {
        let done = sqlx::query("UPDATE admin_users SET password_hash = $2 WHERE id = $1")
            .bind(id.as_uuid())
            .bind(password_hash)
            .execute(&self.pool)
            .await
            .map_err(|e| user_error(e, None))?;
        if done.rows_affected() == 0 {
            Err(AdminUserRepoError::NotFound)
        } else {
            Ok(())
        }
    }

    async fn count_active_owners(&self) -> Result<u64, AdminUserRepoError> {
        let n: i64 = pool_read!(self, |conn| {
            sqlx::query_scalar(
                "SELECT count(*) FROM admin_users WHERE is_active AND instance_role = 'owner'",
            )
            .fetch_one(conn)
        })
        .map_err(|e| user_error(e, None))?;
        u64::try_from(n).map_err(|e| user_error(e, None))
    }
}
