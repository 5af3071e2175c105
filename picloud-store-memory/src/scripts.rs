//! [`ScriptRepository`] for [`MemoryStore`]: the scripts by `(app, name)`,
//! each with all its versions.
//!
//! The storage quota is checked under the same write lock as the deploy, so
//! concurrent deploys to one app each see the bytes of those before them.
//! Deleting a script drops its invocations too.

use async_trait::async_trait;
use picloud_core::domain::{
    Deployed, Script, ScriptName, ScriptVersion, ScriptVersionInfo, Visibility,
};
use picloud_core::ids::{AdminUserId, AppId, ScriptId};
use picloud_core::ports::{QuotaExceeded, ScriptRepoError, ScriptRepository, StorageQuota};

use crate::{MemoryStore, State, StoredScript};

impl State {
    fn script(&self, app: AppId, name: &ScriptName) -> Option<&StoredScript> {
        self.scripts.get(&(app, name.as_str().to_owned()))
    }
}

#[async_trait]
impl ScriptRepository for MemoryStore {
    async fn deploy(
        &self,
        app: AppId,
        name: &ScriptName,
        source: String,
        by: AdminUserId,
        quota: StorageQuota,
    ) -> Result<Deployed, ScriptRepoError> {
        let mut s = self.write();
        if !s.apps.contains_key(&app) || !s.users.contains_key(&by) {
            return Err(ScriptRepoError::NotFound);
        }
        // The quota is checked under the same write lock as the insert.
        let size = source.len() as u64;
        let used: u64 = s.app_scripts(app).map(|st| st.source_bytes).sum();
        if used.saturating_add(size) > quota.source_bytes_per_app {
            return Err(ScriptRepoError::QuotaExceeded(
                QuotaExceeded::SourceBytesPerApp {
                    limit: quota.source_bytes_per_app,
                },
            ));
        }
        if s.script(app, name)
            .is_some_and(|st| st.script.latest_version >= quota.versions_per_script)
        {
            return Err(ScriptRepoError::QuotaExceeded(
                QuotaExceeded::VersionsPerScript {
                    limit: quota.versions_per_script,
                },
            ));
        }
        let now = picloud_core::clock::now();
        let key = (app, name.as_str().to_owned());
        let created = !s.scripts.contains_key(&key);
        let stored = s.scripts.entry(key).or_insert_with(|| StoredScript {
            script: Script {
                id: ScriptId::new(),
                app_id: app,
                name: name.clone(),
                live_version: 0,
                latest_version: 0,
                created_at: now,
                updated_at: now,
                visibility: Visibility::default(),
            },
            versions: Vec::new(),
            source_bytes: 0,
        });
        let version = ScriptVersion {
            script_id: stored.script.id,
            version: stored.script.latest_version + 1,
            source,
            created_by: by,
            created_at: now,
        };
        stored.versions.push(version.clone());
        stored.source_bytes += size;
        stored.script.latest_version = version.version;
        stored.script.live_version = version.version;
        stored.script.updated_at = now;
        Ok(Deployed {
            script: stored.script.clone(),
            version,
            created,
            unchanged: false,
        })
    }

    async fn get(&self, app: AppId, name: &ScriptName) -> Result<Option<Script>, ScriptRepoError> {
        Ok(self.read().script(app, name).map(|st| st.script.clone()))
    }

    async fn list(&self, app: AppId) -> Result<Vec<Script>, ScriptRepoError> {
        let s = self.read();
        let mut scripts: Vec<Script> = s
            .scripts
            .range((app, String::new())..)
            .take_while(|((a, _), _)| *a == app)
            .map(|(_, st)| st.script.clone())
            .collect();
        scripts.sort_by(|a, b| a.name.as_str().as_bytes().cmp(b.name.as_str().as_bytes()));
        Ok(scripts)
    }

    async fn versions(
        &self,
        app: AppId,
        name: &ScriptName,
    ) -> Result<Vec<ScriptVersionInfo>, ScriptRepoError> {
        Ok(self
            .read()
            .script(app, name)
            .map(|st| st.versions.iter().map(ScriptVersion::info).collect())
            .unwrap_or_default())
    }

    async fn version(
        &self,
        app: AppId,
        name: &ScriptName,
        version: u32,
    ) -> Result<Option<ScriptVersion>, ScriptRepoError> {
        Ok(self
            .read()
            .script(app, name)
            .and_then(|st| st.versions.iter().find(|v| v.version == version).cloned()))
    }

    async fn set_live(
        &self,
        app: AppId,
        name: &ScriptName,
        version: u32,
    ) -> Result<Script, ScriptRepoError> {
        let mut s = self.write();
        let st = s
            .scripts
            .get_mut(&(app, name.as_str().to_owned()))
            .ok_or(ScriptRepoError::NotFound)?;
        if !st.versions.iter().any(|v| v.version == version) {
            return Err(ScriptRepoError::NotFound);
        }
        st.script.live_version = version;
        st.script.updated_at = picloud_core::clock::now();
        Ok(st.script.clone())
    }

    async fn set_visibility(
        &self,
        app: AppId,
        name: &ScriptName,
        visibility: Visibility,
    ) -> Result<Script, ScriptRepoError> {
        let mut s = self.write();
        let stored = s
            .scripts
            .get_mut(&(app, name.as_str().to_owned()))
            .ok_or(ScriptRepoError::NotFound)?;
        stored.script.visibility = visibility;
        Ok(stored.script.clone())
    }

    async fn delete(&self, app: AppId, name: &ScriptName) -> Result<bool, ScriptRepoError> {
        let mut s = self.write();
        let Some(gone) = s.scripts.remove(&(app, name.as_str().to_owned())) else {
            return Ok(false);
        };
        s.invocations.remove(&gone.script.id);
        s.events.drop_script(app, name.as_str());
        Ok(true)
    }

    async fn source_bytes(&self, app: AppId) -> Result<u64, ScriptRepoError> {
        Ok(self.read().app_scripts(app).map(|st| st.source_bytes).sum())
    }

    async fn all_live(&self) -> Result<Vec<(Script, ScriptVersion)>, ScriptRepoError> {
        let s = self.read();
        Ok(s.scripts
            .values()
            .filter_map(|st| {
                st.versions
                    .iter()
                    .find(|v| v.version == st.script.live_version)
                    .map(|v| (st.script.clone(), v.clone()))
            })
            .collect())
    }
}
