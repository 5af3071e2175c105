//! The point reads on every request's path (token, app, role, user) are
//! coalesced under load: concurrent lookups of one kind share a statement.
//! These tests hold them to what a statement of their own would give: never
//! stale, one key's trouble never another's, and no lookup left waiting.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use picloud_core::domain::{ApiToken, AppRole, InstanceRole, NewApiToken};
use picloud_core::ids::{AdminUserId, TokenId};
use picloud_core::ports::{AppRepoError, AuthzRepoError};
use picloud_core::testkit::Fixture;
use tokio::task::JoinSet;

fn new_token(user: AdminUserId) -> NewApiToken {
    let now = picloud_core::clock::now();
    NewApiToken {
        token: ApiToken {
            id: TokenId::new(),
            user_id: user,
            name: picloud_core::testkit::display_name("hot"),
            scope: None,
            created_at: now,
            expires_at: None,
        },
        token_hash: format!("hash-{}", uuid::Uuid::new_v4().simple()),
    }
}

/// While other lookups keep the token statement busy (so lookups are
/// batched), a token revoked and then looked up is gone, and a user
/// deactivated and then looked up is inactive: the lookup never rides on a
/// statement that started before it was asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revocation_or_deactivation_is_seen_by_the_next_lookup_under_load() {
    let Some(db) = support::fresh_db().await else {
        return;
    };
    let stores = db.store.clone().into_stores();
    let fx = Fixture::new(stores.clone());
    let busy = fx.user("busy", InstanceRole::Member).await;
    let busy_token = stores.tokens.create(new_token(busy.id)).await.unwrap();
    let busy_hash = format!("hash-busy-{}", busy_token.id);
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = JoinSet::new();
    for _ in 0..16 {
        let (stores, stop, hash) = (stores.clone(), stop.clone(), busy_hash.clone());
        load.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                stores.tokens.find_by_hash(&hash).await.expect("lookup");
                stores.users.get(busy.id).await.expect("users.get");
            }
        });
    }
    for round in 0..20 {
        let user = fx.user(&format!("u{round}"), InstanceRole::Member).await;
        let new = new_token(user.id);
        let hash = new.token_hash.clone();
        let token = stores.tokens.create(new).await.unwrap();
        assert!(stores.tokens.find_by_hash(&hash).await.unwrap().is_some());

        stores
            .users
            .update_guarded(user.id, None, Some(false), true)
            .await
            .unwrap();
        let (_, found) = stores.tokens.find_by_hash(&hash).await.unwrap().unwrap();
        assert!(!found.is_active, "round {round}: deactivation not seen");
        assert!(!stores.users.get(user.id).await.unwrap().unwrap().is_active);

        stores.tokens.revoke(user.id, token.id).await.unwrap();
        assert!(
            stores.tokens.find_by_hash(&hash).await.unwrap().is_none(),
            "round {round}: revocation not seen"
        );
    }
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = load.join_next().await {
        r.unwrap();
    }
    drop(stores);
    db.drop().await;
}

