//! [`AppRepository`] for [`MemoryStore`]: the apps, by id and by slug.
//!
//! Lists are ordered by slug in byte order, as PostgreSQL's `COLLATE "C"`
//! orders them. Deleting an app cascades, as `ON DELETE CASCADE` does in SQL:
//! its memberships, the tokens scoped to it, its scripts, their invocations,
//! its limits, its jobs, its KV keys, its environment and its domains go with
//! it, under the same write lock.

use async_trait::async_trait;
use picloud_core::domain::{App, AppRole, DisplayName, NewApp};
use picloud_core::ids::{AdminUserId, AppId, ScriptId};
use picloud_core::ports::{AppRepoError, AppRepository};

use crate::{MemoryStore, app_range, uuid_max, uuid_min};

fn sorted_by_slug(mut apps: Vec<App>) -> Vec<App> {
    apps.sort_by(|a, b| a.slug.cmp(&b.slug));
    apps
}

#[async_trait]
impl AppRepository for MemoryStore {
    async fn create(&self, app: NewApp) -> Result<App, AppRepoError> {
        let mut s = self.write();
        if s.app_slugs.contains_key(app.slug.as_str()) {
            return Err(AppRepoError::Conflict(app.slug.to_string()));
        }
        if s.apps.contains_key(&app.id) {
            return Err(AppRepoError::Conflict(app.id.to_string()));
        }
        let app = app.to_app();
        s.app_slugs.insert(app.slug.to_string(), app.id);
        s.apps.insert(app.id, app.clone());
        Ok(app)
    }

    async fn get(&self, id: AppId) -> Result<Option<App>, AppRepoError> {
        Ok(self.read().apps.get(&id).cloned())
    }

    async fn find_by_slug(&self, slug: &str) -> Result<Option<App>, AppRepoError> {
        let s = self.read();
        Ok(s.app_slugs.get(slug).and_then(|id| s.apps.get(id)).cloned())
    }

    async fn list(&self) -> Result<Vec<App>, AppRepoError> {
        Ok(sorted_by_slug(self.read().apps.values().cloned().collect()))
    }

    async fn list_for_member(
        &self,
        user: AdminUserId,
    ) -> Result<Vec<(App, AppRole)>, AppRepoError> {
        let s = self.read();
        let mut apps: Vec<(App, AppRole)> = s
            .members_by_user
            .range((user, AppId::from(uuid_min()))..=(user, AppId::from(uuid_max())))
            .filter_map(|&(_, app)| {
                let role = s.members.get(&(app, user))?.role;
                s.apps.get(&app).map(|a| (a.clone(), role))
            })
            .collect();
        apps.sort_by(|a, b| a.0.slug.cmp(&b.0.slug));
        Ok(apps)
    }

    async fn rename(&self, id: AppId, name: DisplayName) -> Result<App, AppRepoError> {
        let mut s = self.write();
        let app = s.apps.get_mut(&id).ok_or(AppRepoError::NotFound)?;
        app.name = name;
        Ok(app.clone())
    }

    async fn delete(&self, id: AppId) -> Result<(), AppRepoError> {
        let mut s = self.write();
        let app = s.apps.remove(&id).ok_or(AppRepoError::NotFound)?;
        s.app_slugs.remove(app.slug.as_str());
        let users: Vec<AdminUserId> = app_range(&s.members, id).map(|(k, _)| k.1).collect();
        for user in users {
            s.members.remove(&(id, user));
            s.members_by_user.remove(&(user, id));
        }
        // Tokens scoped to the app, its scripts, their invocations and its
        // limits go with it (ON DELETE CASCADE in SQL).
        s.tokens.remove_scoped_to(id);
        let gone: Vec<ScriptId> = s
            .scripts
            .iter()
            .filter(|((app, _), _)| *app == id)
            .map(|(_, st)| st.script.id)
            .collect();
        s.scripts.retain(|(app, _), _| *app != id);
        for script in gone {
            s.invocations.remove(&script);
        }
        s.app_limits.remove(&id);
        s.public_errors.remove(&id);
        s.egress_hosts.remove(&id);
        s.events.drop_app(id);
        s.kv.drop_app(id);
        s.env.drop_app(id);
        s.domains.drop_app(id);
        Ok(())
    }
}
