//! [`AppRepository`] for [`PostgresStore`]: the `apps` table.
//!
//! Lists are ordered by slug with `COLLATE "C"` (byte order), as the memory
//! store orders them. Deleting an app relies on the `ON DELETE CASCADE` of
//! `app_members` to delete its memberships in the same statement. `get` and
//! `find_by_slug` (every request that names an app) are coalesced point
//! reads (`coalesce.rs`).

use async_trait::async_trait;
use picloud_core::domain::{App, AppRole, DisplayName, NewApp};
use picloud_core::ids::{AdminUserId, AppId};
use picloud_core::ports::{AppRepoError, AppRepository};
use sqlx::postgres::PgConnection;
use uuid::Uuid;

use crate::PostgresStore;
use crate::coalesce::Rows;
use crate::error::app_error;
use crate::health::pool_read;
use crate::rows::{AppRow, convert_all, parse_app_role};

/// The apps whose id is one of `ids`: the statement of the coalesced `get`.
pub(crate) fn by_ids<'c>(conn: &'c mut PgConnection, ids: &'c [Uuid]) -> Rows<'c, AppRow> {
    Box::pin(
        sqlx::query_as("SELECT id, slug, name, created_at FROM apps WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(conn),
    )
}

/// The apps whose slug is one of `slugs`: the statement of the coalesced
/// `find_by_slug`.
pub(crate) fn by_slugs<'c>(conn: &'c mut PgConnection, slugs: &'c [String]) -> Rows<'c, AppRow> {
    Box::pin(
        sqlx::query_as("SELECT id, slug, name, created_at FROM apps WHERE slug = ANY($1)")
            .bind(slugs)
            .fetch_all(conn),
    )
}

/// An app with the member's role on it.
#[derive(Debug, sqlx::FromRow)]
struct MemberAppRow {
    #[sqlx(flatten)]
    app: AppRow,
    role: String,
}

#[async_trait]
impl AppRepository for PostgresStore {
    async fn create(&self, app: NewApp) -> Result<App, AppRepoError> {
        let row: AppRow = sqlx::query_as(
            "INSERT INTO apps (id, slug, name, created_at) VALUES ($1, $2, $3, $4) \
             RETURNING id, slug, name, created_at",
        )
        .bind(app.id.as_uuid())
        .bind(app.slug.as_str())
        .bind(app.name.as_str())
        .bind(app.created_at)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| app_error(e, Some(&app)))?;
        App::try_from(row).map_err(|e| app_error(e, None))
    }

    async fn get(&self, id: AppId) -> Result<Option<App>, AppRepoError> {
        let row = self
            .lookups
            .apps_by_id
            .get(id.as_uuid())
            .await
            .map_err(|e| app_error(e, None))?
            .pop();
        row.map(App::try_from)
            .transpose()
            .map_err(|e| app_error(e, None))
    }

    async fn find_by_slug(&self, slug: &str) -> Result<Option<App>, AppRepoError> {
        if slug.contains('\0') {
            // No text value holds NUL, and PostgreSQL refuses it in a
            // parameter: it would fail the whole coalesced batch.
            return Ok(None);
        }
        let row = self
            .lookups
            .apps_by_slug
            .get(slug.to_owned())
            .await
            .map_err(|e| app_error(e, None))?
            .pop();
        row.map(App::try_from)
            .transpose()
            .map_err(|e| app_error(e, None))
    }

    async fn list(&self) -> Result<Vec<App>, AppRepoError> {
        let rows: Vec<AppRow> = pool_read!(self, |conn| {
            sqlx::query_as(
                "SELECT id, slug, name, created_at FROM apps ORDER BY slug COLLATE \"C\"",
            )
            .fetch_all(conn)
        })
        .map_err(|e| app_error(e, None))?;
        convert_all(rows).map_err(|e| app_error(e, None))
    }

    async fn list_for_member(
        &self,
        user: AdminUserId,
    ) -> Result<Vec<(App, AppRole)>, AppRepoError> {
        let rows: Vec<MemberAppRow> = pool_read!(self, |conn| {
            sqlx::query_as(
                "SELECT a.id, a.slug, a.name, a.created_at, m.role \
                 FROM app_members m JOIN apps a ON a.id = m.app_id \
                 WHERE m.user_id = $1 \
                 ORDER BY a.slug COLLATE \"C\"",
            )
            .bind(user.as_uuid())
            .fetch_all(conn)
        })
        .map_err(|e| app_error(e, None))?;
        rows.into_iter()
            .map(|r| Ok((App::try_from(r.app)?, parse_app_role(r.role)?)))
            .collect::<Result<_, crate::rows::DecodeError>>()
            .map_err(|e| app_error(e, None))
    }

    async fn rename(&self, id: AppId, name: DisplayName) -> Result<App, AppRepoError> {
        let row: Option<AppRow> = sqlx::query_as(
            "UPDATE apps SET name = $2 WHERE id = $1 RETURNING id, slug, name, created_at",
        )
        .bind(id.as_uuid())
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| app_error(e, None))?;
        let row = row.ok_or(AppRepoError::NotFound)?;
        App::try_from(row).map_err(|e| app_error(e, None))
    }

    async fn delete(&self, id: AppId) -> Result<(), AppRepoError> {
        let done = sqlx::query("DELETE FROM apps WHERE id = $1")
            .bind(id.as_uuid())
            .execute(&self.pool)
            .await
            .map_err(|e| app_error(e, None))?;
        if done.rows_affected() == 0 {
            Err(AppRepoError::NotFound)
        } else {
            Ok(())
        }
    }
}
