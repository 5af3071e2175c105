//! The store's own API and schema: connecting by URL, migrations, readiness,
//! the named constraints and indexes, and conflict details.

mod support;

use picloud_core::domain::{InstanceRole, NewAdminUser, NewApp, Slug};
use picloud_core::ports::{AdminUserRepoError, AppRepoError};
use picloud_store_postgres::{DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, PostgresStore};

#[tokio::test]
async fn connect_by_url_migrate_twice_and_report_ready() {
    let Some(db) = support::fresh_db().await else {
        return;
    };
    // Connecting by URL (the DATABASE_URL database itself; nothing is written).
    let url = support::database_url().unwrap();
    let by_url = PostgresStore::connect(&url).await.expect("connect by URL");
    let options = by_url.pool().options();
    assert_eq!(options.get_max_connections(), DEFAULT_MAX_CONNECTIONS);
    assert_eq!(options.get_acquire_timeout(), DEFAULT_ACQUIRE_TIMEOUT);
    // Connections are tested only when suspect, not before every statement.
    assert!(!options.get_test_before_acquire());
    by_url.ping().await.expect("ping");
    assert!(by_url.is_ready().await);
    by_url.pool().close().await;
    assert!(!by_url.is_ready().await, "a closed pool is not ready");

    // Already migrated by the support code: running again is a no-op.
    let store = db.store.clone();
    store.migrate().await.expect("migrate is idempotent");
    store.migrate().await.expect("migrate is idempotent");
    assert!(store.is_ready().await);
    let stores = store.clone().into_stores();
    assert!(stores.apps.list().await.unwrap().is_empty());
    drop(stores);
    db.drop().await;
}

#[tokio::test]
async fn the_schema_has_named_constraints_and_the_member_index() {
    let Some(db) = support::fresh_db().await else {
        return;
    };
    let mut conn = db.connection().await;
    let constraints: Vec<String> = sqlx::query_scalar(
        "SELECT conname::text FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace \
         WHERE n.nspname = 'public' ORDER BY conname",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    for name in [
        "admin_users_pkey",
        "admin_users_username_key",
        "admin_users_instance_role_check",
        "apps_pkey",
        "apps_slug_key",
        "apps_slug_check",
        "app_members_pkey",
        "app_members_app_id_fkey",
        "app_members_user_id_fkey",
        "app_members_role_check",
        "api_tokens_pkey",
        "api_tokens_token_hash_key",
        "api_tokens_scope_check",
        "kv_pkey",
        "kv_app_id_fkey",
        "kv_usage_pkey",
        "kv_usage_app_id_fkey",
        "kv_usage_check",
        "env_vars_pkey",
        "env_vars_app_id_fkey",
        "env_vars_value_check",
        "app_data_keys_pkey",
        "app_data_keys_app_id_fkey",
        "domains_pkey",
        "domains_app_id_fkey",
    ] {
        assert!(
            constraints.iter().any(|c| c == name),
            "missing {name} in {constraints:?}"
        );
    }
    let cascades: Vec<String> = sqlx::query_scalar(
        "SELECT conname::text FROM pg_constraint WHERE contype = 'f' AND confdeltype = 'c' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        cascades,
        [
            "api_tokens_scope_app_id_fkey",
            "api_tokens_user_id_fkey",
            "app_data_keys_app_id_fkey",
            "app_members_app_id_fkey",
            "app_members_user_id_fkey",
            "domains_app_id_fkey",
            "env_vars_app_id_fkey",
            "invocations_script_id_fkey",
            "jobs_app_id_script_fkey",
            "kv_app_id_fkey",
            "kv_usage_app_id_fkey",
            "schedules_app_id_fkey",
            "schedules_app_id_script_fkey",
            "script_versions_script_id_fkey",
            "scripts_app_id_fkey",
            "subscriptions_app_id_fkey",
            "subscriptions_app_id_script_fkey"
        ]
    );
    let index: String = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'app_members_user_id_idx'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(index.contains("(user_id, app_id)"), "{index}");
    let index: String = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'domains_app_id_idx'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(index.contains("(app_id, hostname)"), "{index}");

    // The CHECK constraints refuse role names the domain does not know.
    let bad = sqlx::query(
        "INSERT INTO admin_users (id, username, instance_role) VALUES (gen_random_uuid(), 'x', 'root')",
    )
    .execute(&mut conn)
    .await
    .unwrap_err();
    assert_eq!(
        bad.as_database_error().and_then(|d| d.code()).as_deref(),
        Some("23514")
    );
    drop(conn);
    db.drop().await;
}

#[tokio::test]
async fn conflicts_name_what_is_taken() {
    let Some(db) = support::fresh_db().await else {
        return;
    };
    let stores = db.store.clone().into_stores();
    let app = stores
        .apps
        .create(NewApp::new(
            Slug::parse("taken").unwrap(),
            picloud_core::testkit::display_name("first"),
        ))
        .await
        .unwrap();
    let e = stores
        .apps
        .create(NewApp::new(
            app.slug.clone(),
            picloud_core::testkit::display_name("second"),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, AppRepoError::Conflict(s) if s == "taken"),
        "got {e:?}"
    );
    let mut same_id = NewApp::new(
        Slug::parse("other").unwrap(),
        picloud_core::testkit::display_name("third"),
    );
    same_id.id = app.id;
    let e = stores.apps.create(same_id).await.unwrap_err();
    assert!(
        matches!(&e, AppRepoError::Conflict(s) if *s == app.id.to_string()),
        "got {e:?}"
    );

    let user = stores
        .users
        .create(NewAdminUser::new(
            picloud_core::testkit::username("ann"),
            InstanceRole::Member,
        ))
        .await
        .unwrap();
    let e = stores
        .users
        .create(NewAdminUser::new(
            picloud_core::testkit::username("ann"),
            InstanceRole::Owner,
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, AdminUserRepoError::Conflict(s) if s == "ann"),
        "got {e:?}"
    );
    let mut same_id =
        NewAdminUser::new(picloud_core::testkit::username("bob"), InstanceRole::Member);
    same_id.id = user.id;
    let e = stores.users.create(same_id).await.unwrap_err();
    assert!(
        matches!(&e, AdminUserRepoError::Conflict(s) if *s == user.id.to_string()),
        "got {e:?}"
    );
    drop(stores);
    db.drop().await;
}

/// The purge of expired tokens (at every token creation) reads a partial
/// index on `expires_at`, not the whole table.
#[tokio::test]
async fn expired_tokens_are_found_through_an_index() {
    let Some(db) = support::fresh_db().await else {
        return;
    };
    let mut conn = db.connection().await;
    let index: String = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'api_tokens_expires_at_idx'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(index.contains("(expires_at)"), "{index}");
    assert!(index.contains("WHERE (expires_at IS NOT NULL)"), "{index}");
    drop(conn);
    db.drop().await;
}
