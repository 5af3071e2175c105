//! [`AdminUserRepository`] for [`MemoryStore`]: the admin users, by id and
//! by username, with their password hashes.
//!
//! The list is ordered by username in byte order, as PostgreSQL's
//! `COLLATE "C"` orders it. `update_guarded` makes its owner checks (core's
//! [`check_user_change`]) and its change under one write lock.

use async_trait::async_trait;
use picloud_core::domain::{
    AdminUser, InstanceRole, NewAdminUser, OwnerStanding, UserChange, UserCredentials,
    check_user_change,
};
use picloud_core::ids::AdminUserId;
use picloud_core::ports::{AdminUserRepoError, AdminUserRepository};

use crate::{MemoryStore, StoredUser};

/// What the owner guards look at in a user.
fn standing(user: &AdminUser) -> OwnerStanding {
    OwnerStanding::new(user.instance_role, user.is_active)
}

#[async_trait]
impl AdminUserRepository for MemoryStore {
    async fn create(&self, new: NewAdminUser) -> Result<AdminUser, AdminUserRepoError> {
        let mut s = self.write();
        if s.usernames.contains_key(new.username.as_str()) {
            return Err(AdminUserRepoError::Conflict(new.username.into()));
        }
        if s.users.contains_key(&new.id) {
            return Err(AdminUserRepoError::Conflict(new.id.to_string()));
        }
        let user = new.to_user();
        s.usernames.insert(user.username.to_string(), user.id);
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

    async fn update_guarded(
        &self,
        id: AdminUserId,
        role: Option<InstanceRole>,
        is_active: Option<bool>,
        may_touch_owner: bool,
    ) -> Result<AdminUser, AdminUserRepoError> {
        // One write lock around the checks and the change; the rule itself
        // is core's pure check.
        let mut s = self.write();
        let target = standing(&s.users.get(&id).ok_or(AdminUserRepoError::NotFound)?.user);
        let others = s
            .users
            .values()
            .filter(|u| u.user.id != id && standing(&u.user).is_active_owner())
            .count();
        let change = UserChange {
            instance_role: role,
            is_active,
        };
        check_user_change(target, change, may_touch_owner, others)?;
        let after = change.applied_to(target);
        let stored = s.users.get_mut(&id).ok_or(AdminUserRepoError::NotFound)?;
        stored.user.instance_role = after.instance_role;
        stored.user.is_active = after.is_active;
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
            .filter(|u| standing(&u.user).is_active_owner())
            .count();
        Ok(n as u64)
    }
}
