//! [`DomainService`]: custom domains, and the in-memory [`DomainMap`] that
//! routes them.
//!
//! An app may be served on hostnames of its own (`shop.example.com`): a
//! request whose `Host` is one of them runs that app's scripts at
//! `/{script}[/…]`. Editors add and remove names (`AppEdit`), viewers list
//! them (`AppView`); a name belongs to one app.
//!
//! Routing and Caddy's on-demand TLS `ask` read the [`DomainMap`], never
//! the store: Caddy asks on every TLS handshake of a name it has not seen,
//! before it even loads a stored certificate, so the answer must take
//! microseconds. The map is rebuilt whole by [`DomainService::refresh`]
//! (at start-up, and after every change this node makes); cluster mode will
//! call the same `refresh` when another node changes a domain.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use crate::authz::{AuthzRepoError, Capability};
use crate::domain::{App, Hostname, Principal};
use crate::error::{ErrorKind, ServiceError};
use crate::ids::AppId;
use crate::ports::{AppRepoError, Domain, DomainRepoError};
use crate::stores::Stores;

/// Every outcome of [`DomainService`] other than success.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DomainError {
    /// The caller may not do this.
    #[error("forbidden")]
    Forbidden,
    /// No app has this id or slug.
    #[error("app not found: {0}")]
    AppNotFound(String),
    /// Not a valid hostname (the message says why).
    #[error("{0}")]
    Invalid(String),
    /// The name belongs to an app already.
    #[error("the hostname {0} is taken")]
    Taken(String),
    /// The domain store failed.
    #[error("domain store error: {0}")]
    Domains(DomainRepoError),
    /// The app store failed.
    #[error("app repository error: {0}")]
    Apps(#[from] AppRepoError),
    /// The authorization lookup failed.
    #[error("authorization repo error: {0}")]
    Authz(#[from] AuthzRepoError),
}

crate::error::from_authz_denied!(DomainError, not_found = AppNotFound);

impl ServiceError for DomainError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Forbidden => ErrorKind::Forbidden,
            Self::AppNotFound(_) => ErrorKind::NotFound,
            Self::Invalid(_) => ErrorKind::Invalid,
            Self::Taken(_) => ErrorKind::Conflict,
            Self::Domains(_) | Self::Apps(_) | Self::Authz(_) => ErrorKind::Internal,
        }
    }
}

/// The most custom domains one app may hold.
pub const MAX_DOMAINS_PER_APP: usize = 100;

/// Where a custom domain routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainTarget {
    /// The app.
    pub app_id: AppId,
    /// Its slug (what `/run/{slug}` names).
    pub slug: String,
}

/// Every custom domain of the instance, in memory: a lookup is a hash map
/// read under a read lock, with no store call.
#[derive(Debug, Clone, Default)]
pub struct DomainMap {
    hosts: Arc<RwLock<Arc<HashMap<String, DomainTarget>>>>,
}

impl DomainMap {
    /// Where `host` routes, if it is a registered domain. `host` is what a
    /// `Host` header holds: its port (if any) and one trailing dot are
    /// ignored, and case does not matter.
    pub fn lookup(&self, host: &str) -> Option<DomainTarget> {
        let host = normalize(host)?;
        let hosts = Arc::clone(&self.hosts.read().unwrap_or_else(PoisonError::into_inner));
        hosts.get(host.as_ref()).cloned()
    }

    /// Whether any domain is registered (the common case of none skips the
    /// lookup altogether).
    pub fn is_empty(&self) -> bool {
        self.hosts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// How many domains are registered.
    pub fn len(&self) -> usize {
        self.hosts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn replace(&self, hosts: HashMap<String, DomainTarget>) {
        *self.hosts.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(hosts);
    }
}

/// `host` without its port and one trailing dot, lowercased only when it
/// has capitals (no allocation in the usual case). `None` for what cannot
/// be a domain (an IPv6 literal, the empty string).
fn normalize(host: &str) -> Option<std::borrow::Cow<'_, str>> {
    if host.starts_with('[') {
        return None;
    }
    let host = host.split_once(':').map_or(host, |(h, _)| h);
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(std::borrow::Cow::Owned(host.to_ascii_lowercase()))
    } else {
        Some(std::borrow::Cow::Borrowed(host))
    }
}

/// Custom domains: the rules of the domains API, and the routing map.
#[derive(Clone)]
pub struct DomainService {
    stores: Stores,
    map: DomainMap,
}

impl std::fmt::Debug for DomainService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DomainService")
            .field("domains", &self.map.len())
            .finish_non_exhaustive()
    }
}

impl DomainService {
    /// The service over `stores`, with an empty map: call
    /// [`refresh`](Self::refresh) before serving.
    pub fn new(stores: Stores) -> Self {
        Self {
            stores,
            map: DomainMap::default(),
        }
    }

    /// The routing map (shared: clones see every refresh).
    pub fn map(&self) -> &DomainMap {
        &self.map
    }

