//! Conformance cases of the tokens port,
//! [`TokenRepository`](crate::ports::TokenRepository).

use std::collections::HashSet;

use crate::domain::{ApiToken, AppRole, InstanceRole, NewApiToken, TokenScope};
use crate::ids::{AdminUserId, AppId, TokenId};
use crate::ports::TokenRepoError;
use crate::stores::Stores;
use crate::testkit::Fixture;

/// The cases of this module, in order: `tokens => case, ...`, handed to
/// `$callback` after `$args`. `__conformance_ports!` calls it: the
/// conformance module re-exports exactly these functions, and
/// [`conformance_tests!`](crate::conformance_tests) runs exactly these.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tokens_cases {
    ($($callback:ident)::+; $($args:tt)*) => {
        $($callback)::+! { $($args)* tokens =>
            tokens_create_then_find_by_hash_with_user,
            tokens_find_sees_user_changes_at_once,
            tokens_need_existing_user_and_app,
            tokens_duplicate_hash_is_conflict,
            tokens_list_and_revoke,
            tokens_scoped_to_a_deleted_app_are_gone,
            tokens_expired_are_refused_then_purged_by_a_later_create,
        }
    };
}

fn new_token(user: AdminUserId, scope: Option<TokenScope>) -> NewApiToken {
    let now = crate::clock::now();
    NewApiToken {
        token: ApiToken {
            id: TokenId::new(),
            user_id: user,
            name: crate::testkit::display_name("ci"),
            scope,
            created_at: now,
            expires_at: Some(now + chrono::Duration::hours(1)),
        },
        token_hash: format!("hash-{}", uuid::Uuid::new_v4().simple()),
    }
}

/// A stored token is found by its hash, together with its user.
pub async fn tokens_create_then_find_by_hash_with_user(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let user = fx.user("tok", InstanceRole::Member).await;
    let app = fx.app("a").await;
    let scope = TokenScope {
        app_id: app.id,
        max_role: AppRole::Viewer,
    };
    let new = new_token(user.id, Some(scope));
    let stored = stores.tokens.create(new.clone()).await.unwrap();
    assert_eq!(stored, new.token);
    let (token, owner) = stores
        .tokens
        .find_by_hash(&new.token_hash)
        .await
        .unwrap()
        .expect("found");
    assert_eq!(token, new.token);
    assert_eq!(owner, user);
    assert_eq!(
        stores.tokens.find_by_hash("no-such-hash").await.unwrap(),
        None
    );
}

/// The user read with a token is current: deactivation shows at once.
pub async fn tokens_find_sees_user_changes_at_once(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let user = fx.user("tok", InstanceRole::Admin).await;
    let new = new_token(user.id, None);
    stores.tokens.create(new.clone()).await.unwrap();
    stores
        .users
        .update_guarded(user.id, None, Some(false), true)
        .await
        .unwrap();
    let (_, seen) = stores
        .tokens
        .find_by_hash(&new.token_hash)
        .await
        .unwrap()
        .unwrap();
    assert!(!seen.is_active);
}

/// A token for an unknown user or scoped to an unknown app is `NotFound`.
pub async fn tokens_need_existing_user_and_app(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let user = fx.user("tok", InstanceRole::Member).await;
    let e = stores
        .tokens
        .create(new_token(AdminUserId::new(), None))
        .await
        .unwrap_err();
    assert!(matches!(e, TokenRepoError::NotFound), "got {e:?}");
    let scope = TokenScope {
        app_id: AppId::new(),
        max_role: AppRole::Editor,
    };
    let e = stores
        .tokens
        .create(new_token(user.id, Some(scope)))
        .await
        .unwrap_err();
    assert!(matches!(e, TokenRepoError::NotFound), "got {e:?}");
}

/// Two tokens with the same hash: the second is `Conflict`.
pub async fn tokens_duplicate_hash_is_conflict(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let user = fx.user("tok", InstanceRole::Member).await;
    let first = new_token(user.id, None);
    stores.tokens.create(first.clone()).await.unwrap();
    let mut second = new_token(user.id, None);
    second.token_hash = first.token_hash.clone();
    let e = stores.tokens.create(second).await.unwrap_err();
    assert!(matches!(e, TokenRepoError::Conflict(_)), "got {e:?}");
}

