//! End-to-end: scripts that keep state, over HTTP, on both stores. Every
//! `kv::` function, TTL expiry, every KV limit and quota, `incr` and `cas`
//! under 32 concurrent runs, apps that never see each other's keys or
//! environment, secrets (never returned, redacted from logs and errors,
//! encrypted at rest), env changes live at once, permissions, the admin
//! routes, and the fast path (env stays inline; a KV call moves to the pool
//! and happens once).

mod support;

use std::time::Duration;

use picloud::server::ServerConfig;
use picloud_core::executor::InlineBudget;
use picloud_core::secrets::MasterKey;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::TestServer;

/// A server with a master key (secrets can be written on PostgreSQL too),
/// and an inline budget whose time a debug build on a loaded machine does
/// not run out of.
fn configure(c: &mut ServerConfig) {
    c.master_key = Some(MasterKey::random().unwrap());
    c.executor.inline = Some(InlineBudget {
        time: Duration::from_millis(250),
        cooldown: Duration::ZERO,
        ..InlineBudget::default()
    });
}

/// Runs each scenario against the memory store and against PostgreSQL.
macro_rules! scenarios {
    ($($name:ident),+ $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let s = super::TestServer::configured(false, super::configure).await.unwrap();
                    super::$name(s).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    if let Some(s) = super::TestServer::configured(true, super::configure).await {
                        super::$name(s).await;
                    }
                }
            )+
        }
    };
}

scenarios!(
    every_kv_function_works,
    ttl_keys_expire,
    kv_limits_are_script_errors_naming_them,
    kv_quotas_hold_for_scripts_and_the_admin_api,
    incr_and_cas_lose_no_update_under_32_concurrent_runs,
    apps_never_see_each_others_keys_or_env,
    secrets_are_never_returned_and_are_redacted,
    secrets_are_encrypted_at_rest,
    env_changes_are_live_at_once,
    readers_read_and_editors_write,
    the_admin_kv_routes_work,
    env_stays_inline_and_kv_moves_to_the_pool_once,
    bad_input_is_a_clear_json_error,
);

fn admin(app: &str, rest: &str) -> String {
    format!("/api/v1/admin/apps/{app}{rest}")
}

async fn deploy(s: &TestServer, app: &str, name: &str, source: &str) {
    let (status, body) = s.deploy(app, name, source).await;
    assert!(status.is_success(), "deploy {app}/{name}: {status} {body}");
}

