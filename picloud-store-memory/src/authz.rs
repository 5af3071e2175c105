//! [`AuthzRepository`] for [`MemoryStore`]: a user's role on an app, read off the
//! memberships.

use async_trait::async_trait;
use picloud_core::domain::AppRole;
use picloud_core::ids::{AdminUserId, AppId};
use picloud_core::ports::{AuthzRepoError, AuthzRepository};

use crate::MemoryStore;

#[async_trait]
impl AuthzRepository for MemoryStore {
    async fn app_role(
        &self,
        app: AppId,
        user: AdminUserId,
    ) -> Result<Option<AppRole>, AuthzRepoError> {
        Ok(self.read().members.get(&(app, user)).map(|m| m.role))
    }
}
