//! The authenticated caller and the scope of an app-scoped token.

use serde::{Deserialize, Serialize};

use super::{AdminUser, AppRole, InstanceRole};
use crate::ids::{AdminUserId, AppId};

/// Limits a principal to one app and at most one role there (a scoped API
/// token). A scoped principal holds no instance-wide capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TokenScope {
    /// The only app the principal may act on.
    pub app_id: AppId,
    /// The most the principal may do there, whatever the user's own role.
    pub max_role: AppRole,
}

/// The authenticated caller, as produced by an authentication layer (PiCloud's
/// own bearer-token layer, or an embedder's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Principal {
    /// Who is calling.
    pub user_id: AdminUserId,
    /// Their role on the instance.
    pub instance_role: InstanceRole,
    /// A deactivated principal holds no capability at all.
    pub is_active: bool,
    /// Set when the caller authenticated with an app-scoped token.
    pub scope: Option<TokenScope>,
}

impl Principal {
    /// An active, unscoped principal for `user`.
    pub fn of(user: &AdminUser) -> Self {
        Self {
            user_id: user.id,
            instance_role: user.instance_role,
            is_active: user.is_active,
            scope: None,
        }
    }

    /// The same principal, limited to `scope`.
    pub fn scoped(self, scope: TokenScope) -> Self {
        Self {
            scope: Some(scope),
            ..self
        }
    }
}