/// Tokens list per user, newest first; revoke is idempotent and per user.
pub async fn tokens_list_and_revoke(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let ann = fx.user("ann", InstanceRole::Member).await;
    let bob = fx.user("bob", InstanceRole::Member).await;
    let mut old = new_token(ann.id, None);
    old.token.created_at -= chrono::Duration::minutes(5);
    let new = new_token(ann.id, None);
    let bobs = new_token(bob.id, None);
    for t in [&old, &new, &bobs] {
        stores.tokens.create(t.clone()).await.unwrap();
    }
    let listed = stores.tokens.list_for_user(ann.id).await.unwrap();
    assert_eq!(listed, vec![new.token.clone(), old.token.clone()]);
    // Bob cannot revoke Ann's token.
    stores.tokens.revoke(bob.id, new.token.id).await.unwrap();
    assert!(
        stores
            .tokens
            .find_by_hash(&new.token_hash)
            .await
            .unwrap()
            .is_some()
    );
    stores.tokens.revoke(ann.id, new.token.id).await.unwrap();
    stores.tokens.revoke(ann.id, new.token.id).await.unwrap();
    assert_eq!(
        stores.tokens.find_by_hash(&new.token_hash).await.unwrap(),
        None
    );
    assert_eq!(
        stores.tokens.list_for_user(ann.id).await.unwrap(),
        vec![old.token]
    );
}

/// Deleting an app deletes the tokens scoped to it, and only those.
pub async fn tokens_scoped_to_a_deleted_app_are_gone(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let user = fx.user("tok", InstanceRole::Owner).await;
    let app = fx.app("a").await;
    let scoped = new_token(
        user.id,
        Some(TokenScope {
            app_id: app.id,
            max_role: AppRole::Editor,
        }),
    );
    let plain = new_token(user.id, None);
    stores.tokens.create(scoped.clone()).await.unwrap();
    stores.tokens.create(plain.clone()).await.unwrap();
    stores.apps.delete(app.id).await.unwrap();
    assert_eq!(
        stores
            .tokens
            .find_by_hash(&scoped.token_hash)
            .await
            .unwrap(),
        None
    );
    assert!(
        stores
            .tokens
            .find_by_hash(&plain.token_hash)
            .await
            .unwrap()
            .is_some()
    );
}

/// An expired token is never taken for a live one: `find_by_hash` returns
/// it with its past expiry (the caller refuses it) or not at all. The next
/// `create`, by any user, purges it: it is gone from `find_by_hash` and from
/// the listing, while live and non-expiring tokens stay.
pub async fn tokens_expired_are_refused_then_purged_by_a_later_create(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let ann = fx.user("ann", InstanceRole::Member).await;
    let bob = fx.user("bob", InstanceRole::Member).await;
    let now = crate::clock::now();
    let mut expired = Vec::new();
    for minutes in [1, 30, 600] {
        let mut t = new_token(ann.id, None);
        t.token.created_at = now - chrono::Duration::hours(13);
        t.token.expires_at = Some(now - chrono::Duration::minutes(minutes));
        stores.tokens.create(t.clone()).await.unwrap();
        expired.push(t);
    }
    let live = new_token(ann.id, None);
    let mut forever = new_token(ann.id, None);
    forever.token.expires_at = None;
    for t in [&live, &forever] {
        stores.tokens.create(t.clone()).await.unwrap();
    }
    for t in &expired {
        if let Some((found, _)) = stores.tokens.find_by_hash(&t.token_hash).await.unwrap() {
            assert!(
                found.expires_at.is_some_and(|at| at <= crate::clock::now()),
                "an expired token read back as live: {found:?}"
            );
        }
    }
    // Another user's token creation purges them.
    stores.tokens.create(new_token(bob.id, None)).await.unwrap();
    for t in &expired {
        assert_eq!(
            stores.tokens.find_by_hash(&t.token_hash).await.unwrap(),
            None,
            "expired {:?} was not purged",
            t.token.expires_at
        );
    }
    let listed = stores.tokens.list_for_user(ann.id).await.unwrap();
    let ids: HashSet<TokenId> = listed.iter().map(|t| t.id).collect();
    assert_eq!(
        ids,
        HashSet::from([live.token.id, forever.token.id]),
        "{listed:?}"
    );
}
