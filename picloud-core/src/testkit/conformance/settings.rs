//! The settings port's cases.

use crate::domain::PublicErrors;
use crate::ids::AppId;
use crate::limits::Limits;
use crate::ports::SettingsRepoError;
use crate::stores::Stores;
use crate::testkit::Fixture;

/// The cases of this port, in order.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_settings_cases {
    ($($callback:ident)::+; $($args:tt)*) => {
        $($callback)::+! { $($args)* settings =>
            settings_app_limits_round_trip,
            settings_go_with_their_app,
            settings_public_errors_round_trip_and_go_with_their_app,
            settings_egress_hosts_round_trip_and_go_with_their_app,
        }
    };
}

/// Per-app limits overrides are stored (three fields off their defaults),
/// replaced and cleared.
pub async fn settings_app_limits_round_trip(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = fx.app("a").await;
    assert_eq!(stores.settings.app_limits(app.id).await.unwrap(), None);
    let tight = Limits {
        wall_clock: std::time::Duration::from_millis(500),
        max_operations: 12_345,
        max_output_bytes: 0,
        ..Limits::default()
    };
    stores
        .settings
        .set_app_limits(app.id, Some(tight))
        .await
        .unwrap();
    assert_eq!(
        stores.settings.app_limits(app.id).await.unwrap(),
        Some(tight)
    );
    let loose = Limits {
        wall_clock: std::time::Duration::from_secs(5),
        ..Limits::default()
    };
    stores
        .settings
        .set_app_limits(app.id, Some(loose))
        .await
        .unwrap();
    assert_eq!(
        stores.settings.app_limits(app.id).await.unwrap(),
        Some(loose)
    );
    stores.settings.set_app_limits(app.id, None).await.unwrap();
    assert_eq!(stores.settings.app_limits(app.id).await.unwrap(), None);
    let e = stores
        .settings
        .set_app_limits(AppId::new(), Some(Limits::default()))
        .await
        .unwrap_err();
    assert!(matches!(e, SettingsRepoError::NotFound), "got {e:?}");
}

/// An unknown app has no settings, and none can be set on it; a deleted
/// app's settings go with it.
pub async fn settings_go_with_their_app(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let a = fx.app("a").await;
    let b = fx.app("b").await;
    let tight = Limits {
        max_operations: 777,
        ..Limits::default()
    };
    stores
        .settings
        .set_app_limits(a.id, Some(tight))
        .await
        .unwrap();
    // One app's settings are its own.
    assert_eq!(stores.settings.app_limits(b.id).await.unwrap(), None);
    assert_eq!(stores.settings.app_limits(a.id).await.unwrap(), Some(tight));
    assert_eq!(
        stores.settings.app_limits(AppId::new()).await.unwrap(),
        None
    );
    let e = stores
        .settings
        .set_app_limits(AppId::new(), None)
        .await
        .unwrap_err();
    assert!(matches!(e, SettingsRepoError::NotFound), "got {e:?}");
    // Deleting the app drops its settings.
    stores.apps.delete(a.id).await.unwrap();
    assert_eq!(stores.settings.app_limits(a.id).await.unwrap(), None);
    let e = stores
        .settings
        .set_app_limits(a.id, Some(tight))
        .await
        .unwrap_err();
    assert!(matches!(e, SettingsRepoError::NotFound), "got {e:?}");
}

/// Public error detail defaults to `detailed`, is set per app (another app
/// keeps its own), and goes with its app; an unknown app is `NotFound`.
pub async fn settings_public_errors_round_trip_and_go_with_their_app(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (app, other) = (fx.app("a").await, fx.app("b").await);
    let read = |id| {
        let stores = stores.clone();
        async move { stores.settings.public_errors(id).await.unwrap() }
    };
    assert_eq!(read(app.id).await, PublicErrors::Detailed);
    stores
        .settings
        .set_public_errors(app.id, PublicErrors::Generic)
        .await
        .unwrap();
    assert_eq!(read(app.id).await, PublicErrors::Generic);
    assert_eq!(read(other.id).await, PublicErrors::Detailed);
    stores
        .settings
        .set_public_errors(app.id, PublicErrors::Detailed)
        .await
        .unwrap();
    assert_eq!(read(app.id).await, PublicErrors::Detailed);
    stores
        .settings
        .set_public_errors(app.id, PublicErrors::Generic)
        .await
        .unwrap();
    stores.apps.delete(app.id).await.unwrap();
    assert_eq!(read(app.id).await, PublicErrors::Detailed);
    let err = stores
        .settings
        .set_public_errors(AppId::new(), PublicErrors::Generic)
        .await
        .unwrap_err();
    assert!(matches!(err, SettingsRepoError::NotFound), "{err:?}");
}

/// An app's allowlist of outbound hosts is `None` until set, kept in its
/// order, replaced, cleared, separate per app, and gone with its app.
pub async fn settings_egress_hosts_round_trip_and_go_with_their_app(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let a = fx.app("a").await;
    let b = fx.app("b").await;
    assert_eq!(stores.settings.egress_hosts(a.id).await.unwrap(), None);
    let hosts = vec!["api.example.com".to_owned(), "*.stripe.com".to_owned()];
    stores
        .settings
        .set_egress_hosts(a.id, Some(hosts.clone()))
        .await
        .unwrap();
    assert_eq!(
        stores.settings.egress_hosts(a.id).await.unwrap(),
        Some(hosts)
    );
    assert_eq!(stores.settings.egress_hosts(b.id).await.unwrap(), None);
    // An empty list is kept as such: no host at all.
    stores
        .settings
        .set_egress_hosts(a.id, Some(Vec::new()))
        .await
        .unwrap();
    assert_eq!(
        stores.settings.egress_hosts(a.id).await.unwrap(),
        Some(Vec::new())
    );
    stores.settings.set_egress_hosts(a.id, None).await.unwrap();
    assert_eq!(stores.settings.egress_hosts(a.id).await.unwrap(), None);
    stores
        .settings
        .set_egress_hosts(b.id, Some(vec!["10.0.0.5".to_owned()]))
        .await
        .unwrap();
    stores.apps.delete(b.id).await.unwrap();
    assert_eq!(stores.settings.egress_hosts(b.id).await.unwrap(), None);
    let e = stores
        .settings
        .set_egress_hosts(AppId::new(), None)
        .await
        .unwrap_err();
    assert!(matches!(e, SettingsRepoError::NotFound), "got {e:?}");
}
