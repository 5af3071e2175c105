//! [`EnvRepository`] for [`MemoryStore`]: each app's variables by name, and
//! each app's wrapped data key, dropped with their app.
//!
//! The count check of `env_put` and its insert happen under the store's one
//! lock, so racing puts cannot pass the cap together (the PostgreSQL store
//! locks the app's row for the same reason).

use std::collections::BTreeMap;

use async_trait::async_trait;
use picloud_core::domain::{EnvName, EnvValue, EnvVar, WrappedKey};
use picloud_core::ids::AppId;
use picloud_core::ports::{EnvRepoError, EnvRepository};

use crate::MemoryStore;

/// The environment part of the state.
#[derive(Debug, Default)]
pub(crate) struct Env {
    /// Variables by `(app, name)`: one app's are a range, by name.
    vars: BTreeMap<(AppId, String), EnvVar>,
    /// Each app's data key, by app.
    data_keys: BTreeMap<AppId, WrappedKey>,
}

impl Env {
    /// The app's variables, by name.
    fn app_vars(&self, app: AppId) -> impl Iterator<Item = &EnvVar> {
        self.vars
            .range((app, String::new())..)
            .take_while(move |((a, _), _)| *a == app)
            .map(|(_, v)| v)
    }

    /// Drops the app's variables and data key (an app delete).
    pub(crate) fn drop_app(&mut self, app: AppId) {
        self.vars.retain(|(a, _), _| *a != app);
        self.data_keys.remove(&app);
    }
}

#[async_trait]
impl EnvRepository for MemoryStore {
    async fn env_put(
        &self,
        app: AppId,
        name: &EnvName,
        value: EnvValue,
        max_vars: usize,
    ) -> Result<bool, EnvRepoError> {
        let mut s = self.write();
        if !s.apps.contains_key(&app) {
            return Err(EnvRepoError::AppNotFound);
        }
        let key = (app, name.as_str().to_owned());
        let created = !s.env.vars.contains_key(&key);
        if created && s.env.app_vars(app).count() >= max_vars {
            return Err(EnvRepoError::TooMany(max_vars));
        }
        let var = EnvVar {
            name: name.clone(),
            value,
            updated_at: picloud_core::clock::now(),
        };
        s.env.vars.insert(key, var);
        Ok(created)
    }

    async fn env_delete(&self, app: AppId, name: &EnvName) -> Result<bool, EnvRepoError> {
        Ok(self
            .write()
            .env
            .vars
            .remove(&(app, name.as_str().to_owned()))
            .is_some())
    }

    async fn env_list(&self, app: AppId) -> Result<Vec<EnvVar>, EnvRepoError> {
        Ok(self.read().env.app_vars(app).cloned().collect())
    }

    async fn data_key(&self, app: AppId) -> Result<Option<WrappedKey>, EnvRepoError> {
        Ok(self.read().env.data_keys.get(&app).cloned())
    }

    async fn data_key_insert(
        &self,
        app: AppId,
        key: WrappedKey,
    ) -> Result<WrappedKey, EnvRepoError> {
        let mut s = self.write();
        if !s.apps.contains_key(&app) {
            return Err(EnvRepoError::AppNotFound);
        }
        Ok(s.env.data_keys.entry(app).or_insert(key).clone())
    }

    async fn data_keys(&self) -> Result<Vec<(AppId, WrappedKey)>, EnvRepoError> {
        Ok(self
            .read()
            .env
            .data_keys
            .iter()
            .map(|(app, key)| (*app, key.clone()))
            .collect())
    }

    async fn data_key_replace(
        &self,
        app: AppId,
        old: &WrappedKey,
        new: WrappedKey,
    ) -> Result<(), EnvRepoError> {
        let mut s = self.write();
        if !s.apps.contains_key(&app) {
            return Err(EnvRepoError::AppNotFound);
        }
        match s.env.data_keys.get_mut(&app) {
            Some(stored) if stored == old => {
                *stored = new;
                Ok(())
            }
            _ => Err(EnvRepoError::KeyChanged),
        }
    }
}