/// `GET /run/{path}`: status and JSON body (or the text as a JSON string).
async fn run(s: &TestServer, path: &str) -> (StatusCode, Value) {
    let (status, _, text) = s.run(Method::GET, &format!("/run/{path}"), None).await;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

async fn put_env(s: &TestServer, app: &str, name: &str, value: &str, secret: bool) -> StatusCode {
    let (status, body) = s
        .call(
            Method::PUT,
            &admin(app, &format!("/env/{name}")),
            Some(&s.owner_token),
            Some(json!({ "value": value, "secret": secret })),
        )
        .await;
    assert!(status.is_success(), "put env {name}: {status} {body}");
    status
}

/// The newest invocation record of `app/script`.
async fn last_record(s: &TestServer, app: &str, script: &str) -> Value {
    for _ in 0..200 {
        let (status, body) = s
            .get(
                &admin(app, &format!("/scripts/{script}/invocations?limit=1")),
                &s.owner_token,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if let Some(first) = body.as_array().and_then(|a| a.first()) {
            return first.clone();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no invocation record of {app}/{script}");
}

async fn every_kv_function_works(s: TestServer) {
    s.create_app("shop").await;
    deploy(
        &s,
        "shop",
        "all",
        r#"
        let out = #{};
        out.missing = kv::get("nope");
        kv::set("user:1", #{ name: "ada", tags: [1, 2] });
        kv::set("user:2", "bob");
        kv::set("user:3", 3.5);
        kv::set("other", true);
        out.got = kv::get("user:1");
        let v = kv::get_versioned("user:2");
        out.value = v.value;
        out.cas_ok = kv::cas("user:2", v.version, "bobby");
        out.cas_stale = kv::cas("user:2", v.version, "robert");
        out.after_cas = kv::get("user:2");
        out.cas_absent = kv::cas("fresh", (), 1);
        out.cas_absent_again = kv::cas("fresh", (), 2);
        out.incr1 = kv::incr("hits");
        out.incr5 = kv::incr("hits", 5);
        out.decr = kv::incr("hits", -2);
        let page1 = kv::list("user:", #{ limit: 2 });
        let page2 = kv::list("user:", #{ limit: 2, cursor: page1.cursor });
        out.page1 = page1.keys;
        out.page2 = page2.keys;
        out.end = page2.cursor;
        out.all = kv::list("").keys;
        out.deleted = kv::delete("user:3");
        out.deleted_again = kv::delete("user:3");
        out.gone = kv::get("user:3");
        out.versioned_missing = kv::get_versioned("user:3");
        out
        "#,
    )
    .await;
    let (status, out) = run(&s, "shop/all").await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["missing"], Value::Null);
    assert_eq!(out["got"], json!({ "name": "ada", "tags": [1, 2] }));
    assert_eq!(out["value"], "bob");
    assert_eq!(out["cas_ok"], true);
    assert_eq!(out["cas_stale"], false);
    assert_eq!(out["after_cas"], "bobby");
    assert_eq!(out["cas_absent"], true);
    assert_eq!(out["cas_absent_again"], false);
    assert_eq!(out["incr1"], 1);
    assert_eq!(out["incr5"], 6);
    assert_eq!(out["decr"], 4);
    assert_eq!(out["page1"], json!(["user:1", "user:2"]));
    assert_eq!(out["page2"], json!(["user:3"]));
    assert_eq!(out["end"], Value::Null);
    assert_eq!(
        out["all"],
        json!(["fresh", "hits", "other", "user:1", "user:2", "user:3"])
    );
    assert_eq!(out["deleted"], true);
    assert_eq!(out["deleted_again"], false);
    assert_eq!(out["gone"], Value::Null);
    assert_eq!(out["versioned_missing"], Value::Null);
    // The state outlives the run.
    deploy(&s, "shop", "read", r#"kv::get("user:2")"#).await;
    assert_eq!(run(&s, "shop/read").await.1, "bobby");
    // A non-integer incr is a script error that says so.
    deploy(&s, "shop", "bad_incr", r#"kv::incr("user:2")"#).await;
    let (status, body) = run(&s, "shop/bad_incr").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        body["error"].as_str().unwrap().contains("not an integer"),
        "{body}"
    );
}

async fn ttl_keys_expire(s: TestServer) {
    s.create_app("ttl").await;
    deploy(
        &s,
        "ttl",
        "set",
        r#"kv::set("short", "v", #{ ttl: 1 }); kv::set("long", "w"); "ok""#,
    )
    .await;
    deploy(
        &s,
        "ttl",
        "get",
        r#"#{ short: kv::get("short"), long: kv::get("long"), keys: kv::list("").keys }"#,
    )
    .await;
    assert_eq!(run(&s, "ttl/set").await.0, StatusCode::OK);
    let (_, before) = run(&s, "ttl/get").await;
    assert_eq!(before["short"], "v");
    let (_, entry) = s.get(&admin("ttl", "/kv/short"), &s.owner_token).await;
    assert!(entry["expires_at"].is_string(), "{entry}");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (_, after) = run(&s, "ttl/get").await;
    assert_eq!(after["short"], Value::Null, "{after}");
    assert_eq!(after["long"], "w");
    assert_eq!(after["keys"], json!(["long"]));
    let (status, _) = s.get(&admin("ttl", "/kv/short"), &s.owner_token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The sweeper gives the room back, without being asked.
    for _ in 0..100 {
        let (_, page) = s.get(&admin("ttl", "/kv"), &s.owner_token).await;
        if page["usage"]["keys"] == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the expired key was not swept");
}

async fn kv_limits_are_script_errors_naming_them(s: TestServer) {
    s.create_app("lim").await;
    // Strings may be larger than a KV value: the value's own limit decides.
    // A wall clock far above the default: 16 MiB written to PostgreSQL by a
    // debug build on a loaded machine may take more than a second, and the
    // KV limits are what these cases test.
    let (status, body) = s
        .patch(
            &admin("lim", "/limits"),
            &s.owner_token,
            json!({ "max_string_bytes": 4 * 1024 * 1024, "wall_clock_ms": 30_000 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let cases = [
        (
            "long_key",
            r#"let k = "k"; k.pad(513, "k"); kv::set(k, 1)"#,
            "at most 512 bytes",
        ),
        ("empty_key", r#"kv::get("")"#, "may not be empty"),
        (
            "big_value",
            r#"let s = "x"; s.pad(600000, "x"); kv::set("big", [s, s])"#,
            "at most 1048576 bytes",
        ),
        (
            "many_ops",
            r#"for i in 0..1001 { kv::get("a") } 1"#,
            "at most 1000 KV operations",
        ),
        ("bad_ttl", r#"kv::set("t", 1, #{ ttl: 0 })"#, "ttl"),
        (
            "many_bytes",
            r#"let s = "x"; s.pad(900000, "x"); for i in 0..20 { kv::set("b", s) } 1"#,
            "at most 16777216 bytes of KV values",
        ),
        ("bad_limit", r#"kv::list("", #{ limit: 5000 })"#, "limit"),
        ("bad_cas", r#"kv::cas("c", "x", 1)"#, "expected version"),
        ("fn_value", r#"kv::set("f", || 1)"#, "no JSON form"),
    ];
    for (name, source, needle) in cases {
        deploy(&s, "lim", name, source).await;
        let (status, body) = run(&s, &format!("lim/{name}")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{name}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(needle), "{name}: {error}");
    }
    // 1000 operations are fine.
    deploy(
        &s,
        "lim",
        "ops",
        r#"for i in 0..999 { kv::get("a") } kv::incr("n")"#,
    )
    .await;
    assert_eq!(run(&s, "lim/ops").await, (StatusCode::OK, json!(1)));
}

async fn kv_quotas_hold_for_scripts_and_the_admin_api(s: TestServer) {
    s.create_app("q").await;
    let (status, body) = s
        .patch(
            &admin("q", "/limits"),
            &s.owner_token,
            json!({ "kv_max_keys": 3, "kv_max_bytes": 1000 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    deploy(
        &s,
        "q",
        "put",
        r#"kv::set(request.query.k, request.query.v); "ok""#,
    )
    .await;
    for k in ["a", "b", "c"] {
        assert_eq!(run(&s, &format!("q/put?k={k}&v=1")).await.0, StatusCode::OK);
    }
    // Replacing an existing key is fine at the key quota.
    assert_eq!(run(&s, "q/put?k=a&v=2").await.0, StatusCode::OK);
    let (status, body) = run(&s, "q/put?k=d&v=1").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body["error"].as_str().unwrap().contains("quota"), "{body}");
    // The admin API refuses the same write with a 422, and nothing changed.
    let (status, body) = s
        .call(
            Method::PUT,
            &admin("q", "/kv/d"),
            Some(&s.owner_token),
            Some(json!({ "value": 1 })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"].as_str().unwrap().contains("quota"), "{body}");
    let (_, page) = s.get(&admin("q", "/kv"), &s.owner_token).await;
    assert_eq!(page["keys"], json!(["a", "b", "c"]));
    // Bytes: a value that would pass 1000 bytes is refused.
    let big = "x".repeat(990);
    let (status, body) = run(&s, &format!("q/put?k=a&v={big}")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body["error"].as_str().unwrap().contains("quota"), "{body}");
    // Deleting frees room.
    s.delete(&admin("q", "/kv/b"), &s.owner_token).await;
    assert_eq!(run(&s, "q/put?k=d&v=1").await.0, StatusCode::OK);
}

async fn incr_and_cas_lose_no_update_under_32_concurrent_runs(s: TestServer) {
    s.create_app("race").await;
    deploy(&s, "race", "incr", r#"kv::incr("counter")"#).await;
    deploy(
        &s,
        "race",
        "cas",
        r#"
        let tries = 0;
        loop {
            tries += 1;
            let cur = kv::get_versioned("total");
            let done = if cur == () {
                kv::cas("total", (), 1)
            } else {
                kv::cas("total", cur.version, cur.value + 1)
            };
            if done { break; }
            if tries > 400 { throw "too many tries"; }
        }
        tries
        "#,
    )
    .await;
    // The default wall clock is 1 s: give the retry loops room.
    s.patch(
        &admin("race", "/limits"),
        &s.owner_token,
        json!({ "wall_clock_ms": 20000 }),
    )
    .await;
    let mut calls = Vec::new();
    for _ in 0..32 {
        for script in ["incr", "cas"] {
            let client = s.client.clone();
            let url = s.url(&format!("/run/race/{script}"));
            calls.push(tokio::spawn(async move {
                let resp = client.get(url).send().await.unwrap();
                (resp.status(), resp.text().await.unwrap())
            }));
        }
    }
    for call in calls {
        let (status, text) = call.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{text}");
    }
    deploy(
        &s,
        "race",
        "read",
        r#"#{ counter: kv::get("counter"), total: kv::get("total") }"#,
    )
    .await;
    let (_, out) = run(&s, "race/read").await;
    assert_eq!(out, json!({ "counter": 32, "total": 32 }));
}

async fn apps_never_see_each_others_keys_or_env(s: TestServer) {
    s.create_app("alpha").await;
    s.create_app("beta").await;
    put_env(&s, "alpha", "GREETING", "hello from alpha", false).await;
    put_env(&s, "alpha", "KEY", "alpha-secret-value", true).await;
    let source = r#"
        let before = kv::get("shared");
        kv::set("shared", request.query.me);
        #{ before: before, greeting: env.GREETING, key: env.KEY, keys: kv::list("").keys }
    "#;
    deploy(&s, "alpha", "probe", source).await;
    deploy(&s, "beta", "probe", source).await;
    let (_, a) = run(&s, "alpha/probe?me=alpha").await;
    assert_eq!(a["before"], Value::Null);
    assert_eq!(a["greeting"], "hello from alpha");
    let (_, b) = run(&s, "beta/probe?me=beta").await;
    assert_eq!(
        b,
        json!({ "before": null, "greeting": null, "key": null, "keys": ["shared"] })
    );
    let (_, a2) = run(&s, "alpha/probe?me=alpha").await;
    assert_eq!(a2["before"], "alpha");
    // Through the admin API too.
    let (_, entry) = s.get(&admin("beta", "/kv/shared"), &s.owner_token).await;
    assert_eq!(entry["value"], "beta");
    let (_, env) = s.get(&admin("beta", "/env"), &s.owner_token).await;
    assert_eq!(env, json!([]));
}

async fn secrets_are_never_returned_and_are_redacted(s: TestServer) {
    s.create_app("hooks").await;
    let secret = "whsec_9f8e7d6c5b4a3210";
    assert_eq!(
        put_env(&s, "hooks", "SIGNING_KEY", secret, true).await,
        StatusCode::CREATED
    );
    assert_eq!(
        put_env(&s, "hooks", "REGION", "eu", false).await,
        StatusCode::CREATED
    );
    assert_eq!(
        put_env(&s, "hooks", "REGION", "us", false).await,
        StatusCode::OK
    );
    let (status, list) = s.get(&admin("hooks", "/env"), &s.owner_token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list[0]["name"], "REGION");
    assert_eq!(list[0]["value"], "us");
    assert_eq!(list[1]["name"], "SIGNING_KEY");
    assert_eq!(list[1]["secret"], true);
    assert_eq!(list[1]["value"], Value::Null);
    assert!(!list.to_string().contains(secret));
    let (status, one) = s
        .get(&admin("hooks", "/env/SIGNING_KEY"), &s.owner_token)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!one.to_string().contains(secret), "{one}");
    // The script uses it, prints it, and fails with it: the record keeps
    // neither.
    deploy(
        &s,
        "hooks",
        "sign",
        r#"
        print("the key is " + env.SIGNING_KEY);
        debug(env.SIGNING_KEY);
        if request.query.fail == "1" { throw "bad key " + env.SIGNING_KEY; }
        crypto::hmac_sha256(env.SIGNING_KEY, "payload")
        "#,
    )
    .await;
    let (status, body) = run(&s, "hooks/sign").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body.as_str().unwrap().len(), 64, "{body}");
    let record = last_record(&s, "hooks", "sign").await;
    let logs = record["logs"].to_string();
    assert!(!logs.contains(secret), "{logs}");
    assert!(logs.contains("the key is [redacted]"), "{logs}");
    let (status, body) = run(&s, "hooks/sign?fail=1").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!body.to_string().contains(secret), "{body}");
    assert!(body.to_string().contains("[redacted]"), "{body}");
    let record = last_record(&s, "hooks", "sign").await;
    assert!(!record.to_string().contains(secret), "{record}");
    // Deleting is idempotent.
    let (status, _) = s
        .delete(&admin("hooks", "/env/SIGNING_KEY"), &s.owner_token)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = s
        .delete(&admin("hooks", "/env/SIGNING_KEY"), &s.owner_token)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = s
        .get(&admin("hooks", "/env/SIGNING_KEY"), &s.owner_token)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn secrets_are_encrypted_at_rest(s: TestServer) {
    let Some(url) = s.database_url.clone() else {
        // The memory store keeps the same sealed form; only PostgreSQL's
        // rows can be read from outside.
        return;
    };
    s.create_app("vault").await;
    let secret = "sk_live_plaintext_never_stored_0123";
    put_env(&s, "vault", "STRIPE_KEY", secret, true).await;
    put_env(&s, "vault", "PLAIN", "visible", false).await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    type Row = (String, Option<String>, Option<Vec<u8>>, Option<Vec<u8>>);
    let rows: Vec<Row> =
        sqlx::query_as("SELECT name, plain, nonce, ciphertext FROM env_vars ORDER BY name")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 2);
    let (_, plain, _, _) = &rows[0];
    assert_eq!(plain.as_deref(), Some("visible"));
    let (name, plain, nonce, ciphertext) = &rows[1];
    assert_eq!(name, "STRIPE_KEY");
    assert_eq!(*plain, None);
    assert_eq!(nonce.as_ref().unwrap().len(), 24);
    let ciphertext = ciphertext.as_ref().unwrap();
    assert!(
        !ciphertext
            .windows(10)
            .any(|w| w == &secret.as_bytes()[..10])
    );
    // Nowhere in the database: a dump of every table holds no plaintext.
    let dump: Vec<(String,)> = sqlx::query_as(
        "SELECT row_to_json(t)::text FROM (SELECT * FROM env_vars) t \
         UNION ALL SELECT row_to_json(k)::text FROM (SELECT * FROM app_data_keys) k",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(!dump.iter().any(|(row,)| row.contains(secret)));
    // The data key is stored wrapped, naming the master key that wrapped it.
    let keys: Vec<(String,)> = sqlx::query_as("SELECT master_key_id FROM app_data_keys")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].0.len(), 16);
    // And the script still reads it.
    deploy(&s, "vault", "read", "env.STRIPE_KEY").await;
    assert_eq!(run(&s, "vault/read").await.1, secret);
}

async fn env_changes_are_live_at_once(s: TestServer) {
    s.create_app("live").await;
    deploy(&s, "live", "read", r#"env.MODE ?? "unset""#).await;
    assert_eq!(run(&s, "live/read").await.1, "unset");
    put_env(&s, "live", "MODE", "one", false).await;
    assert_eq!(run(&s, "live/read").await.1, "one");
    put_env(&s, "live", "MODE", "two", true).await;
    assert_eq!(run(&s, "live/read").await.1, "two");
    s.delete(&admin("live", "/env/MODE"), &s.owner_token).await;
    assert_eq!(run(&s, "live/read").await.1, "unset");
    // A run that changes its `env` changes nothing beyond itself.
    put_env(&s, "live", "MODE", "three", false).await;
    deploy(&s, "live", "write", r#"env.MODE = "x"; env.MODE"#).await;
    let _ = run(&s, "live/write").await;
    assert_eq!(run(&s, "live/read").await.1, "three");
}

async fn readers_read_and_editors_write(s: TestServer) {
    s.create_app("perm").await;
    let (viewer, viewer_token) = s.user("vera", "member").await;
    let (editor, editor_token) = s.user("eddie", "member").await;
    let (_, outsider_token) = s.user("olga", "member").await;
    s.grant("perm", &viewer, "viewer").await;
    s.grant("perm", &editor, "editor").await;
    put_env(&s, "perm", "A", "1", false).await;
    let write_env = |token: String| {
        let s = &s;
        async move {
            s.call(
                Method::PUT,
                &admin("perm", "/env/B"),
                Some(&token),
                Some(json!({ "value": "2" })),
            )
            .await
            .0
        }
    };
    let write_kv = |token: String| {
        let s = &s;
        async move {
            s.call(
                Method::PUT,
                &admin("perm", "/kv/k"),
                Some(&token),
                Some(json!({ "value": 2 })),
            )
            .await
            .0
        }
    };
    assert_eq!(write_env(viewer_token.clone()).await, StatusCode::FORBIDDEN);
    assert_eq!(write_kv(viewer_token.clone()).await, StatusCode::FORBIDDEN);
    assert_eq!(write_env(editor_token.clone()).await, StatusCode::CREATED);
    assert_eq!(write_kv(editor_token.clone()).await, StatusCode::OK);
    for path in ["/env", "/env/A", "/kv", "/kv/k"] {
        let (status, _) = s.get(&admin("perm", path), &viewer_token).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let (status, _) = s.get(&admin("perm", path), &outsider_token).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }
    let (status, _) = s.delete(&admin("perm", "/env/A"), &viewer_token).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = s.delete(&admin("perm", "/kv/k"), &viewer_token).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = s.get(&admin("perm", "/env"), "not-a-token").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn the_admin_kv_routes_work(s: TestServer) {
    s.create_app("adm").await;
    for (key, value) in [
        ("cfg/a", json!({"on": true})),
        ("cfg/b", json!([1, 2])),
        ("x", json!("y")),
    ] {
        let (status, body) = s
            .call(
                Method::PUT,
                &admin("adm", &format!("/kv/{}", key.replace('/', "%2F"))),
                Some(&s.owner_token),
                Some(json!({ "value": value })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["key"], key);
        assert!(body["version"].as_i64().unwrap() > 0);
    }
    let (_, page) = s
        .get(&admin("adm", "/kv?prefix=cfg%2F&limit=1"), &s.owner_token)
        .await;
    assert_eq!(page["keys"], json!(["cfg/a"]));
    let cursor = page["cursor"].as_str().unwrap().replace('/', "%2F");
    let (_, page) = s
        .get(
            &admin("adm", &format!("/kv?prefix=cfg%2F&limit=1&cursor={cursor}")),
            &s.owner_token,
        )
        .await;
    assert_eq!(page["keys"], json!(["cfg/b"]));
    assert_eq!(page["usage"]["keys"], 3);
    // A script sees what the API wrote.
    deploy(&s, "adm", "read", r#"kv::get("cfg/a")"#).await;
    assert_eq!(run(&s, "adm/read").await.1, json!({"on": true}));
    let (status, _) = s.delete(&admin("adm", "/kv/x"), &s.owner_token).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = s.get(&admin("adm", "/kv/x"), &s.owner_token).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // A TTL through the API.
    let (status, body) = s
        .call(
            Method::PUT,
            &admin("adm", "/kv/brief"),
            Some(&s.owner_token),
            Some(json!({ "value": 1, "ttl": 60 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["expires_at"].is_string());
}

async fn env_stays_inline_and_kv_moves_to_the_pool_once(s: TestServer) {
    s.create_app("fast").await;
    put_env(&s, "fast", "NAME", "pi", false).await;
    deploy(&s, "fast", "env", r#""hello " + env.NAME"#).await;
    deploy(&s, "fast", "count", r#"kv::incr("runs")"#).await;
    let stats = || s.server.executor_stats().unwrap();
    let before = stats();
    for _ in 0..5 {
        assert_eq!(run(&s, "fast/env").await.1, "hello pi");
    }
    let after = stats();
    assert_eq!(after.inline_completed - before.inline_completed, 5);
    assert_eq!(after.pool_runs, before.pool_runs);
    for n in 1..=3 {
        assert_eq!(run(&s, "fast/count").await.1, json!(n));
    }
    let last = stats();
    assert_eq!(last.inline_abandoned - after.inline_abandoned, 3);
    assert_eq!(last.pool_runs - after.pool_runs, 3);
    // Exactly once: three runs, three increments.
    let (_, entry) = s.get(&admin("fast", "/kv/runs"), &s.owner_token).await;
    assert_eq!(entry["value"], 3);
}

async fn bad_input_is_a_clear_json_error(s: TestServer) {
    s.create_app("bad").await;
    let put = |path: String, body: Value| {
        let s = &s;
        async move {
            s.call(Method::PUT, &path, Some(&s.owner_token), Some(body))
                .await
        }
    };
    for (name, body, want) in [
        (
            "1BAD",
            json!({ "value": "x" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "OK",
            json!({ "value": 1 }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "OK",
            json!({ "value": "x", "extra": 1 }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "OK",
            json!({ "value": "x".repeat(40_000) }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (status, body) = put(admin("bad", &format!("/env/{name}")), body).await;
        assert_eq!(status, want, "{name}: {body}");
        assert!(body["error"].is_string(), "{body}");
    }
    let (status, body) = put(admin("nope", "/env/A"), json!({ "value": "x" })).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = put(admin("bad", "/kv/k"), json!({ "value": 1, "ttl": 0 })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let long = "k".repeat(600);
    let (status, body) = put(admin("bad", &format!("/kv/{long}")), json!({ "value": 1 })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // Malformed JSON.
    let resp = s
        .client
        .put(s.url(&admin("bad", "/kv/k")))
        .bearer_auth(&s.owner_token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"].is_string());
    // A value over 1 MiB.
    let huge = json!({ "value": "x".repeat(1_100_000) });
    let (status, body) = put(admin("bad", "/kv/k"), huge).await;
    assert!(
        status == StatusCode::PAYLOAD_TOO_LARGE || status == StatusCode::UNPROCESSABLE_ENTITY,
        "{status} {body}"
    );
    let (_, page) = s.get(&admin("bad", "/kv"), &s.owner_token).await;
    assert_eq!(page["keys"], json!([]));
}
