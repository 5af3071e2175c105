//! App memberships.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{AdminUser, AppRole, Email, InstanceRole, Username};
use crate::ids::{AdminUserId, AppId};

/// An explicit membership row: `user` holds `role` on `app`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppMembership {
    /// The app.
    pub app_id: AppId,
    /// The member.
    pub user_id: AdminUserId,
    /// Their role on the app.
    pub role: AppRole,
    /// When the membership was granted.
    pub created_at: DateTime<Utc>,
}

/// A membership row joined with its user, as the members list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppMembershipDetail {
    /// The member's id.
    pub user_id: AdminUserId,
    /// The member's login name.
    pub username: Username,
    /// The member's e-mail, if any.
    pub email: Option<Email>,
    /// The member's instance role.
    pub instance_role: InstanceRole,
    /// Whether the member is active (inactive members are still listed).
    pub is_active: bool,
    /// Their role on the app.
    pub role: AppRole,
    /// When the membership was granted.
    pub created_at: DateTime<Utc>,
}

impl AppMembershipDetail {
    /// Joins a membership row with its user. The caller guarantees they match.
    pub fn compose(user: &AdminUser, membership: &AppMembership) -> Self {
        debug_assert_eq!(user.id, membership.user_id);
        Self {
            user_id: user.id,
            username: user.username.clone(),
            email: user.email.clone(),
            instance_role: user.instance_role,
            is_active: user.is_active,
            role: membership.role,
            created_at: membership.created_at,
        }
    }
}