    /// Rebuilds the map from the store: every domain, with its app's slug.
    /// Returns how many domains it holds.
    pub async fn refresh(&self) -> Result<usize, DomainError> {
        let domains = self
            .stores
            .domains
            .all_domains()
            .await
            .map_err(DomainError::Domains)?;
        let mut slugs: HashMap<AppId, Option<String>> = HashMap::new();
        let mut hosts = HashMap::with_capacity(domains.len());
        for d in domains {
            let slug = match slugs.get(&d.app_id) {
                Some(slug) => slug.clone(),
                None => {
                    let slug = self
                        .stores
                        .apps
                        .get(d.app_id)
                        .await?
                        .map(|a| a.slug.to_string());
                    slugs.insert(d.app_id, slug.clone());
                    slug
                }
            };
            // An app deleted meanwhile: its domains went with it.
            if let Some(slug) = slug {
                hosts.insert(
                    d.hostname.to_string(),
                    DomainTarget {
                        app_id: d.app_id,
                        slug,
                    },
                );
            }
        }
        let n = hosts.len();
        self.map.replace(hosts);
        Ok(n)
    }

    async fn app(
        &self,
        principal: &Principal,
        ident: &str,
        capability: fn(AppId) -> Capability,
    ) -> Result<App, DomainError> {
        Ok(crate::authz::resolve_and_require(&self.stores, principal, ident, capability).await?)
    }

    /// Gives `hostname` to the app (AppEdit): checked and lowercased
    /// ([`Hostname`]); [`DomainError::Taken`] if any app has it. Routed as
    /// soon as this returns.
    pub async fn add(
        &self,
        principal: &Principal,
        app: &str,
        hostname: &str,
    ) -> Result<Domain, DomainError> {
        let app = self.app(principal, app, Capability::AppEdit).await?;
        let hostname =
            Hostname::parse(hostname).map_err(|e| DomainError::Invalid(e.to_string()))?;
        let held = self
            .stores
            .domains
            .domains_of(app.id)
            .await
            .map_err(DomainError::Domains)?;
        if held.len() >= MAX_DOMAINS_PER_APP {
            return Err(DomainError::Invalid(format!(
                "an app may hold at most {MAX_DOMAINS_PER_APP} domains"
            )));
        }
        let this = self.clone();
        crate::scripts::to_the_end(async move {
            let claimed = this.stores.domains.claim(app.id, &hostname).await;
            let domain = match claimed {
                Ok(domain) => domain,
                Err(DomainRepoError::Taken) => {
                    return Err(DomainError::Taken(hostname.to_string()));
                }
                Err(DomainRepoError::AppNotFound) => {
                    return Err(DomainError::AppNotFound(app.slug.to_string()));
                }
                Err(e) => return Err(DomainError::Domains(e)),
            };
            this.refresh().await?;
            Ok(domain)
        })
        .await
    }

    /// The app's domains, by name (AppView).
    pub async fn list(&self, principal: &Principal, app: &str) -> Result<Vec<Domain>, DomainError> {
        let app = self.app(principal, app, Capability::AppView).await?;
        self.stores
            .domains
            .domains_of(app.id)
            .await
            .map_err(DomainError::Domains)
    }

    /// Takes `hostname` from the app (AppEdit); idempotent: a name the app
    /// does not have (or no valid name at all) changes nothing.
    pub async fn remove(
        &self,
        principal: &Principal,
        app: &str,
        hostname: &str,
    ) -> Result<(), DomainError> {
        let app = self.app(principal, app, Capability::AppEdit).await?;
        let Ok(hostname) = Hostname::parse(hostname) else {
            return Ok(());
        };
        let this = self.clone();
        crate::scripts::to_the_end(async move {
            this.stores
                .domains
                .release(app.id, &hostname)
                .await
                .map_err(DomainError::Domains)?;
            this.refresh().await?;
            Ok(())
        })
        .await
    }

    /// Caddy's on-demand TLS `ask`: whether a certificate may be issued
    /// for `domain`, from memory.
    pub fn tls_ask(&self, domain: &str) -> bool {
        self.map.lookup(domain).is_some()
    }
}

/// A deleted app's domains stop routing at once (the store dropped them
/// with the app).
#[async_trait::async_trait]
impl crate::apps::AppListener for DomainService {
    async fn app_created(&self, _app: &App) {}

    async fn app_deleted(&self, app: &App) {
        if let Err(e) = self.refresh().await {
            tracing::warn!(app = %app.slug, error = %e, "refreshing the domain map failed");
            // Still stop routing the deleted app's names.
            let hosts = Arc::clone(
                &self
                    .map
                    .hosts
                    .read()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            let kept = hosts
                .iter()
                .filter(|(_, t)| t.app_id != app.id)
                .map(|(h, t)| (h.clone(), t.clone()))
                .collect();
            self.map.replace(kept);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_normalized_for_lookup() {
        let map = DomainMap::default();
        let target = DomainTarget {
            app_id: AppId::new(),
            slug: "shop".into(),
        };
        map.replace(HashMap::from([(
            "shop.example.com".to_owned(),
            target.clone(),
        )]));
        for host in [
            "shop.example.com",
            "Shop.Example.COM",
            "shop.example.com:8443",
            "shop.example.com.",
            "SHOP.example.com.:80",
        ] {
            assert_eq!(map.lookup(host), Some(target.clone()), "{host}");
        }
        for host in ["example.com", "[::1]:80", "", ":80", "other.example.com"] {
            assert_eq!(map.lookup(host), None, "{host}");
        }
    }
}
