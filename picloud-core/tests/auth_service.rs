//! `AuthService` over the memory store: expired tokens and login backoff.

use std::net::IpAddr;

use chrono::{Duration, Utc};
use picloud_core::auth::throttle::{LoginThrottle, ThrottleConfig};
use picloud_core::auth::{AuthError, AuthService, hash_password, hash_token};
use picloud_core::domain::{ApiToken, InstanceRole, NewAdminUser, NewApiToken};
use picloud_core::ids::TokenId;
use picloud_core::{AdminUser, Stores};
use picloud_store_memory::MemoryStore;

async fn user_with_password(stores: &Stores, name: &str, password: &str) -> AdminUser {
    let mut new = NewAdminUser::new(picloud_core::testkit::username(name), InstanceRole::Member);
    new.password_hash = Some(hash_password(password).unwrap());
    stores.users.create(new).await.unwrap()
}

#[tokio::test]
async fn an_expired_token_is_not_authenticated_and_a_live_one_is() {
    let stores = MemoryStore::new().into_stores();
    let auth = AuthService::new(stores.clone());
    let user = user_with_password(&stores, "mia", "correct horse battery").await;
    let now = picloud_core::clock::now();
    for (secret, expires_at) in [
        ("pc_expired", Some(now - Duration::seconds(1))),
        ("pc_live", Some(now + Duration::hours(1))),
    ] {
        stores
            .tokens
            .create(NewApiToken {
                token: ApiToken {
                    id: TokenId::new(),
                    user_id: user.id,
                    name: picloud_core::testkit::display_name(secret),
                    scope: None,
                    created_at: now - Duration::hours(1),
                    expires_at,
                },
                token_hash: hash_token(secret),
            })
            .await
            .unwrap();
    }
    let err = auth.authenticate("pc_expired").await.unwrap_err();
    assert!(matches!(err, AuthError::Unauthenticated), "{err:?}");
    assert_eq!(auth.authenticate("pc_live").await.unwrap().user_id, user.id);
    // A login creates a token, which purges the expired one.
    let (issued, _) = auth.login("mia", "correct horse battery").await.unwrap();
    assert!(issued.record.expires_at.is_some_and(|t| t > Utc::now()));
    assert_eq!(
        stores
            .tokens
            .find_by_hash(&hash_token("pc_expired"))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn wrong_passwords_are_throttled_per_client_not_per_user() {
    let stores = MemoryStore::new().into_stores();
    let auth = AuthService::with_throttle(
        stores.clone(),
        LoginThrottle::new(ThrottleConfig {
            free_failures: 3,
            ..ThrottleConfig::default()
        }),
    );
    user_with_password(&stores, "mia", "correct horse battery").await;
    let attacker: IpAddr = "127.0.0.66".parse().unwrap();
    let home: IpAddr = "127.0.0.2".parse().unwrap();
    for _ in 0..3 {
        let err = auth
            .login_from(Some(attacker), "mia", "wrong password")
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::Unauthenticated), "{err:?}");
    }
    // The right password from the throttled client is refused too, at once.
    let started = std::time::Instant::now();
    let err = auth
        .login_from(Some(attacker), "mia", "correct horse battery")
        .await
        .unwrap_err();
    let AuthError::Throttled { retry_after } = err else {
        panic!("{err:?}");
    };
    assert!(retry_after <= std::time::Duration::from_secs(1));
    assert!(started.elapsed() < std::time::Duration::from_millis(500));
    assert_eq!(err.to_string(), "too many failed logins; try again in 1 s");
    // Mia, from her own address, is not locked out; an unknown user is
    // throttled like a known one.
    auth.login_from(Some(home), "mia", "correct horse battery")
        .await
        .unwrap();
    for _ in 0..3 {
        let _ = auth
            .login_from(Some(attacker), "nobody", "guess guess")
            .await;
    }
    let err = auth
        .login_from(Some(attacker), "nobody", "guess guess")
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::Throttled { .. }), "{err:?}");
}

/// Token management is `ManageOwnTokens`: an inactive caller is not
/// authenticated (401) on every token call alike, and a scoped token is
/// forbidden (403) on every one alike.
#[tokio::test]
async fn token_calls_answer_401_when_inactive_and_403_when_scoped_everywhere() {
    use picloud_core::{AppRole, NewApp, Principal, Slug, TokenScope};

    let stores = MemoryStore::new().into_stores();
    let auth = AuthService::new(stores.clone());
    let user = user_with_password(&stores, "ivy", "correct horse battery").await;
    let app = stores
        .apps
        .create(NewApp::new(
            Slug::parse("shop").unwrap(),
            picloud_core::testkit::display_name("Shop"),
        ))
        .await
        .unwrap();
    let mut inactive = Principal::of(&user);
    inactive.is_active = false;
    let scoped = Principal::of(&user).scoped(TokenScope {
        app_id: app.id,
        max_role: AppRole::Viewer,
    });
    for (principal, expected) in [(&inactive, "Unauthenticated"), (&scoped, "Forbidden")] {
        let issue = auth
            .issue_token(principal, "ci", None, None, None)
            .await
            .unwrap_err();
        let list = auth.list_tokens(principal).await.unwrap_err();
        let revoke = auth
            .revoke_token(principal, TokenId::new())
            .await
            .unwrap_err();
        for err in [issue, list, revoke] {
            assert_eq!(format!("{err:?}"), expected, "{principal:?}");
        }
    }
    // An active, unscoped caller manages their tokens.
    let active = Principal::of(&user);
    let issued = auth
        .issue_token(&active, "ci", None, None, None)
        .await
        .unwrap();
    assert_eq!(auth.list_tokens(&active).await.unwrap().len(), 1);
    auth.revoke_token(&active, issued.record.id).await.unwrap();
}
