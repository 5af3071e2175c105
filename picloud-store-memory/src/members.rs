//! [`AppMembersRepository`] for [`MemoryStore`]: the memberships, by
//! `(app, user)` and by `(user, app)`.
//!
//! Each method takes one lock for its whole duration, so each is atomic as a
//! single SQL statement is: `try_insert` never overwrites an existing row,
//! `update_role` never creates one. Inserts check the foreign keys (both the
//! app and the user must exist), and the enriched list is ordered by username
//! in byte order, as the PostgreSQL store's join is.

use async_trait::async_trait;
use picloud_core::domain::{AppMembership, AppMembershipDetail, AppRole};
use picloud_core::ids::{AdminUserId, AppId};
use picloud_core::ports::{AppMembersRepoError, AppMembersRepository};

use crate::{MemoryStore, State, app_range};

impl State {
    /// The foreign keys of `app_members`: both ends must exist.
    fn check_refs(&self, app: AppId, user: AdminUserId) -> Result<(), AppMembersRepoError> {
        if self.apps.contains_key(&app) && self.users.contains_key(&user) {
            Ok(())
        } else {
            Err(AppMembersRepoError::NotFound)
        }
    }

    fn insert_member(&mut self, row: AppMembership) {
        self.members_by_user.insert((row.user_id, row.app_id));
        self.members.insert((row.app_id, row.user_id), row);
    }
}

#[async_trait]
impl AppMembersRepository for MemoryStore {
    async fn list_for_app_enriched(
        &self,
        app: AppId,
    ) -> Result<Vec<AppMembershipDetail>, AppMembersRepoError> {
        let s = self.read();
        let mut rows: Vec<AppMembershipDetail> = app_range(&s.members, app)
            .filter_map(|(_, m)| {
                s.users
                    .get(&m.user_id)
                    .map(|u| AppMembershipDetail::compose(&u.user, m))
            })
            .collect();
        rows.sort_by(|a, b| a.username.as_bytes().cmp(b.username.as_bytes()));
        Ok(rows)
    }

    async fn find(
        &self,
        app: AppId,
        user: AdminUserId,
    ) -> Result<Option<AppMembership>, AppMembersRepoError> {
        Ok(self.read().members.get(&(app, user)).cloned())
    }

    async fn try_insert(
        &self,
        app: AppId,
        user: AdminUserId,
        role: AppRole,
    ) -> Result<Option<AppMembership>, AppMembersRepoError> {
        let mut s = self.write();
        s.check_refs(app, user)?;
        if s.members.contains_key(&(app, user)) {
            return Ok(None);
        }
        let row = AppMembership {
            app_id: app,
            user_id: user,
            role,
            created_at: picloud_core::clock::now(),
        };
        s.insert_member(row.clone());
        Ok(Some(row))
    }

    async fn update_role(
        &self,
        app: AppId,
        user: AdminUserId,
        role: AppRole,
    ) -> Result<Option<AppMembership>, AppMembersRepoError> {
        let mut s = self.write();
        Ok(s.members.get_mut(&(app, user)).map(|row| {
            row.role = role;
            row.clone()
        }))
    }

    async fn upsert(
        &self,
        app: AppId,
        user: AdminUserId,
        role: AppRole,
    ) -> Result<AppMembership, AppMembersRepoError> {
        let mut s = self.write();
        s.check_refs(app, user)?;
        if let Some(row) = s.members.get_mut(&(app, user)) {
            row.role = role;
            return Ok(row.clone());
        }
        let row = AppMembership {
            app_id: app,
            user_id: user,
            role,
            created_at: picloud_core::clock::now(),
        };
        s.insert_member(row.clone());
        Ok(row)
    }

    async fn remove(&self, app: AppId, user: AdminUserId) -> Result<(), AppMembersRepoError> {
        let mut s = self.write();
        s.members.remove(&(app, user));
        s.members_by_user.remove(&(user, app));
        Ok(())
    }
}
