//! The user directory and login over HTTP, on both stores: the owner guard
//! under races, and login backoff.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::TestServer;

fn admin_path(id: &str) -> String {
    format!("/api/v1/admin/admins/{id}")
}

/// The user `id` as the directory lists it.
async fn user_row(s: &TestServer, id: &str) -> Value {
    let (status, users) = s.get("/api/v1/admin/admins", &s.owner_token).await;
    assert_eq!(status, StatusCode::OK, "{users}");
    users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == id)
        .cloned()
        .expect("the user is listed")
}

/// Round after round, the owner promotes a member to owner (and activates
/// it) while an instance admin deactivates the same user. An admin never
/// changes an owner: the deactivation applies to the member before the
/// promotion (the promotion then reactivates) or is refused with 403. After
/// every round the target is an active owner.
async fn an_admin_racing_a_promotion_never_deactivates_an_owner(s: TestServer) {
    const ROUNDS: usize = 120;
    let (_, admin_token) = s.user("adam", "admin").await;
    let target = s.create_user("tara", "member").await;
    let s = std::sync::Arc::new(s);
    let (mut applied, mut refused) = (0, 0);
    let mut violations = Vec::new();
    for round in 0..ROUNDS {
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
        let promote = {
            let (s, barrier, target) = (s.clone(), barrier.clone(), target.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                s.patch(
                    &admin_path(&target),
                    &s.owner_token,
                    json!({ "instance_role": "owner", "is_active": true }),
                )
                .await
            })
        };
        let deactivate = {
            let (s, barrier, target, token) = (
                s.clone(),
                barrier.clone(),
                target.clone(),
                admin_token.clone(),
            );
            tokio::spawn(async move {
                barrier.wait().await;
                s.patch(&admin_path(&target), &token, json!({ "is_active": false }))
                    .await
            })
        };
        let (status, body) = promote.await.unwrap();
        assert_eq!(status, StatusCode::OK, "round {round}: promotion: {body}");
        let (status, body) = deactivate.await.unwrap();
        match status {
            StatusCode::OK if body["instance_role"] == "owner" => {
                violations.push(format!("round {round}: the admin changed an owner: {body}"));
            }
            StatusCode::OK => applied += 1,
            StatusCode::FORBIDDEN => {
                assert_eq!(body, json!({ "error": "forbidden" }), "round {round}");
                refused += 1;
            }
            other => panic!("round {round}: unexpected {other}: {body}"),
        }
        let now = user_row(&s, &target).await;
        if now["instance_role"] != "owner" || now["is_active"] != true {
            violations.push(format!("round {round}: after the race: {now}"));
        }
        let (status, body) = s
            .patch(
                &admin_path(&target),
                &s.owner_token,
                json!({ "instance_role": "member", "is_active": true }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "round {round}: reset: {body}");
    }
    assert!(
        violations.is_empty(),
        "{} violations in {ROUNDS} rounds ({applied} applied before the promotion, \
         {refused} refused):\n{}",
        violations.len(),
        violations.join("\n")
    );
    assert_eq!(applied + refused, ROUNDS);
}

on_both_stores!(an_admin_racing_a_promotion_never_deactivates_an_owner);
