//! End-to-end: the members contract over HTTP, on both stores. Every status
//! of DESIGN.md's members table, the 401s, the 403s and `my_role`.

#[macro_use]
mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::TestServer;

fn members(slug: &str) -> String {
    format!("/api/v1/admin/apps/{slug}/members")
}

fn member(slug: &str, user: &str) -> String {
    format!("/api/v1/admin/apps/{slug}/members/{user}")
}

async fn grant_is_201_then_409_for_a_duplicate(s: TestServer) {
    s.create_app("shop").await;
    let mia = s.create_user("mia", "member").await;
    let (status, body) = s
        .post(
            &members("shop"),
            &s.owner_token,
            json!({ "user_id": mia, "role": "viewer" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["user_id"], mia.as_str());
    assert_eq!(body["username"], "mia");
    assert_eq!(body["instance_role"], "member");
    assert_eq!(body["is_active"], true);
    assert_eq!(body["role"], "viewer");
    assert!(body["email"].is_null());
    assert!(body["created_at"].is_string());
    let (status, body) = s
        .post(
            &members("shop"),
            &s.owner_token,
            json!({ "user_id": mia, "role": "editor" }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().unwrap().contains("already a member"));
    // The duplicate did not overwrite.
    let (_, list) = s.get(&members("shop"), &s.owner_token).await;
    assert_eq!(list[0]["role"], "viewer");
}

async fn grant_refuses_inactive_owner_and_admin_targets_with_422(s: TestServer) {
    s.create_app("shop").await;
    let gus = s.create_user("gus", "member").await;
    let (status, _) = s
        .patch(
            &format!("/api/v1/admin/admins/{gus}"),
            &s.owner_token,
            json!({ "is_active": false }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let adam = s.create_user("adam", "admin").await;
    let olga = s.create_user("olga", "owner").await;
    for (id, needle) in [
        (&gus, "deactivated"),
        (&adam, "implicit access"),
        (&olga, "implicit access"),
    ] {
        let (status, body) = s
            .post(
                &members("shop"),
                &s.owner_token,
                json!({ "user_id": id, "role": "viewer" }),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body["error"].as_str().unwrap().contains(needle), "{body}");
    }
    let (_, list) = s.get(&members("shop"), &s.owner_token).await;
    assert_eq!(list, json!([]));
}

async fn unknown_user_and_patch_of_a_non_member_are_404(s: TestServer) {
    s.create_app("shop").await;
    let ghost = uuid::Uuid::new_v4().to_string();
    let (status, body) = s
        .post(
            &members("shop"),
            &s.owner_token,
            json!({ "user_id": ghost, "role": "viewer" }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let max = s.create_user("max", "member").await;
    let (status, body) = s
        .patch(
            &member("shop", &max),
            &s.owner_token,
            json!({ "role": "editor" }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // PATCH never created a row.
    let (_, list) = s.get(&members("shop"), &s.owner_token).await;
    assert_eq!(list, json!([]));
    let (status, _) = s.get(&members("no-such-app"), &s.owner_token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn patch_is_200_and_delete_is_204_twice(s: TestServer) {
    let app_id = s.create_app("shop").await;
    let mia = s.create_user("mia", "member").await;
    s.grant("shop", &mia, "viewer").await;
    // By id as well as by slug.
    let (status, body) = s
        .patch(
            &member(&app_id, &mia),
            &s.owner_token,
            json!({ "role": "app_admin" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["role"], "app_admin");
    assert_eq!(body["username"], "mia");
    let (status, body) = s.delete(&member("shop", &mia), &s.owner_token).await;
    assert_eq!(
        (status, body),
        (StatusCode::NO_CONTENT, serde_json::Value::Null)
    );
    let (status, _) = s.delete(&member("shop", &mia), &s.owner_token).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, list) = s.get(&members("shop"), &s.owner_token).await;
    assert_eq!(list, json!([]));
}

async fn viewer_editor_and_instance_admin_get_403(s: TestServer) {
    s.create_app("shop").await;
    let (viewer, viewer_token) = s.user("vera", "member").await;
    let (editor, editor_token) = s.user("ed", "member").await;
    let (_, admin_token) = s.user("adam", "admin").await;
    let target = s.create_user("tom", "member").await;
    s.grant("shop", &viewer, "viewer").await;
    s.grant("shop", &editor, "editor").await;
    for token in [&viewer_token, &editor_token, &admin_token] {
        let (status, body) = s.get(&members("shop"), token).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body, json!({ "error": "forbidden" }));
        let (status, _) = s
            .post(
                &members("shop"),
                token,
                json!({ "user_id": target, "role": "viewer" }),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = s
            .patch(
                &member("shop", &viewer),
                token,
                json!({ "role": "app_admin" }),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = s.delete(&member("shop", &editor), token).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (_, list) = s.get(&members("shop"), &s.owner_token).await;
    assert_eq!(list.as_array().unwrap().len(), 2);
}

async fn no_token_and_a_deactivated_users_token_are_401(s: TestServer) {
    s.create_app("shop").await;
    let (status, body) = s.call(Method::GET, &members("shop"), None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body["error"].is_string());
    let (status, _) = s.get(&members("shop"), "pc_not-a-real-token").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (adam, adam_token) = s.user("adam", "admin").await;
    let (status, _) = s.get("/api/v1/admin/apps", &adam_token).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s
        .patch(
            &format!("/api/v1/admin/admins/{adam}"),
            &s.owner_token,
            json!({ "is_active": false }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // The very next request is refused.
    let (status, body) = s.get("/api/v1/admin/apps", &adam_token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // And so is a new login.
    let (status, _) = s
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({ "username": "adam", "password": "correct horse battery" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn my_role_for_owner_admin_member_and_non_member(s: TestServer) {
    s.create_app("shop").await;
    let (_, admin_token) = s.user("adam", "admin").await;
    let (mia, mia_token) = s.user("mia", "member").await;
    let (_, max_token) = s.user("max", "member").await;
    s.grant("shop", &mia, "viewer").await;
    for (token, role) in [
        (&s.owner_token, "app_admin"),
        (&admin_token, "editor"),
        (&mia_token, "viewer"),
    ] {
        let (status, body) = s.get("/api/v1/admin/apps/shop", token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["my_role"], role);
        let (_, list) = s.get("/api/v1/admin/apps", token).await;
        assert_eq!(list[0]["slug"], "shop");
        assert_eq!(list[0]["my_role"], role);
    }
    let (status, _) = s.get("/api/v1/admin/apps/shop", &max_token).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, list) = s.get("/api/v1/admin/apps", &max_token).await;
    assert_eq!((status, list), (StatusCode::OK, json!([])));
}

async fn a_member_app_admin_manages_members_but_not_users(s: TestServer) {
    s.create_app("shop").await;
    let (mia, mia_token) = s.user("mia", "member").await;
    let max = s.create_user("max", "member").await;
    s.grant("shop", &mia, "app_admin").await;
    let (status, body) = s
        .post(
            &members("shop"),
            &mia_token,
            json!({ "user_id": max, "role": "editor" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = s
        .patch(
            &member("shop", &max),
            &mia_token,
            json!({ "role": "viewer" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, list) = s.get(&members("shop"), &mia_token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 2);
    let (status, body) = s.get("/api/v1/admin/admins", &mia_token).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = s.delete(&member("shop", &max), &mia_token).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

async fn fifty_parallel_grants_give_one_201_and_49_409s(s: TestServer) {
    s.create_app("shop").await;
    let mia = s.create_user("mia", "member").await;
    let s = std::sync::Arc::new(s);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (s, mia) = (s.clone(), mia.clone());
        tasks.spawn(async move {
            s.post(
                &members("shop"),
                &s.owner_token,
                json!({ "user_id": mia, "role": "editor" }),
            )
            .await
            .0
        });
    }
    let mut statuses = Vec::new();
    while let Some(r) = tasks.join_next().await {
        statuses.push(r.unwrap());
    }
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let conflicts = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((created, conflicts), (1, 49), "{statuses:?}");
}

/// The last two owners demoted at once (the bootstrap owner demotes the
/// other and itself): one PATCH wins, the other is refused (422 last owner,
/// or 403 if the actor lost its role first), and one active owner is left.
async fn two_owners_demoted_at_once_leave_one_owner(s: TestServer) {
    let (olga, _) = s.user("olga", "owner").await;
    // An instance admin reads the outcome: not an owner, so not counted.
    let (_, ada) = s.user("ada", "admin").await;
    let (_, users) = s.get("/api/v1/admin/admins", &s.owner_token).await;
    let me = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "admin")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let s = std::sync::Arc::new(s);
    let mut tasks = tokio::task::JoinSet::new();
    for id in [olga, me] {
        let s = s.clone();
        tasks.spawn(async move {
            s.patch(
                &format!("/api/v1/admin/admins/{id}"),
                &s.owner_token,
                json!({ "instance_role": "member" }),
            )
            .await
        });
    }
    let mut statuses = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (status, body) = r.unwrap();
        assert!(!status.is_server_error(), "{status}: {body}");
        statuses.push(status);
    }
    statuses.sort();
    assert_eq!(statuses[0], StatusCode::OK, "{statuses:?}");
    assert!(
        [StatusCode::FORBIDDEN, StatusCode::UNPROCESSABLE_ENTITY].contains(&statuses[1]),
        "{statuses:?}"
    );
    let (status, users) = s.get("/api/v1/admin/admins", &ada).await;
    assert_eq!(status, StatusCode::OK);
    let owners = users
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["instance_role"] == "owner" && u["is_active"] == true)
        .count();
    assert_eq!(owners, 1, "{users}");
}

async fn patch_racing_delete_never_leaves_a_row(s: TestServer) {
    s.create_app("shop").await;
    let mia = s.create_user("mia", "member").await;
    let s = std::sync::Arc::new(s);
    for trial in 0..25 {
        s.grant("shop", &mia, "viewer").await;
        let (a, b) = (s.clone(), s.clone());
        let (m1, m2) = (mia.clone(), mia.clone());
        let patch = tokio::spawn(async move {
            a.patch(
                &member("shop", &m1),
                &a.owner_token,
                json!({ "role": "app_admin" }),
            )
            .await
            .0
        });
        let delete =
            tokio::spawn(async move { b.delete(&member("shop", &m2), &b.owner_token).await.0 });
        let (p, d) = (patch.await.unwrap(), delete.await.unwrap());
        assert!(p == StatusCode::OK || p == StatusCode::NOT_FOUND, "{p}");
        assert_eq!(d, StatusCode::NO_CONTENT);
        let (_, list) = s.get(&members("shop"), &s.owner_token).await;
        assert_eq!(list, json!([]), "trial {trial}: a row survived");
    }
}

async fn scoped_tokens_never_grant_more_than_their_scope(s: TestServer) {
    s.create_app("shop").await;
    s.create_app("blog").await;
    let (status, body) = s
        .post(
            "/api/v1/admin/tokens",
            &s.owner_token,
            json!({ "name": "ro", "app": "shop", "max_role": "viewer" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let token_id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(body["max_role"], "viewer");
    let (status, body) = s.get("/api/v1/admin/apps/shop", &token).await;
    assert_eq!(
        (status, &body["my_role"]),
        (StatusCode::OK, &json!("viewer"))
    );
    let (status, _) = s.get(&members("shop"), &token).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = s.get("/api/v1/admin/apps/blog", &token).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = s
        .post(
            "/api/v1/admin/apps",
            &token,
            json!({ "slug": "x", "name": "x" }),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, list) = s.get("/api/v1/admin/apps", &token).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    // A scoped token cannot see or revoke its user's other tokens.
    let (status, _) = s.get("/api/v1/admin/tokens", &token).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = s
        .delete(&format!("/api/v1/admin/tokens/{token_id}"), &token)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The secret is never listed; revoking works at once.
    let (_, tokens) = s.get("/api/v1/admin/tokens", &s.owner_token).await;
    assert!(
        tokens
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t.get("token").is_none())
    );
    let (status, _) = s
        .delete(&format!("/api/v1/admin/tokens/{token_id}"), &s.owner_token)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = s.get("/api/v1/admin/apps/shop", &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn user_directory_rules(s: TestServer) {
    let (adam, admin_token) = s.user("adam", "admin").await;
    // An admin creates members but not admins, and cannot change roles.
    let (status, _) = s
        .post(
            "/api/v1/admin/admins",
            &admin_token,
            json!({ "username": "m1", "password": "long enough", "instance_role": "member" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = s
        .post(
            "/api/v1/admin/admins",
            &admin_token,
            json!({ "username": "a2", "password": "long enough", "instance_role": "admin" }),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = s
        .patch(
            &format!("/api/v1/admin/admins/{adam}"),
            &admin_token,
            json!({ "instance_role": "owner" }),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Duplicate usernames are 409; bad ones 422.
    let (status, _) = s
        .post(
            "/api/v1/admin/admins",
            &s.owner_token,
            json!({ "username": "m1", "password": "long enough", "instance_role": "member" }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = s
        .post("/api/v1/admin/admins", &s.owner_token, json!({ "username": "no spaces", "password": "long enough", "instance_role": "member" }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = s
        .post(
            "/api/v1/admin/admins",
            &s.owner_token,
            json!({ "username": "shorty", "password": "short", "instance_role": "member" }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // The last owner cannot be deactivated or demoted.
    let (_, users) = s.get("/api/v1/admin/admins", &s.owner_token).await;
    let owner = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "admin")
        .unwrap();
    let owner_id = owner["id"].as_str().unwrap();
    let (status, body) = s
        .patch(
            &format!("/api/v1/admin/admins/{owner_id}"),
            &s.owner_token,
            json!({ "is_active": false }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _) = s
        .patch(
            &format!("/api/v1/admin/admins/{owner_id}"),
            &s.owner_token,
            json!({ "instance_role": "member" }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // Users are listed in username order, the password hash never shown.
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["adam", "admin", "m1"]);
    assert!(
        users
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u.get("password_hash").is_none())
    );
}

async fn a_revoked_bootstrap_token_stays_revoked_after_a_restart(s: TestServer) {
    let Some(url) = s.database_url.clone() else {
        return; // Only PostgreSQL persists.
    };
    let (_, tokens) = s.get("/api/v1/admin/tokens", &s.owner_token).await;
    let id = tokens[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(tokens[0]["name"], "bootstrap");
    // A second owner, so the instance keeps one after the revocation.
    let (_, other_owner) = s.user("olga", "owner").await;
    let (status, _) = s
        .delete(&format!("/api/v1/admin/tokens/{id}"), &s.owner_token)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let token = s.owner_token.clone();
    s.shutdown().await;
    // Restarted with the same PICLOUD_BOOTSTRAP_TOKEN: still revoked.
    let s = TestServer::start_with_token(Some(url), token.clone()).await;
    let (status, _) = s.get("/api/v1/admin/apps", &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = s.get("/api/v1/admin/apps", &other_owner).await;
    assert_eq!(status, StatusCode::OK);
}

on_both_stores!(
    a_revoked_bootstrap_token_stays_revoked_after_a_restart,
    grant_is_201_then_409_for_a_duplicate,
    grant_refuses_inactive_owner_and_admin_targets_with_422,
    unknown_user_and_patch_of_a_non_member_are_404,
    patch_is_200_and_delete_is_204_twice,
    viewer_editor_and_instance_admin_get_403,
    no_token_and_a_deactivated_users_token_are_401,
    my_role_for_owner_admin_member_and_non_member,
    a_member_app_admin_manages_members_but_not_users,
    fifty_parallel_grants_give_one_201_and_49_409s,
    patch_racing_delete_never_leaves_a_row,
    two_owners_demoted_at_once_leave_one_owner,
    scoped_tokens_never_grant_more_than_their_scope,
    user_directory_rules,
);
