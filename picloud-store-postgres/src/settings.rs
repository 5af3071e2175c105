//! [`AppSettingsRepository`] for [`PostgresStore`]: `apps.limits`, the
//! limits override as JSON text, and `apps.public_errors` (so both go with
//! their app row).

use async_trait::async_trait;
use picloud_core::domain::PublicErrors;
use picloud_core::ids::AppId;
use picloud_core::limits::Limits;
use picloud_core::ports::{AppSettingsRepository, SettingsRepoError};

use crate::PostgresStore;
use crate::error::settings_error;
use crate::health::pool_read;

#[async_trait]
impl AppSettingsRepository for PostgresStore {
    async fn app_limits(&self, app: AppId) -> Result<Option<Limits>, SettingsRepoError> {
        let text: Option<Option<String>> = pool_read!(self, |conn| {
            sqlx::query_scalar("SELECT limits FROM apps WHERE id = $1")
                .bind(app.as_uuid())
                .fetch_optional(conn)
        })
        .map_err(settings_error)?;
        // Read with `deny_unknown_fields`: an override with a field this
        // version does not know is unreadable, not quietly the defaults.
        text.flatten()
            .map(|text| {
                serde_json::from_str(&text)
                    .map_err(|e| SettingsRepoError::Unreadable(e.to_string()))
            })
            .transpose()
    }

    async fn set_app_limits(
        &self,
        app: AppId,
        limits: Option<Limits>,
    ) -> Result<(), SettingsRepoError> {
        let limits = limits
            .map(|l| serde_json::to_string(&l))
            .transpose()
            .map_err(|e| SettingsRepoError::Backend(Box::new(e)))?;
        let done = sqlx::query("UPDATE apps SET limits = $2 WHERE id = $1")
            .bind(app.as_uuid())
            .bind(limits)
            .execute(&self.pool)
            .await
            .map_err(settings_error)?;
        if done.rows_affected() == 0 {
            Err(SettingsRepoError::NotFound)
        } else {
            Ok(())
        }
    }

    async fn public_errors(&self, app: AppId) -> Result<PublicErrors, SettingsRepoError> {
        let text: Option<String> = pool_read!(self, |conn| {
            sqlx::query_scalar("SELECT public_errors FROM apps WHERE id = $1")
                .bind(app.as_uuid())
                .fetch_optional(conn)
        })
        .map_err(settings_error)?;
        match text {
            None => Ok(PublicErrors::default()),
            Some(t) => PublicErrors::parse(&t)
                .ok_or_else(|| SettingsRepoError::Unreadable(format!("public_errors {t:?}"))),
        }
    }

    async fn set_public_errors(
        &self,
        app: AppId,
        errors: PublicErrors,
    ) -> Result<(), SettingsRepoError> {
        let done = sqlx::query("UPDATE apps SET public_errors = $2 WHERE id = $1")
            .bind(app.as_uuid())
            .bind(errors.as_str())
            .execute(&self.pool)
            .await
            .map_err(settings_error)?;
        if done.rows_affected() == 0 {
            Err(SettingsRepoError::NotFound)
        } else {
            Ok(())
        }
    }

    async fn egress_hosts(&self, app: AppId) -> Result<Option<Vec<String>>, SettingsRepoError> {
        let hosts: Option<Option<Vec<String>>> = pool_read!(self, |conn| {
            sqlx::query_scalar("SELECT egress_hosts FROM apps WHERE id = $1")
                .bind(app.as_uuid())
                .fetch_optional(conn)
        })
        .map_err(settings_error)?;
        Ok(hosts.flatten())
    }

    async fn set_egress_hosts(
        &self,
        app: AppId,
        hosts: Option<Vec<String>>,
    ) -> Result<(), SettingsRepoError> {
        let done = sqlx::query("UPDATE apps SET egress_hosts = $2 WHERE id = $1")
            .bind(app.as_uuid())
            .bind(hosts)
            .execute(&self.pool)
            .await
            .map_err(settings_error)?;
        if done.rows_affected() == 0 {
            Err(SettingsRepoError::NotFound)
        } else {
            Ok(())
        }
    }
}
