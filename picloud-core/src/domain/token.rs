//! API tokens.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{DisplayName, TokenScope};
use crate::ids::{AdminUserId, TokenId};

/// An API token's stored record. The secret itself is never stored: only a
/// hash of it, which [`NewApiToken`] carries and nothing reads back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    /// Its id.
    pub id: TokenId,
    /// The user it authenticates as.
    pub user_id: AdminUserId,
    /// A name for people ("ci deploy", "login").
    pub name: DisplayName,
    /// If set, the token acts only on this app, with at most this role.
    pub scope: Option<TokenScope>,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
}

/// What a store needs to create a token: the record and the secret's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiToken {
    /// The record.
    pub token: ApiToken,
    /// The hash of the secret (see `picloud_core::auth::hash_token`).
    pub token_hash: String,
}