/// Concurrent lookups of many keys each get their own answer: present keys
/// their row, absent keys nothing, a slug with NUL (which PostgreSQL refuses
/// as a parameter) nothing, without failing the others of its batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_lookup_of_a_batch_gets_its_own_answer() {
    let Some(db) = support::fresh_db().await else {
        return;
    };
    let stores = db.store.clone().into_stores();
    let fx = Fixture::new(stores.clone());
    let user = fx.user("m", InstanceRole::Member).await;
    let mut apps = Vec::new();
    for i in 0..8 {
        let app = fx.app(&format!("a{i}")).await;
        if i % 2 == 0 {
            stores
                .members
                .try_insert(app.id, user.id, AppRole::Viewer)
                .await
                .unwrap();
        }
        apps.push(app);
    }
    let mut tasks = JoinSet::new();
    for t in 0..32 {
        let (stores, apps) = (stores.clone(), apps.clone());
        tasks.spawn(async move {
            for round in 0..20 {
                let app = &apps[(t + round) % apps.len()];
                let found = stores.apps.find_by_slug(app.slug.as_str()).await.unwrap();
                assert_eq!(found.as_ref(), Some(app));
                assert_eq!(stores.apps.get(app.id).await.unwrap().as_ref(), Some(app));
                let role = stores.authz.app_role(app.id, user.id).await.unwrap();
                let member = apps.iter().position(|a| a.id == app.id).unwrap() % 2 == 0;
                assert_eq!(role, member.then_some(AppRole::Viewer));
                assert_eq!(stores.apps.find_by_slug("no-such-app").await.unwrap(), None);
                assert_eq!(stores.apps.find_by_slug("a\0b").await.unwrap(), None);
                assert_eq!(
                    stores
                        .apps
                        .get(picloud_core::ids::AppId::new())
                        .await
                        .unwrap(),
                    None
                );
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    drop(stores);
    db.drop().await;
}

/// A row that does not decode fails the lookups of its key only: the
/// lookups of other keys, batched with them, still get their rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_row_that_does_not_decode_fails_only_its_own_lookups() {
    let Some(db) = support::fresh_db().await else {
        return;
    };
    let stores = db.store.clone().into_stores();
    let fx = Fixture::new(stores.clone());
    let user = fx.user("m", InstanceRole::Member).await;
    let (good, bad) = (fx.app("good").await, fx.app("bad").await);
    for app in [&good, &bad] {
        stores
            .members
            .try_insert(app.id, user.id, AppRole::Editor)
            .await
            .unwrap();
    }
    let mut conn = db.connection().await;
    for sql in [
        "ALTER TABLE apps DROP CONSTRAINT apps_slug_check",
        "ALTER TABLE app_members DROP CONSTRAINT app_members_role_check",
    ] {
        sqlx::query(sql).execute(&mut conn).await.expect(sql);
    }
    sqlx::query("UPDATE apps SET slug = 'Not A Slug' WHERE id = $1")
        .bind(bad.id.as_uuid())
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("UPDATE app_members SET role = 'superuser' WHERE app_id = $1")
        .bind(bad.id.as_uuid())
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);
    let mut tasks = JoinSet::new();
    for _ in 0..16 {
        let (stores, good, bad) = (stores.clone(), good.clone(), bad.clone());
        tasks.spawn(async move {
            for _ in 0..20 {
                let e = stores.apps.get(bad.id).await.unwrap_err();
                assert!(matches!(e, AppRepoError::Backend(_)), "got {e:?}");
                assert_eq!(stores.apps.get(good.id).await.unwrap(), Some(good.clone()));
                let e = stores.authz.app_role(bad.id, user.id).await.unwrap_err();
                assert!(matches!(e, AuthzRepoError::Backend(_)), "got {e:?}");
                assert_eq!(
                    stores.authz.app_role(good.id, user.id).await.unwrap(),
                    Some(AppRole::Editor)
                );
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    drop(stores);
    db.drop().await;
}

/// A store outlives the runtime its lookups ran on: when that runtime shuts
/// down with lookups in flight, lookups on the next runtime are answered
/// (none waits for a flusher that died with the first runtime).
#[test]
fn lookups_outlive_the_runtime_that_started_them() {
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    };
    let first = runtime();
    let Some((db, app)) = first.block_on(async {
        let db = support::fresh_db().await?;
        let app = Fixture::new(db.store.clone().into_stores()).app("a").await;
        Some((db, app))
    }) else {
        return;
    };
    let stores = db.store.clone().into_stores();
    for _ in 0..32 {
        let stores = stores.clone();
        first.spawn(async move {
            loop {
                let _ = stores.apps.get(app.id).await;
            }
        });
    }
    std::thread::sleep(Duration::from_millis(100));
    first.shutdown_background();

    let second = runtime();
    second.block_on(async {
        for _ in 0..10 {
            let found = tokio::time::timeout(support::NO_HANG, stores.apps.get(app.id))
                .await
                .expect("a lookup after the first runtime ended hung")
                .expect("a lookup after the first runtime ended failed");
            assert_eq!(found.map(|a| a.id), Some(app.id));
        }
        drop(stores);
        db.drop().await;
    });
}
