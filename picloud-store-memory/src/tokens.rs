//! [`TokenRepository`] for [`MemoryStore`], and the memory store's API
//! tokens, indexed for every lookup the port makes.
//!
//! Tokens are created at every login, so the store must stay fast with many
//! of them: each operation touches only the tokens it concerns (a hash map
//! by hash and by id, ordered sets by user, by scope app and by expiry), never
//! a scan of all of them. Expired tokens are purged without background work:
//! each [`Tokens::insert`] first drops a bounded batch of the tokens that
//! expired longest ago, read off the expiry-ordered index. Since each insert
//! adds at most one future expiry and may remove up to [`PURGE_BATCH`], the
//! expired tokens never pile up.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use picloud_core::domain::{AdminUser, ApiToken, NewApiToken};
use picloud_core::ids::{AdminUserId, AppId, TokenId};
use picloud_core::ports::{TokenRepoError, TokenRepository};
use uuid::Uuid;

use crate::MemoryStore;

/// How many expired tokens one insert purges at most, so that the write lock
/// is never held for long.
pub(crate) const PURGE_BATCH: usize = 64;

/// Every token, by hash, with the indexes the port's operations need.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    /// The records by the hash of their secret (the authentication path).
    by_hash: HashMap<String, ApiToken>,
    /// The hash of each token id.
    hash_of: HashMap<TokenId, String>,
    /// `(user, token)`, so one user's tokens are a range.
    by_user: BTreeSet<(AdminUserId, TokenId)>,
    /// `(scope app, token)` of the scoped tokens, so one app's are a range.
    by_app: BTreeSet<(AppId, TokenId)>,
    /// `(expires_at, token)` of the tokens that expire, soonest first.
    by_expiry: BTreeSet<(DateTime<Utc>, TokenId)>,
}

fn min_id() -> TokenId {
    TokenId::from(Uuid::nil())
}

fn max_id() -> TokenId {
    TokenId::from(Uuid::max())
}

impl Tokens {
    /// Whether a token has this hash or this id.
    pub(crate) fn is_taken(&self, hash: &str, id: TokenId) -> bool {
        self.by_hash.contains_key(hash) || self.hash_of.contains_key(&id)
    }

    /// Stores a token (the caller has checked [`Tokens::is_taken`]), after
    /// purging up to [`PURGE_BATCH`] tokens expired at `now`.
    pub(crate) fn insert(&mut self, hash: String, token: ApiToken, now: DateTime<Utc>) {
        self.purge_expired(now, PURGE_BATCH);
        self.hash_of.insert(token.id, hash.clone());
        self.by_user.insert((token.user_id, token.id));
        if let Some(scope) = token.scope {
            self.by_app.insert((scope.app_id, token.id));
        }
        if let Some(at) = token.expires_at {
            self.by_expiry.insert((at, token.id));
        }
        self.by_hash.insert(hash, token);
    }

    /// The token with this hash.
    pub(crate) fn get(&self, hash: &str) -> Option<&ApiToken> {
        self.by_hash.get(hash)
    }

    /// The token with this id.
    pub(crate) fn get_by_id(&self, id: TokenId) -> Option<&ApiToken> {
        self.hash_of.get(&id).and_then(|h| self.by_hash.get(h))
    }

    /// The tokens of `user`, in no particular order.
    pub(crate) fn of_user(&self, user: AdminUserId) -> impl Iterator<Item = &ApiToken> {
        self.by_user
            .range((user, min_id())..=(user, max_id()))
            .filter_map(|&(_, id)| self.get_by_id(id))
    }

    /// Removes token `id` from every index; returns it if it existed.
    pub(crate) fn remove(&mut self, id: TokenId) -> Option<ApiToken> {
        let hash = self.hash_of.remove(&id)?;
        let token = self.by_hash.remove(&hash)?;
        self.by_user.remove(&(token.user_id, id));
        if let Some(scope) = token.scope {
            self.by_app.remove(&(scope.app_id, id));
        }
        if let Some(at) = token.expires_at {
            self.by_expiry.remove(&(at, id));
        }
        Some(token)
    }

    /// Removes the tokens scoped to `app` (its deletion cascades to them).
    pub(crate) fn remove_scoped_to(&mut self, app: AppId) {
        let ids: Vec<TokenId> = self
            .by_app
            .range((app, min_id())..=(app, max_id()))
            .map(|&(_, id)| id)
            .collect();
        for id in ids {
            self.remove(id);
        }
    }

