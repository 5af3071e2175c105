//! [`AppSettingsRepository`] for [`MemoryStore`]: the per-app limits
//! overrides and public error detail, dropped with their app.

use async_trait::async_trait;
use picloud_core::domain::PublicErrors;
use picloud_core::ids::AppId;
use picloud_core::limits::Limits;
use picloud_core::ports::{AppSettingsRepository, SettingsRepoError};

use crate::MemoryStore;

#[async_trait]
impl AppSettingsRepository for MemoryStore {
    async fn app_limits(&self, app: AppId) -> Result<Option<Limits>, SettingsRepoError> {
        Ok(self.read().app_limits.get(&app).copied())
    }

    async fn set_app_limits(
        &self,
        app: AppId,
        limits: Option<Limits>,
    ) -> Result<(), SettingsRepoError> {
        let mut s = self.write();
        if !s.apps.contains_key(&app) {
            return Err(SettingsRepoError::NotFound);
        }
        match limits {
            Some(l) => s.app_limits.insert(app, l),
            None => s.app_limits.remove(&app),
        };
        Ok(())
    }

    async fn public_errors(&self, app: AppId) -> Result<PublicErrors, SettingsRepoError> {
        Ok(self
            .read()
            .public_errors
            .get(&app)
            .copied()
            .unwrap_or_default())
    }

    async fn set_public_errors(
        &self,
        app: AppId,
        errors: PublicErrors,
    ) -> Result<(), SettingsRepoError> {
        let mut s = self.write();
        if !s.apps.contains_key(&app) {
            return Err(SettingsRepoError::NotFound);
        }
        s.public_errors.insert(app, errors);
        Ok(())
    }

    async fn egress_hosts(&self, app: AppId) -> Result<Option<Vec<String>>, SettingsRepoError> {
        Ok(self.read().egress_hosts.get(&app).cloned())
    }

    async fn set_egress_hosts(
        &self,
        app: AppId,
        hosts: Option<Vec<String>>,
    ) -> Result<(), SettingsRepoError> {
        let mut s = self.write();
        if !s.apps.contains_key(&app) {
            return Err(SettingsRepoError::NotFound);
        }
        match hosts {
            Some(hosts) => s.egress_hosts.insert(app, hosts),
            None => s.egress_hosts.remove(&app),
        };
        Ok(())
    }
}
