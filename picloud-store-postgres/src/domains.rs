//! [`DomainRepository`] for [`PostgresStore`] (migration `0013_domains.sql`).
//!
//! - **`claim`** is one `INSERT … ON CONFLICT (hostname) DO NOTHING
//!   RETURNING`: the primary key on the name decides races, so of racing
//!   claims one returns the row and the others none (`Taken`). A held name
//!   never reaches the foreign-key check, so it is `Taken` even for an
//!   unknown app; a free name for an unknown app violates `domains_app_id_fkey`
//!   (`AppNotFound`, mapped in the `error` module).
//! - **`release`** is one `DELETE` of the name *and* the app, so another
//!   app's name is left alone.
//! - Lists are ordered by name, in byte order (`COLLATE "C"` on the column).

use async_trait::async_trait;
use picloud_core::domain::Hostname;
use picloud_core::ids::AppId;
use picloud_core::ports::{Domain, DomainRepoError, DomainRepository};
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::PostgresStore;
use crate::error::{Failure, domain_error};
use crate::health::pool_read;
use crate::rows::DecodeError;

fn domain_from_row(row: &PgRow) -> Result<Domain, Failure> {
    let name: String = row.try_get("hostname")?;
    let app: Uuid = row.try_get("app_id")?;
    Ok(Domain {
        hostname: Hostname::parse(&name).map_err(|_| DecodeError::new("domains.hostname", name))?,
        app_id: AppId::from(app),
        created_at: row.try_get("created_at")?,
    })
}

fn domains_from_rows(rows: &[PgRow]) -> Result<Vec<Domain>, DomainRepoError> {
    rows.iter()
        .map(domain_from_row)
        .collect::<Result<_, _>>()
        .map_err(domain_error)
}

#[async_trait]
impl DomainRepository for PostgresStore {
    async fn claim(&self, app: AppId, hostname: &Hostname) -> Result<Domain, DomainRepoError> {
        let row = sqlx::query(
            "INSERT INTO domains (hostname, app_id, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (hostname) DO NOTHING \
             RETURNING hostname, app_id, created_at",
        )
        .bind(hostname.as_str())
        .bind(app.as_uuid())
        .bind(picloud_core::clock::now())
        .fetch_optional(&self.pool)
        .await
        .map_err(domain_error)?;
        match row {
            Some(row) => domain_from_row(&row).map_err(domain_error),
            None => Err(DomainRepoError::Taken),
        }
    }

    async fn release(&self, app: AppId, hostname: &Hostname) -> Result<bool, DomainRepoError> {
        let done = sqlx::query("DELETE FROM domains WHERE hostname = $1 AND app_id = $2")
            .bind(hostname.as_str())
            .bind(app.as_uuid())
            .execute(&self.pool)
            .await
            .map_err(domain_error)?;
        Ok(done.rows_affected() > 0)
    }

    async fn domains_of(&self, app: AppId) -> Result<Vec<Domain>, DomainRepoError> {
        let rows = pool_read!(self, |conn| {
            sqlx::query(
                "SELECT hostname, app_id, created_at FROM domains \
                 WHERE app_id = $1 ORDER BY hostname",
            )
            .bind(app.as_uuid())
            .fetch_all(conn)
        })
        .map_err(domain_error)?;
        domains_from_rows(&rows)
    }

    async fn all_domains(&self) -> Result<Vec<Domain>, DomainRepoError> {
        let rows = pool_read!(self, |conn| {
            sqlx::query("SELECT hostname, app_id, created_at FROM domains ORDER BY hostname")
                .fetch_all(conn)
        })
        .map_err(domain_error)?;
        domains_from_rows(&rows)
    }
}
