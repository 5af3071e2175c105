//! [`DomainRepository`] for [`MemoryStore`]: custom hostnames by name, with
//! an index by app; dropped with their app.
//!
//! A claim checks the name before the app, under the store's one lock, as
//! PostgreSQL's `INSERT … ON CONFLICT DO NOTHING` does: a held name is
//! `Taken` whoever asks, and only a free name meets the foreign key on the
//! app (`AppNotFound`).

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use picloud_core::domain::Hostname;
use picloud_core::ids::AppId;
use picloud_core::ports::{Domain, DomainRepoError, DomainRepository};

use crate::MemoryStore;

/// The domains part of the state.
#[derive(Debug, Default)]
pub(crate) struct Domains {
    /// Every domain by name (byte order, as `COLLATE "C"` orders it).
    by_name: BTreeMap<String, Domain>,
    /// The same names by `(app, name)`: one app's are a range, by name.
    by_app: BTreeSet<(AppId, String)>,
}

impl Domains {
    /// The app's domains, by name.
    fn of(&self, app: AppId) -> impl Iterator<Item = &Domain> {
        self.by_app
            .range((app, String::new())..)
            .take_while(move |(a, _)| *a == app)
            .filter_map(|(_, name)| self.by_name.get(name))
    }

    /// Drops the app's domains (an app delete).
    pub(crate) fn drop_app(&mut self, app: AppId) {
        let names: Vec<String> = self
            .by_app
            .range((app, String::new())..)
            .take_while(|(a, _)| *a == app)
            .map(|(_, name)| name.clone())
            .collect();
        for name in names {
            self.by_name.remove(&name);
            self.by_app.remove(&(app, name));
        }
    }
}

#[async_trait]
impl DomainRepository for MemoryStore {
    async fn claim(&self, app: AppId, hostname: &Hostname) -> Result<Domain, DomainRepoError> {
        let mut s = self.write();
        if s.domains.by_name.contains_key(hostname.as_str()) {
            return Err(DomainRepoError::Taken);
        }
        if !s.apps.contains_key(&app) {
            return Err(DomainRepoError::AppNotFound);
        }
        let domain = Domain {
            hostname: hostname.clone(),
            app_id: app,
            created_at: picloud_core::clock::now(),
        };
        let name = hostname.as_str().to_owned();
        s.domains.by_app.insert((app, name.clone()));
        s.domains.by_name.insert(name, domain.clone());
        Ok(domain)
    }

    async fn release(&self, app: AppId, hostname: &Hostname) -> Result<bool, DomainRepoError> {
        let mut s = self.write();
        let key = (app, hostname.as_str().to_owned());
        if !s.domains.by_app.remove(&key) {
            return Ok(false);
        }
        s.domains.by_name.remove(&key.1);
        Ok(true)
    }

    async fn domains_of(&self, app: AppId) -> Result<Vec<Domain>, DomainRepoError> {
        Ok(self.read().domains.of(app).cloned().collect())
    }

    async fn all_domains(&self) -> Result<Vec<Domain>, DomainRepoError> {
        Ok(self.read().domains.by_name.values().cloned().collect())
    }
}
