//! [`AdminUserRepository`] for [`MemoryStore`]: the admin users, by id and
//! by username, with their password hashes.
//!
//! The list is ordered by username in byte order, as PostgreSQL's
//! `COLLATE "C"` orders it. `update_guarded` makes its owner checks and its
//! change under one write lock.

use async_trait::async_trait;
use picloud_core::domain::{AdminUser, InstanceRole, NewAdminUser, UserCredentials};
use picloud_core::ids::AdminUserId;
use picloud_core::ports::{AdminUserRepoError, AdminUserRepository};

use crate::{MemoryStore, StoredUser};

#[async_trait]
impl AdminUserRepository for MemoryStore {
    async fn create(&self, new: NewAdminUser) -> Result<AdminUser, AdminUserRepoError> {
        let mut s = self.write();
        if s.usernames.contains_key(&new.username) {
            return Err(AdminUserRepoError::Conflict(new.username));
        }
        if s.users.contains_key(&new.id) {
            return Err(AdminUserRepoError::Conflict(new.id.to_string()));
        }
        let user = new.to_user();
        s.usernames.insert(user.username.clone(), user.id);
        s.users.insert(
            user.id,
            StoredUser {
                user: user.clone(),
                password_hash: new.password_hash,
            },
        );
        Ok(user)
    }

    async fn get(&self, id: AdminUserId) -> Result<Option<AdminUser>, AdminUserRepoError> {
        Ok(self.read().users.get(&id).map(|u| u.user.clone()))
    }

    async fn find_by_username(
        &self,
        username: &str,
    ) -> Result<Option<AdminUser>, AdminUserRepoError> {
        let s = self.read();
        Ok(s.usernames
            .get(username)
            .and_then(|id| s.users.get(id))
            .map(|u| u.user.clone()))
    }

    async fn credentials(
        &self,
        username: &str,
    ) -> Result<Option<UserCredentials>, AdminUserRepoError> {
        let s = self.read();
        Ok(s.usernames
            .get(username)
            .and_then(|id| s.users.get(id))
            .map(|u| UserCredentials {
                user: u.user.clone(),
                password_hash: u.password_hash.clone(),
            }))
    }

    async fn list(&self) -> Result<Vec<AdminUser>, AdminUserRepoError> {
        let mut users: Vec<AdminUser> =
            self.read().users.values().map(|u| u.user.clone()).collect();
        users.sort_by(|a, b| a.username.as_bytes().cmp(b.username.as_bytes()));
        Ok(users)
    }

    async fn set_active(
        &self,
        id: AdminUserId,
        is_active: bool,
    ) -> Result<AdminUser, AdminUserRepoError> {
        let mut s = self.write();
        let stored = s.users.get_mut(&id).ok_or(AdminUserRepoError::NotFound)?;
        stored.user.is_active = is_active;
        Ok(stored.user.clone())
    }

    async fn set_instance_role(
        &self,
        id: AdminUserId,
        role: InstanceRole,
    ) -> Result<AdminUser, AdminUserRepoError> {
        let mut s = self.write();
        let stored = s.users.get_mut(&id).ok_or(AdminUserRepoError::NotFound)?;
        stored.user.instance_role = role;
        Ok(stored.user.clone())
    }

    async fn update_guarded(
        &self,
        id: AdminUserId,
        role: Option<InstanceRole>,
        is_active: Option<bool>,
        may_touch_owner: bool,
    ) -> Result<AdminUser, AdminUserRepoError> {
        // One write lock around the checks and the change.
        let mut s = self.write();
        let user = &s.users.get(&id).ok_or(AdminUserRepoError::NotFound)?.user;
        let changes = role.is_some() || is_active.is_some();
        if changes && !may_touch_owner && user.instance_role == InstanceRole::Owner {
            return Err(AdminUserRepoError::TargetIsOwner);
        }
        let owns = |role: InstanceRole, active: bool| role == InstanceRole::Owner && active;
        let before = owns(user.instance_role, user.is_active);
        let after = owns(
            role.unwrap_or(user.instance_role),
            is_active.unwrap_or(user.is_active),
        );
        if before && !after {
            let others = s
                .users
                .values()
                .filter(|u| u.user.id != id && owns(u.user.instance_role, u.user.is_active))
                .count();
            if others == 0 {
                return Err(AdminUserRepoError::LastOwner);
            }
        }
        let stored = s.users.get_mut(&id).ok_or(AdminUserRepoError::NotFound)?;
        if let Some(role) = role {
            stored.user.instance_role = role;
        }
        if let Some(active) = is_active {
            stored.user.is_active = active;
        }
        Ok(stored.user.clone())
    }

    async fn set_password_hash(
        &self,
        id: AdminUserId,
        password_hash: Option<String>,
    ) -> Result<(), AdminUserRepoError> {
        let mut s = self.write();
        let stored = s.users.get_mut(&id).ok_or(AdminUserRepoError::NotFound)?;
        stored.password_hash = password_hash;
        Ok(())
    }

    async fn count_active_owners(&self) -> Result<u64, AdminUserRepoError> {
        let n = self
            .read()
            .users
            .values()
            .filter(|u| u.user.is_active && u.user.instance_role == InstanceRole::Owner)
            .count();
        Ok(n as u64)
    }
}
