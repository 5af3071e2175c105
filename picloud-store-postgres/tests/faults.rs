//! Fault tolerance: killed connections, an unreachable server, a dropped
//! database, and rows that do not decode. Nothing may panic or hang; every
//! failure must surface as the port's `Backend` error.

mod support;

use std::future::Future;
use std::time::{Duration, Instant};

use picloud_core::domain::{AppRole, InstanceRole};
use picloud_core::ids::{AdminUserId, AppId};
use picloud_core::ports::{AdminUserRepoError, AppMembersRepoError, AppRepoError, AuthzRepoError};
use picloud_core::testkit::Fixture;
use picloud_core::{Capability, Principal, Stores};
use picloud_store_postgres::{
    DEFAULT_ACQUIRE_TIMEOUT, PgPoolOptions, PostgresStore, READ_CONNECTIONS, TEST_IDLE_AFTER,
};
use sqlx::{Connection, PgConnection};
use tokio::task::JoinSet;

/// Nothing listens here.
const CLOSED_PORT_URL: &str = "postgres://postgres@127.0.0.1:1/postgres";

/// Awaits `fut`, failing the test if it takes longer than `bound`.
async fn bounded<T>(bound: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(bound, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for more than {bound:?}"))
}

/// Terminates every backend on the current database but this connection's,
/// then waits until they are really gone.
async fn terminate_all_others(conn: &mut PgConnection) -> usize {
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("terminate backends");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut *conn)
        .await
        .expect("count backends");
        if left == 0 {
            return killed.len();
        }
        assert!(
            Instant::now() < deadline,
            "{left} backends survived pg_terminate_backend"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A spread of reads and writes over every port; all must succeed.
async fn exercise(stores: &Stores, fx: &Fixture, app: AppId, user: AdminUserId, round: usize) {
    let a = stores.apps.get(app).await.expect("apps.get");
    assert!(a.is_some());
    stores
        .users
        .get(user)
        .await
        .expect("users.get")
        .expect("user exists");
    let role = stores
        .authz
        .app_role(app, user)
        .await
        .expect("authz.app_role");
    assert_eq!(role, Some(AppRole::Editor));
    let other = fx.user(&format!("r{round}"), InstanceRole::Member).await;
    let row = stores
        .members
        .try_insert(app, other.id, AppRole::Viewer)
        .await
        .expect("members.try_insert");
    assert!(row.is_some());
    let listed = stores
        .members
        .list_for_app_enriched(app)
        .await
        .expect("list");
    assert_eq!(listed.len(), round + 2);
}

/// After every connection of the store is terminated by the server, the next
/// operations all succeed, with no ping before every statement (sqlx's
/// `test_before_acquire` is off): a read that meets a dead connection notes
/// the break and runs once more on another connection, and the pool tests
/// the connections that were idle through the break before handing them
/// out: once a read has met a dead connection, no operation fails, writes
/// included.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn terminated_connections_are_replaced_without_a_failed_operation() {
    let Some(db) = support::fresh_db().await else {
        return;
    };
    assert!(
        !db.store.pool().options().get_test_before_acquire(),
        "the store's default pool must not ping before every statement"
    );
    let stores = db.store.clone().into_stores();
    let fx = Fixture::new(stores.clone());
    let user = fx.user("m", InstanceRole::Member).await;
    let app = fx.app("a").await;
    stores
        .members
        .try_insert(app.id, user.id, AppRole::Editor)
        .await
        .unwrap();

    let mut admin = db.connection().await;
    for round in 0..3 {
        // Fill the pool with several open connections.
        let mut tasks = JoinSet::new();
        for _ in 0..16 {
            let authz = stores.authz.clone();
            tasks.spawn(async move { authz.app_role(app.id, user.id).await });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap().expect("warm-up");
        }
        let open = db.store.pool().size();
        assert!(open >= 1, "the pool holds connections");

        let killed = terminate_all_others(&mut admin).await;
        assert!(killed >= 1, "round {round}: nothing to terminate");

        bounded(support::NO_HANG, "ping", db.store.ping())
            .await
            .expect("ping after termination");
        bounded(
            support::NO_HANG,
            "ops",
            exercise(&stores, &fx, app.id, user.id, round),
        )
        .await;

        // Concurrent operations after another termination: none fails either.
        terminate_all_others(&mut admin).await;
        let mut tasks = JoinSet::new();
        for _ in 0..20 {
            let (members, authz) = (stores.members.clone(), stores.authz.clone());
            tasks.spawn(async move {
                members
                    .list_for_app_enriched(app.id)
                    .await
                    .expect("list after termination");
                authz
                    .app_role(app.id, user.id)
                    .await
                    .expect("app_role after termination")
            });
        }
        while let Some(r) = bounded(support::NO_HANG, "join", tasks.join_next()).await {
            assert_eq!(r.unwrap(), Some(AppRole::Editor));
        }
    }
    let _ = admin.close().await;
    drop(stores);
    db.drop().await;
}

/// A restart takes longer than `TEST_IDLE_AFTER`: every connection idle
/// through it is tested before use, so even a write that is the first
/// statement after it succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_first_after_a_restart_length_pause_succeeds() {
    let Some(db) = support::fresh_db().await else {
        return;
    };
    let stores = db.store.clone().into_stores();
    let fx = Fixture::new(stores.clone());
    let app = fx.app("a").await;
    let mut admin = db.connection().await;
    for round in 0..2 {
        // Pooled connections (writes) and read-lane connections (reads).
        let mut tasks = JoinSet::new();
        for i in 0..12 {
            let (fx, stores) = (fx.clone(), stores.clone());
            tasks.spawn(async move {
                let user = fx
                    .user(&format!("w{round}-{i}"), InstanceRole::Member)
                    .await;
                stores.users.get(user.id).await.expect("users.get");
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        assert!(terminate_all_others(&mut admin).await >= 1);
        tokio::time::sleep(TEST_IDLE_AFTER + Duration::from_millis(100)).await;

        let user = bounded(
            support::NO_HANG,
            "create",
            stores.users.create(picloud_core::domain::NewAdminUser::new(
                picloud_core::testkit::username(format!("after-{round}")),
                InstanceRole::Member,
            )),
        )
        .await
        .expect("the first write after the pause");
        stores
            .members
            .try_insert(app.id, user.id, AppRole::Viewer)
            .await
            .expect("the second write");
        assert_eq!(
            stores
                .authz
                .app_role(app.id, user.id)
                .await
                .expect("a read"),
            Some(AppRole::Viewer)
        );
    }
    let _ = admin.close().await;
    drop(stores);
    db.drop().await;
}

/// The point reads on every request's path (token, app, role, user) use at
/// most `READ_CONNECTIONS` connections of their own, however many run at
/// once, and leave the pool alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn point_reads_use_at_most_the_read_connections() {
    let Some(db) = support::fresh_db().await else {
        return;
    };
    let stores = db.store.clone().into_stores();
    let fx = Fixture::new(stores.clone());
    let user = fx.user("m", InstanceRole::Member).await;
    let app = fx.app("a").await;
    let pooled = db.store.pool().size();
    let mut tasks = JoinSet::new();
    for _ in 0..64 {
        let (stores, slug) = (stores.clone(), app.slug.to_string());
        tasks.spawn(async move {
            for _ in 0..10 {
                stores
                    .authz
                    .app_role(app.id, user.id)
                    .await
                    .expect("app_role");
                let found = stores.apps.find_by_slug(&slug).await.expect("find_by_slug");
                assert!(found.is_some());
                stores.users.get(user.id).await.expect("users.get");
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    assert_eq!(db.store.pool().size(), pooled, "the pool did not grow");
    let mut admin = db.connection().await;
    let backends: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    let bound = i64::from(pooled + READ_CONNECTIONS);
    assert!(
        backends <= bound,
        "{backends} connections, more than the pool's {pooled} and {READ_CONNECTIONS} reads"
    );
    let _ = admin.close().await;
    drop(stores);
    db.drop().await;
}

/// `connect` to a port where nothing listens fails, no later than the acquire
/// timeout (plus slack), and does not panic.
#[tokio::test]
async fn connecting_to_a_closed_port_fails_within_the_acquire_timeout() {
    let started = Instant::now();
    let result = bounded(
        DEFAULT_ACQUIRE_TIMEOUT + Duration::from_secs(5),
        "connect",
        PostgresStore::connect(CLOSED_PORT_URL),
    )
    .await;
    let elapsed = started.elapsed();
    assert!(result.is_err(), "connected to a closed port?");
    assert!(
        elapsed <= DEFAULT_ACQUIRE_TIMEOUT + Duration::from_secs(2),
        "took {elapsed:?}"
    );

    // With a shorter acquire timeout, correspondingly sooner.
    let started = Instant::now();
    let options = CLOSED_PORT_URL.parse().unwrap();
    let pool_options = PostgresStore::pool_options().acquire_timeout(Duration::from_millis(300));
    let result = PostgresStore::connect_with(pool_options, options).await;
    assert!(result.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

/// Every port answers `Backend` (not a panic, not a hang) when the server
/// cannot be reached, and the store reports itself not ready.
#[tokio::test]
async fn operations_on_an_unreachable_server_are_backend_errors() {
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(300))
        .connect_lazy(CLOSED_PORT_URL)
        .unwrap();
    let store = PostgresStore::from_pool(pool);
    assert_backend_everywhere(&store).await;
}

/// The same when the database itself disappears under a working store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_on_a_dropped_database_are_backend_errors() {
    let Some(db) = support::fresh_db().await else {
        return;
    };
    let store = db.store.clone();
    assert!(store.is_ready().await);
    let stores = store.clone().into_stores();
    Fixture::new(stores).app("a").await;
    let url = support::database_url().unwrap();
    let mut admin = support::admin(&url).await;
    support::drop_database(&mut admin, &db.name).await;
    let _ = admin.close().await;
    assert_backend_everywhere(&store).await;
}

async fn assert_backend_everywhere(store: &PostgresStore) {
    let bound = DEFAULT_ACQUIRE_TIMEOUT + Duration::from_secs(5);
    assert!(!bounded(bound, "is_ready", store.is_ready()).await);
    let stores = store.clone().into_stores();
    let (app, user) = (AppId::new(), AdminUserId::new());
    let e = bounded(bound, "apps.list", stores.apps.list())
        .await
        .unwrap_err();
    assert!(matches!(e, AppRepoError::Backend(_)), "got {e:?}");
    let e = bounded(bound, "apps.delete", stores.apps.delete(app))
        .await
        .unwrap_err();
    assert!(matches!(e, AppRepoError::Backend(_)), "got {e:?}");
    let e = bounded(bound, "users.get", stores.users.get(user))
        .await
        .unwrap_err();
    assert!(matches!(e, AdminUserRepoError::Backend(_)), "got {e:?}");
    let e = bounded(bound, "count", stores.users.count_active_owners())
        .await
        .unwrap_err();
    assert!(matches!(e, AdminUserRepoError::Backend(_)), "got {e:?}");
    let e = bounded(
        bound,
        "try_insert",
        stores.members.try_insert(app, user, AppRole::Viewer),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, AppMembersRepoError::Backend(_)), "got {e:?}");
    let e = bounded(bound, "remove", stores.members.remove(app, user))
        .await
        .unwrap_err();
    assert!(matches!(e, AppMembersRepoError::Backend(_)), "got {e:?}");
    let e = bounded(bound, "app_role", stores.authz.app_role(app, user))
        .await
        .unwrap_err();
    assert!(matches!(e, AuthzRepoError::Backend(_)), "got {e:?}");
    // `require` surfaces the store failure rather than denying or allowing.
    let p = Principal {
        user_id: user,
        instance_role: InstanceRole::Member,
        is_active: true,
        scope: None,
    };
    let r = bounded(
        bound,
        "require",
        picloud_core::require(stores.authz.as_ref(), &p, Capability::AppView(app)),
    )
    .await;
    assert!(r.is_err());
    assert!(
        !matches!(r, Err(picloud_core::AuthzDenied::Denied)),
        "got {r:?}"
    );
}

/// Rows whose role or slug text is not a valid domain value are `Backend`
/// errors, never a panic or a made-up role.
#[tokio::test]
async fn rows_that_do_not_decode_are_backend_errors() {
    let Some(db) = support::fresh_db().await else {
        return;
    };
    let stores = db.store.clone().into_stores();
    let fx = Fixture::new(stores.clone());
    let user = fx.user("m", InstanceRole::Member).await;
    let app = fx.app("a").await;
    stores
        .members
        .try_insert(app.id, user.id, AppRole::Viewer)
        .await
        .unwrap();

    let mut conn = db.connection().await;
    for sql in [
        "ALTER TABLE app_members DROP CONSTRAINT app_members_role_check",
        "ALTER TABLE admin_users DROP CONSTRAINT admin_users_instance_role_check",
        "ALTER TABLE apps DROP CONSTRAINT apps_slug_check",
        "UPDATE app_members SET role = 'superuser'",
        "UPDATE admin_users SET instance_role = 'root'",
        "UPDATE apps SET slug = 'Not A Slug'",
    ] {
        sqlx::query(sql).execute(&mut conn).await.expect(sql);
    }
    let _ = conn.close().await;

    let e = stores.members.find(app.id, user.id).await.unwrap_err();
    assert!(matches!(e, AppMembersRepoError::Backend(_)), "got {e:?}");
    assert!(e.to_string().contains("superuser") || format!("{e:?}").contains("superuser"));
    let e = stores
        .members
        .list_for_app_enriched(app.id)
        .await
        .unwrap_err();
    assert!(matches!(e, AppMembersRepoError::Backend(_)), "got {e:?}");
    let e = stores.authz.app_role(app.id, user.id).await.unwrap_err();
    assert!(matches!(e, AuthzRepoError::Backend(_)), "got {e:?}");
    let e = stores.users.get(user.id).await.unwrap_err();
    assert!(matches!(e, AdminUserRepoError::Backend(_)), "got {e:?}");
    let e = stores.users.list().await.unwrap_err();
    assert!(matches!(e, AdminUserRepoError::Backend(_)), "got {e:?}");
    let e = stores.apps.get(app.id).await.unwrap_err();
    assert!(matches!(e, AppRepoError::Backend(_)), "got {e:?}");
    let e = stores.apps.list().await.unwrap_err();
    assert!(matches!(e, AppRepoError::Backend(_)), "got {e:?}");
    drop(stores);
    db.drop().await;
}
