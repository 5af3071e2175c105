//! The domains port: which app each custom hostname belongs to.
//!
//! **Semantics every store keeps** (the conformance cases check each):
//! - a hostname has one owner: a claim of a name any app holds (the same
//!   app included) is [`DomainRepoError::Taken`], atomically (PostgreSQL:
//!   the primary key on the name, `INSERT … ON CONFLICT DO NOTHING`);
//! - names are [`Hostname`]s, already lowercase, so case cannot split one;
//! - domains go with their app.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::BoxError;
use crate::domain::Hostname;
use crate::ids::AppId;

/// A hostname and the app it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// The name.
    pub hostname: Hostname,
    /// Its app.
    pub app_id: AppId,
    /// When it was claimed.
    pub created_at: DateTime<Utc>,
}

/// Errors of [`DomainRepository`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DomainRepoError {
    /// No such app.
    #[error("app not found")]
    AppNotFound,
    /// The name belongs to an app already (this one or another).
    #[error("the hostname is taken")]
    Taken,
    /// The backend failed.
    #[error("domain store backend error: {0}")]
    Backend(#[source] BoxError),
}

/// Stores custom domains.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait DomainRepository: Send + Sync {
    /// Gives `hostname` to `app`; [`DomainRepoError::Taken`] if any app
    /// has it.
    async fn claim(&self, app: AppId, hostname: &Hostname) -> Result<Domain, DomainRepoError>;

    /// Takes `hostname` from `app`; whether the app had it (another app's
    /// name is left alone).
    async fn release(&self, app: AppId, hostname: &Hostname) -> Result<bool, DomainRepoError>;

    /// The app's domains, by name.
    async fn domains_of(&self, app: AppId) -> Result<Vec<Domain>, DomainRepoError>;

    /// Every domain of every app (to build a node's routing map).
    async fn all_domains(&self) -> Result<Vec<Domain>, DomainRepoError>;
}
