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

/// Logs in as `username` through `client`: status, `Retry-After`, body.
async fn login_via(
    s: &TestServer,
    client: &reqwest::Client,
    username: &str,
    password: &str,
) -> (StatusCode, Option<String>, Value) {
    let resp = client
        .post(s.url("/api/v1/auth/login"))
        .json(&json!({ "username": username, "password": password }))
        .send()
        .await
        .expect("request sent");
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry_after, resp.json().await.expect("a JSON body"))
}

/// A client whose connections come from `ip` (any 127.0.0.0/8 address is
/// loopback on Linux), so the server sees another client address.
fn client_from(ip: &str) -> reqwest::Client {
    {
        picloud_core::egress::install_crypto_provider();
        reqwest::Client::builder()
    }
    .local_address(ip.parse::<std::net::IpAddr>().unwrap())
    .build()
    .unwrap()
}

/// Five wrong passwords for mia from one address: the sixth attempt, even
/// with the right password, is 429 at once with `Retry-After`. Mia from
/// another address, and another user from the same address, still log in.
async fn wrong_passwords_get_429_for_that_client_and_username_only(s: TestServer) {
    s.create_user("mia", "member").await;
    s.create_user("olga", "member").await;
    let attacker = client_from("127.0.0.1");
    for i in 0..5 {
        let (status, _, body) = login_via(&s, &attacker, "mia", "wrong password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {i}: {body}");
    }
    let started = std::time::Instant::now();
    let (status, retry_after, body) =
        login_via(&s, &attacker, "mia", "correct horse battery").await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(
        body,
        json!({ "error": "too many failed logins; try again in 1 s" })
    );
    // No password check ran: far below one argon2 verification.
    assert!(took < std::time::Duration::from_millis(500), "{took:?}");

    let (status, _, body) = login_via(
        &s,
        &client_from("127.0.0.2"),
        "mia",
        "correct horse battery",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "mia from her own address: {body}");
    assert!(body["token"].as_str().is_some_and(|t| t.starts_with("pc_")));
    let (status, _, body) = login_via(&s, &attacker, "olga", "correct horse battery").await;
    assert_eq!(status, StatusCode::OK, "another user, same address: {body}");

    // Once the backoff has passed, the right password gets in again.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, _, body) = login_via(&s, &attacker, "mia", "correct horse battery").await;
    assert_eq!(status, StatusCode::OK, "after the backoff: {body}");
}

on_both_stores!(
    an_admin_racing_a_promotion_never_deactivates_an_owner,
    wrong_passwords_get_429_for_that_client_and_username_only,
);
