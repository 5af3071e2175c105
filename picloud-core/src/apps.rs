//! The apps service: create, list, show, rename and delete apps, each with
//! the caller's effective role (`my_role`).

use std::sync::Arc;

use crate::authz::{self, AuthzRepoError, Capability, require};
use crate::domain::{App, AppRole, DisplayName, InstanceRole, NewApp, Principal, Slug};
use crate::error::{ErrorKind, ServiceError};
use crate::ports::AppRepoError;
use crate::stores::Stores;

/// An app as one caller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppWithRole {
    /// The app.
    pub app: App,
    /// The caller's effective role on it.
    pub my_role: Option<AppRole>,
}

/// Every outcome of [`AppService`] other than success.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// The caller may not do this.
    #[error("forbidden")]
    Forbidden,
    /// No app has this id or slug.
    #[error("app not found: {0}")]
    NotFound(String),
    /// The slug is taken.
    #[error("slug already taken: {0}")]
    SlugTaken(String),
    /// The request breaks a rule (shown to the caller as is).
    #[error("{0}")]
    Invalid(String),
    /// The app store failed.
    #[error("app repository error: {0}")]
    Apps(AppRepoError),
    /// The authorization lookup failed.
    #[error("authorization repo error: {0}")]
    Authz(#[from] AuthzRepoError),
}

impl From<AppRepoError> for AppError {
    fn from(e: AppRepoError) -> Self {
        match e {
            AppRepoError::Conflict(slug) => Self::SlugTaken(slug),
            other => Self::Apps(other),
        }
    }
}

crate::error::from_authz_denied!(AppError, not_found = NotFound);

impl ServiceError for AppError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Forbidden => ErrorKind::Forbidden,
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::SlugTaken(_) => ErrorKind::Conflict,
            Self::Invalid(_) => ErrorKind::Invalid,
            Self::Apps(_) | Self::Authz(_) => ErrorKind::Internal,
        }
    }
}

/// Told when an app is created or deleted, so that what another service
/// keeps in memory about apps (compiled scripts, say) follows.
#[async_trait::async_trait]
pub trait AppListener: Send + Sync {
    /// `app` was just created.
    async fn app_created(&self, app: &App) {
        let _ = app;
    }

    /// `app` is gone from the store; forget it.
    async fn app_deleted(&self, app: &App);
}

/// Creates, lists, shows, renames and deletes apps.
#[derive(Clone)]
pub struct AppService {
    stores: Stores,
    listeners: Vec<Arc<dyn AppListener>>,
}

impl std::fmt::Debug for AppService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppService")
            .field("listeners", &self.listeners.len())
            .finish_non_exhaustive()
    }
}

impl AppService {
    /// A service over `stores`.
    pub fn new(stores: Stores) -> Self {
        Self {
            stores,
            listeners: Vec::new(),
        }
    }

    /// This service, telling `listener` of every app it deletes.
    pub fn with_listener(mut self, listener: Arc<dyn AppListener>) -> Self {
        self.listeners.push(listener);
        self
    }

    /// Renames an app (`AppAdmin`): a new display name; the slug, and so
    /// every URL, stays.
    pub async fn rename(
        &self,
        principal: &Principal,
        ident: &str,
        name: &str,
    ) -> Result<AppWithRole, AppError> {
        let (app, my_role) =
            authz::resolve_with_role(&self.stores, principal, ident, Capability::AppAdmin).await?;
        let name = DisplayName::parse(name).map_err(|e| AppError::Invalid(e.to_string()))?;
        let app = self
            .stores
            .apps
            .rename(app.id, name)
            .await
            .map_err(|e| match e {
                AppRepoError::NotFound => AppError::NotFound(ident.to_owned()),
                other => other.into(),
            })?;
        Ok(AppWithRole { app, my_role })
    }

    /// Deletes an app (`AppAdmin`) with everything it owns: memberships,
    /// the tokens scoped to it, scripts with every version and their
    /// invocation logs, its settings. Its endpoints stop answering at once.
    /// A second delete of the same app is [`AppError::NotFound`].
    pub async fn delete(&self, principal: &Principal, ident: &str) -> Result<(), AppError> {
        let app = authz::resolve_and_require(&self.stores, principal, ident, Capability::AppAdmin)
            .await?;
        self.stores.apps.delete(app.id).await.map_err(|e| match e {
            AppRepoError::NotFound => AppError::NotFound(ident.to_owned()),
            other => other.into(),
        })?;
        for listener in &self.listeners {
            listener.app_deleted(&app).await;
        }
        Ok(())
    }

    /// Creates an app (`CreateApp`). The slug must be valid and free.
    pub async fn create(
        &self,
        principal: &Principal,
        slug: &str,
        name: &str,
    ) -> Result<AppWithRole, AppError> {
        require(self.stores.authz.as_ref(), principal, Capability::CreateApp).await?;
        let slug = Slug::parse(slug).map_err(|e| AppError::Invalid(e.to_string()))?;
        let name = DisplayName::parse(name).map_err(|e| AppError::Invalid(e.to_string()))?;
        let app = self.stores.apps.create(NewApp::new(slug, name)).await?;
        for listener in &self.listeners {
            listener.app_created(&app).await;
        }
        let my_role = authz::my_role(principal, app.id, None);
        Ok(AppWithRole { app, my_role })
    }

    /// The apps the caller can see, by slug: every app for owners and admins,
    /// the explicit memberships of a member, only its app for a scoped token.
    pub async fn list(&self, principal: &Principal) -> Result<Vec<AppWithRole>, AppError> {
        if !principal.is_active {
            return Ok(Vec::new());
        }
        let apps = if let Some(scope) = principal.scope {
            let explicit =
                match authz::needs_explicit_role(principal, Capability::AppView(scope.app_id)) {
                    Some(app) => self.stores.authz.app_role(app, principal.user_id).await?,
                    None => None,
                };
            self.stores
                .apps
                .get(scope.app_id)
                .await?
                .map(|app| (app, explicit))
                .into_iter()
                .collect::<Vec<_>>()
        } else if principal.instance_role == InstanceRole::Member {
            self.stores
                .apps
                .list_for_member(principal.user_id)
                .await?
                .into_iter()
                .map(|(app, role)| (app, Some(role)))
                .collect()
        } else {
            self.stores
                .apps
                .list()
                .await?
                .into_iter()
                .map(|a| (a, None))
                .collect()
        };
        Ok(apps
            .into_iter()
            .filter_map(|(app, explicit)| {
                authz::my_role(principal, app.id, explicit).map(|r| AppWithRole {
                    app,
                    my_role: Some(r),
                })
            })
            .collect())
    }

    /// One app (`AppView` on it), by id or slug.
    pub async fn get(&self, principal: &Principal, ident: &str) -> Result<AppWithRole, AppError> {
        let (app, my_role) =
            authz::resolve_with_role(&self.stores, principal, ident, Capability::AppView).await?;
        Ok(AppWithRole { app, my_role })
    }
}