    /// Removes up to `max` tokens whose expiry is at or before `now`, those
    /// that expired first first; returns how many went.
    pub(crate) fn purge_expired(&mut self, now: DateTime<Utc>, max: usize) -> usize {
        let expired: Vec<TokenId> = self
            .by_expiry
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(max)
            .map(|&(_, id)| id)
            .collect();
        for &id in &expired {
            self.remove(id);
        }
        expired.len()
    }

    /// How many tokens are stored.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        debug_assert_eq!(self.by_hash.len(), self.hash_of.len());
        debug_assert_eq!(self.by_hash.len(), self.by_user.len());
        self.by_hash.len()
    }
}

#[async_trait]
impl TokenRepository for MemoryStore {
    async fn create(&self, new: NewApiToken) -> Result<ApiToken, TokenRepoError> {
        let mut s = self.write();
        let t = &new.token;
        if !s.users.contains_key(&t.user_id)
            || t.scope
                .is_some_and(|scope| !s.apps.contains_key(&scope.app_id))
        {
            return Err(TokenRepoError::NotFound);
        }
        if s.tokens.is_taken(&new.token_hash, t.id) {
            return Err(TokenRepoError::Conflict(t.id.to_string()));
        }
        // Purges a bounded batch of expired tokens first (see `tokens`).
        s.tokens
            .insert(new.token_hash, new.token.clone(), chrono::Utc::now());
        Ok(new.token)
    }

    async fn find_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<(ApiToken, AdminUser)>, TokenRepoError> {
        let s = self.read();
        Ok(s.tokens
            .get(token_hash)
            .and_then(|t| s.users.get(&t.user_id).map(|u| (t.clone(), u.user.clone()))))
    }

    async fn list_for_user(&self, user: AdminUserId) -> Result<Vec<ApiToken>, TokenRepoError> {
        let mut tokens: Vec<ApiToken> = self.read().tokens.of_user(user).cloned().collect();
        tokens.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        Ok(tokens)
    }

    async fn revoke(&self, user: AdminUserId, id: TokenId) -> Result<(), TokenRepoError> {
        let mut s = self.write();
        if s.tokens.get_by_id(id).is_some_and(|t| t.user_id == user) {
            s.tokens.remove(id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn token(user: AdminUserId, expires_at: Option<DateTime<Utc>>) -> (String, ApiToken) {
        let id = TokenId::new();
        let t = ApiToken {
            id,
            user_id: user,
            name: picloud_core::testkit::display_name("t"),
            scope: None,
            created_at: Utc::now(),
            expires_at,
        };
        (format!("hash-{id}"), t)
    }

    #[test]
    fn inserts_purge_a_bounded_batch_of_expired_tokens_and_keep_the_rest() {
        let now = Utc::now();
        let user = AdminUserId::new();
        let mut tokens = Tokens::default();
        let forever = token(user, None);
        let live = token(user, Some(now + Duration::hours(1)));
        tokens.insert(forever.0.clone(), forever.1.clone(), now);
        tokens.insert(live.0.clone(), live.1.clone(), now);
        for i in 0..(PURGE_BATCH + 10) {
            let (h, t) = token(user, Some(now - Duration::minutes(i as i64 + 1)));
            tokens.insert(h, t, now - Duration::days(1));
        }
        assert_eq!(tokens.len(), PURGE_BATCH + 12);
        let (h, t) = token(user, None);
        tokens.insert(h, t, now);
        // One batch went; the next insert takes the remaining ten.
        assert_eq!(tokens.len(), 13);
        let (h, t) = token(user, None);
        tokens.insert(h, t, now);
        assert_eq!(tokens.len(), 4);
        assert!(tokens.get(&forever.0).is_some());
        assert!(tokens.get(&live.0).is_some());
        assert_eq!(tokens.of_user(user).count(), 4);
        assert_eq!(tokens.of_user(AdminUserId::new()).count(), 0);
        assert_eq!(tokens.remove(live.1.id), Some(live.1));
        assert!(tokens.get(&live.0).is_none());
        assert_eq!(tokens.purge_expired(now + Duration::days(1), 100), 0);
    }
}
