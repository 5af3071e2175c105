//! The order of checks in the membership service, proven with mockall mocks:
//! each test lets exactly the calls the contract allows and fails on any other.

use std::sync::Arc;

use picloud_core::domain::{AdminUser, App, AppMembership, Slug};
use picloud_core::ports::apps::MockAppRepository;
use picloud_core::ports::authz::MockAuthzRepository;
use picloud_core::ports::members::MockAppMembersRepository;
use picloud_core::ports::users::MockAdminUserRepository;
use picloud_core::ports::{AuthzRepoError, BoxError};
use picloud_core::testkit::strict_mocks;
use picloud_core::{
    AdminUserId, AppId, AppRole, ErrorKind, InstanceRole, MembershipError, MembershipService,
    Principal, ServiceError,
};

struct Mocks {
    apps: MockAppRepository,
    users: MockAdminUserRepository,
    members: MockAppMembersRepository,
    authz: MockAuthzRepository,
}

impl Mocks {
    /// Mocks with no expectations: any call panics.
    fn strict() -> Self {
        Self {
            apps: MockAppRepository::new(),
            users: MockAdminUserRepository::new(),
            members: MockAppMembersRepository::new(),
            authz: MockAuthzRepository::new(),
        }
    }

    /// The app resolves (once).
    fn with_app(mut self, app: &App) -> Self {
        let app = app.clone();
        self.apps
            .expect_resolve()
            .times(1)
            .returning(move |_| Ok(Some(app.clone())));
        self
    }

    /// The caller's explicit role on the app (looked up once).
    fn caller_role(mut self, role: Option<AppRole>) -> Self {
        self.authz
            .expect_app_role()
            .times(1)
            .returning(move |_, _| Ok(role));
        self
    }

    /// The target user lookup (once).
    fn target(mut self, user: Option<AdminUser>) -> Self {
        self.users
            .expect_get()
            .times(1)
            .returning(move |_| Ok(user.clone()));
        self
    }

    fn service(self) -> MembershipService {
        // Every other port: mocks that panic on any call.
        let mut stores = strict_mocks();
        stores.apps = Arc::new(self.apps);
        stores.users = Arc::new(self.users);
        stores.members = Arc::new(self.members);
        stores.authz = Arc::new(self.authz);
        MembershipService::new(stores)
    }
}

fn app() -> App {
    App {
        id: AppId::new(),
        slug: Slug::parse("shop").unwrap(),
        name: picloud_core::testkit::display_name("Shop"),
        created_at: picloud_core::clock::now(),
    }
}

fn user(role: InstanceRole, active: bool) -> AdminUser {
    AdminUser {
        id: AdminUserId::new(),
        username: picloud_core::testkit::username("target"),
        email: None,
        instance_role: role,
        is_active: active,
        created_at: picloud_core::clock::now(),
    }
}

fn member_caller() -> Principal {
    Principal::of(&user(InstanceRole::Member, true))
}

fn owner_caller() -> Principal {
    Principal::of(&user(InstanceRole::Owner, true))
}

fn row(app: &App, user: &AdminUser, role: AppRole) -> AppMembership {
    AppMembership {
        app_id: app.id,
        user_id: user.id,
        role,
        created_at: picloud_core::clock::now(),
    }
}

