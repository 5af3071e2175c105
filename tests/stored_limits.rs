//! An app's stored limits override that this version cannot read is an
//! error naming the app, never a silent fall-back to the defaults (which
//! may be higher than what the app was given).
//!
//! The port is typed (`Option<Limits>`), so only a store that keeps text
//! can hold an unreadable override: PostgreSQL, written by another version
//! of PiCloud. The test writes that text with plain SQL.

use std::sync::Arc;

use picloud_core::AppService;
use picloud_core::executor::{ExecutorConfig, LazyExecutor, Limits};
use picloud_core::ports::SettingsRepoError;
use picloud_core::scripts::{ScriptError, ScriptService};

#[tokio::test]
async fn an_unreadable_override_stops_that_app_only_until_it_is_set_again() {
    let Some(db) = picloud_store_postgres::testing::fresh_db().await else {
        return;
    };
    let stores = db.store.clone().into_stores();
    let owner = picloud_core::testkit::Fixture::new(stores.clone())
        .owner()
        .await;
    let apps = AppService::new(stores.clone());
    let shop = apps.create(&owner, "shop", "Shop").await.unwrap().app;
    apps.create(&owner, "blog", "Blog").await.unwrap();
    let executor = Arc::new(LazyExecutor::new(ExecutorConfig::default()));
    let deployer = ScriptService::new(stores.clone(), executor.clone());
    for app in ["shop", "blog"] {
        deployer
            .deploy(&owner, app, "hello", "\"hi\"".to_owned())
            .await
            .unwrap();
    }
    // A newer version wrote a field this one does not know.
    sqlx::query("UPDATE apps SET limits = $2 WHERE id = $1")
        .bind(shop.id.as_uuid())
        .bind(r#"{"wall_clock_ms":500,"future_knob":1}"#)
        .execute(db.store.pool())
        .await
        .unwrap();
    // The port says it cannot read it, rather than answering `None`.
    match stores.settings.app_limits(shop.id).await {
        Err(SettingsRepoError::Unreadable(reason)) => {
            assert!(reason.contains("future_knob"), "{reason}");
        }
        other => panic!("expected Unreadable, got {other:?}"),
    }

    // A node starting now: the shop's scripts are not served, the blog's are.
    let node = ScriptService::new(stores.clone(), executor);
    node.warm().await.unwrap();
    assert!(node.live("blog", "hello").await.is_ok());
    assert!(node.live("shop", "hello").await.is_err());
    match node.limits(&owner, "shop").await {
        Err(e @ ScriptError::StoredLimits { app, .. }) => {
            assert_eq!(app, shop.id);
            assert!(e.to_string().contains("future_knob"), "{e}");
            assert_eq!(
                picloud_core::ServiceError::kind(&e),
                picloud_core::ErrorKind::Internal
            );
        }
        other => panic!("expected StoredLimits, got {other:?}"),
    }

    // Setting the limits again repairs the app.
    node.set_limits(&owner, "shop", Limits::default())
        .await
        .unwrap();
    assert_eq!(
        node.limits(&owner, "shop").await.unwrap(),
        Limits::default()
    );
    assert!(node.live("shop", "hello").await.is_ok());
    db.drop().await;
}