#[tokio::test]
async fn unknown_app_stops_before_authorization() {
    let mut mocks = Mocks::strict();
    mocks.apps.expect_resolve().times(1).returning(|_| Ok(None));
    let err = mocks
        .service()
        .grant(
            &member_caller(),
            "nope",
            AdminUserId::new(),
            AppRole::Viewer,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, MembershipError::AppNotFound(ref s) if s == "nope"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_forbidden_caller_never_triggers_a_user_lookup() {
    let app = app();
    // An editor: looked up, refused; `users.get` and every write would panic.
    let svc = Mocks::strict()
        .with_app(&app)
        .caller_role(Some(AppRole::Editor))
        .service();
    let target = AdminUserId::new();
    let err = svc
        .grant(&member_caller(), "shop", target, AppRole::Viewer)
        .await
        .unwrap_err();
    assert!(matches!(err, MembershipError::Forbidden), "{err:?}");

    let svc = Mocks::strict().with_app(&app).caller_role(None).service();
    let err = svc
        .change_role(&member_caller(), "shop", target, AppRole::Viewer)
        .await
        .unwrap_err();
    assert!(matches!(err, MembershipError::Forbidden), "{err:?}");

    let svc = Mocks::strict()
        .with_app(&app)
        .caller_role(Some(AppRole::Viewer))
        .service();
    let err = svc
        .remove(&member_caller(), "shop", target)
        .await
        .unwrap_err();
    assert!(matches!(err, MembershipError::Forbidden), "{err:?}");

    let svc = Mocks::strict()
        .with_app(&app)
        .caller_role(Some(AppRole::Viewer))
        .service();
    let err = svc.list(&member_caller(), "shop").await.unwrap_err();
    assert!(matches!(err, MembershipError::Forbidden), "{err:?}");
}

#[tokio::test]
async fn an_instance_admin_is_refused_without_any_lookup() {
    let app = app();
    // No authz expectation: an admin's answer needs no explicit role.
    let svc = Mocks::strict().with_app(&app).service();
    let admin = Principal::of(&user(InstanceRole::Admin, true));
    let err = svc.list(&admin, "shop").await.unwrap_err();
    assert!(matches!(err, MembershipError::Forbidden), "{err:?}");
}

#[tokio::test]
async fn an_inactive_admin_target_gets_the_inactive_error_first() {
    let app = app();
    let target = user(InstanceRole::Admin, false);
    let svc = Mocks::strict()
        .with_app(&app)
        .target(Some(target.clone()))
        .service();
    let err = svc
        .grant(&owner_caller(), "shop", target.id, AppRole::Viewer)
        .await
        .unwrap_err();
    assert!(
        matches!(err, MembershipError::TargetInactive { ref username } if username == "target"),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_active_owner_target_is_not_a_member() {
    let app = app();
    let target = user(InstanceRole::Owner, true);
    let svc = Mocks::strict()
        .with_app(&app)
        .target(Some(target.clone()))
        .service();
    let err = svc
        .grant(&owner_caller(), "shop", target.id, AppRole::Viewer)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            MembershipError::TargetNotMember {
                instance_role: InstanceRole::Owner,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "target has instance_role owner and already has implicit access on every app — no \
         explicit membership needed"
    );
}

#[tokio::test]
async fn an_unknown_target_is_not_found_before_any_write() {
    let app = app();
    let svc = Mocks::strict().with_app(&app).target(None).service();
    let ghost = AdminUserId::new();
    let err = svc
        .grant(&owner_caller(), "shop", ghost, AppRole::Viewer)
        .await
        .unwrap_err();
    assert!(
        matches!(err, MembershipError::UserNotFound(id) if id == ghost),
        "{err:?}"
    );

    let svc = Mocks::strict().with_app(&app).target(None).service();
    let err = svc
        .change_role(&owner_caller(), "shop", ghost, AppRole::Viewer)
        .await
        .unwrap_err();
    assert!(matches!(err, MembershipError::UserNotFound(_)), "{err:?}");
}

#[tokio::test]
async fn a_duplicate_grant_is_already_member_and_does_not_overwrite() {
    let app = app();
    let target = user(InstanceRole::Member, true);
    let mut mocks = Mocks::strict().with_app(&app).target(Some(target.clone()));
    // Only try_insert may be called: an upsert or update would panic.
    mocks
        .members
        .expect_try_insert()
        .times(1)
        .returning(|_, _, _| Ok(None));
    let err = mocks
        .service()
        .grant(&owner_caller(), "shop", target.id, AppRole::Editor)
        .await
        .unwrap_err();
    assert!(
        matches!(err, MembershipError::AlreadyMember { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "target is already a member of this app — use PATCH to change their role"
    );
}

#[tokio::test]
async fn a_grant_returns_the_enriched_row() {
    let app = app();
    let target = user(InstanceRole::Member, true);
    let inserted = row(&app, &target, AppRole::Editor);
    let mut mocks = Mocks::strict().with_app(&app).target(Some(target.clone()));
    let ret = inserted.clone();
    mocks
        .members
        .expect_try_insert()
        .withf(move |a, u, r| (*a, *u, *r) == (ret.app_id, ret.user_id, AppRole::Editor))
        .times(1)
        .returning(move |_, _, _| Ok(Some(inserted.clone())));
    let d = mocks
        .service()
        .grant(&owner_caller(), "shop", target.id, AppRole::Editor)
        .await
        .unwrap();
    assert_eq!(
        (d.user_id, d.username.as_str(), d.role),
        (target.id, "target", AppRole::Editor)
    );
}

#[tokio::test]
async fn change_role_never_creates() {
    let app = app();
    let target = user(InstanceRole::Member, true);
    let mut mocks = Mocks::strict().with_app(&app).target(Some(target.clone()));
    mocks
        .members
        .expect_update_role()
        .times(1)
        .returning(|_, _, _| Ok(None));
    let err = mocks
        .service()
        .change_role(&owner_caller(), "shop", target.id, AppRole::Editor)
        .await
        .unwrap_err();
    assert!(
        matches!(err, MembershipError::MembershipNotFound),
        "{err:?}"
    );
}

#[tokio::test]
async fn remove_needs_no_user_lookup_and_is_idempotent() {
    let app = app();
    let mut mocks = Mocks::strict().with_app(&app);
    mocks
        .members
        .expect_remove()
        .times(1)
        .returning(|_, _| Ok(()));
    mocks
        .service()
        .remove(&owner_caller(), "shop", AdminUserId::new())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_member_app_admin_passes_with_one_lookup() {
    let app = app();
    let mut mocks = Mocks::strict()
        .with_app(&app)
        .caller_role(Some(AppRole::AppAdmin));
    mocks
        .members
        .expect_list_for_app_enriched()
        .times(1)
        .returning(|_| Ok(vec![]));
    assert!(
        mocks
            .service()
            .list(&member_caller(), "shop")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn an_authz_store_failure_is_internal_not_forbidden() {
    let app = app();
    let mut mocks = Mocks::strict().with_app(&app);
    mocks.authz.expect_app_role().times(1).returning(|_, _| {
        let e: BoxError = "connection refused".into();
        Err(AuthzRepoError::Backend(e))
    });
    let err = mocks
        .service()
        .list(&member_caller(), "shop")
        .await
        .unwrap_err();
    assert!(matches!(err, MembershipError::Authz(_)), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert_eq!(MembershipError::Forbidden.kind(), ErrorKind::Forbidden);
}
