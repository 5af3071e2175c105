//! The environment port's cases: variables and sealed secrets, the per-app
//! cap on their number, and each app's wrapped data key.

use std::collections::HashSet;

use tokio::task::JoinSet;

use crate::domain::{EnvName, EnvValue, EnvVar, Sealed, WrappedKey};
use crate::ids::AppId;
use crate::ports::EnvRepoError;
use crate::stores::Stores;
use crate::testkit::Fixture;

/// The cases of this port, in order.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_env_cases {
    ($($callback:ident)::+; $($args:tt)*) => {
        $($callback)::+! { $($args)* env =>
            env_put_list_and_delete,
            env_secrets_round_trip_byte_exact,
            env_a_new_name_past_the_cap_is_too_many,
            env_racing_puts_never_pass_the_cap,
            env_apps_are_separate_and_go_with_their_app,
            env_data_key_first_writer_wins_even_racing,
            env_data_key_replace_is_a_compare_and_set,
            env_data_keys_lists_every_apps_key,
        }
    };
}

const MAX: usize = 100;

fn name(s: &str) -> EnvName {
    EnvName::parse(s).expect("valid env name")
}

fn plain(s: &str) -> EnvValue {
    EnvValue::Plain(s.to_owned())
}

fn sealed(seed: u8) -> Sealed {
    Sealed {
        nonce: (0..12).map(|i| seed.wrapping_add(i)).collect(),
        ciphertext: (0..=255u8).map(|b| b ^ seed).collect(),
    }
}

fn wrapped(master: &str, seed: u8) -> WrappedKey {
    WrappedKey {
        master_key_id: master.to_owned(),
        sealed: sealed(seed),
    }
}

async fn names_and_values(stores: &Stores, app: AppId) -> Vec<(String, EnvValue)> {
    stores
        .env
        .env_list(app)
        .await
        .unwrap()
        .into_iter()
        .map(|v| (v.name.to_string(), v.value))
        .collect()
}

/// `put` says whether it created the name; `list` returns the variables
/// by name in byte order; `delete` says whether the name was there.
pub async fn env_put_list_and_delete(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = fx.app("a").await;
    assert!(stores.env.env_list(app.id).await.unwrap().is_empty());
    for n in ["alpha", "ZETA", "A_B", "AB", "_x"] {
        let created = stores
            .env
            .env_put(app.id, &name(n), plain(&format!("value of {n}")), MAX)
            .await
            .unwrap();
        assert!(created, "{n} is new");
    }
    let before = crate::clock::now();
    let created = stores
        .env
        .env_put(app.id, &name("alpha"), plain("replaced ü"), MAX)
        .await
        .unwrap();
    assert!(!created, "alpha was there");
    let list: Vec<EnvVar> = stores.env.env_list(app.id).await.unwrap();
    let names: Vec<&str> = list.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["AB", "A_B", "ZETA", "_x", "alpha"]);
    let alpha = list.iter().find(|v| v.name.as_str() == "alpha").unwrap();
    assert_eq!(alpha.value, plain("replaced ü"));
    assert!(alpha.updated_at >= before - chrono::Duration::seconds(1));
    assert!(stores.env.env_delete(app.id, &name("AB")).await.unwrap());
    assert!(!stores.env.env_delete(app.id, &name("AB")).await.unwrap());
    assert_eq!(
        names_and_values(&stores, app.id).await,
        [
            ("A_B".to_owned(), plain("value of A_B")),
            ("ZETA".to_owned(), plain("value of ZETA")),
            ("_x".to_owned(), plain("value of _x")),
            ("alpha".to_owned(), plain("replaced ü")),
        ]
    );
}

/// A secret is stored sealed and read back byte for byte; a name may
/// switch between a plain value and a secret.
pub async fn env_secrets_round_trip_byte_exact(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = fx.app("a").await;
    let secret = EnvValue::Secret(Sealed {
        nonce: vec![0, 255, 1, 254, 0, 0, 7, 128, 127, 0, 0, 0],
        ciphertext: (0..=255u8).chain(0..=255u8).collect(),
    });
    let key = name("API_KEY");
    assert!(
        stores
            .env
            .env_put(app.id, &key, secret.clone(), MAX)
            .await
            .unwrap()
    );
    assert_eq!(
        names_and_values(&stores, app.id).await,
        [("API_KEY".to_owned(), secret.clone())]
    );
    assert!(
        !stores
            .env
            .env_put(app.id, &key, plain(""), MAX)
            .await
            .unwrap()
    );
    assert_eq!(
        names_and_values(&stores, app.id).await,
        [("API_KEY".to_owned(), plain(""))]
    );
    let other = EnvValue::Secret(sealed(9));
    assert!(
        !stores
            .env
            .env_put(app.id, &key, other.clone(), MAX)
            .await
            .unwrap()
    );
    assert_eq!(
        names_and_values(&stores, app.id).await,
        [("API_KEY".to_owned(), other)]
    );
}

/// A new name past `max_vars` is `TooMany` and stores nothing; replacing
/// a name at the cap is fine, and a delete makes room.
pub async fn env_a_new_name_past_the_cap_is_too_many(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = fx.app("a").await;
    for n in ["A", "B", "C"] {
        assert!(
            stores
                .env
                .env_put(app.id, &name(n), plain("1"), 3)
                .await
                .unwrap()
        );
    }
    let e = stores
        .env
        .env_put(app.id, &name("D"), plain("1"), 3)
        .await
        .unwrap_err();
    assert!(matches!(e, EnvRepoError::TooMany(3)), "got {e:?}");
    let secret = EnvValue::Secret(sealed(1));
    let e = stores
        .env
        .env_put(app.id, &name("D"), secret.clone(), 3)
        .await
        .unwrap_err();
    assert!(matches!(e, EnvRepoError::TooMany(3)), "got {e:?}");
    assert!(
        !stores
            .env
            .env_put(app.id, &name("B"), secret, 3)
            .await
            .unwrap()
    );
    assert_eq!(stores.env.env_list(app.id).await.unwrap().len(), 3);
    assert!(stores.env.env_delete(app.id, &name("A")).await.unwrap());
    assert!(
        stores
            .env
            .env_put(app.id, &name("D"), plain("1"), 3)
            .await
            .unwrap()
    );
    let names: Vec<String> = names_and_values(&stores, app.id)
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["B", "C", "D"]);
}

/// 16 racing puts of new names under a cap of 5: exactly 5 are created.
pub async fn env_racing_puts_never_pass_the_cap(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = fx.app("a").await;
    let mut tasks = JoinSet::new();
    for i in 0..16 {
        let stores = stores.clone();
        tasks.spawn(async move {
            stores
                .env
                .env_put(app.id, &name(&format!("VAR_{i}")), plain("x"), 5)
                .await
        });
    }
    let mut created = 0;
    while let Some(r) = tasks.join_next().await {
        match r.expect("task") {
            Ok(true) => created += 1,
            Err(EnvRepoError::TooMany(5)) => {}
            other => panic!("got {other:?}"),
        }
    }
    assert_eq!(created, 5);
    assert_eq!(stores.env.env_list(app.id).await.unwrap().len(), 5);
}

/// One app's variables and data key are its own, and go with it; an
/// unknown app has none, and no write for it succeeds (`AppNotFound`).
pub async fn env_apps_are_separate_and_go_with_their_app(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (a, b) = (fx.app("a").await, fx.app("b").await);
    let n = name("SHARED");
    stores.env.env_put(a.id, &n, plain("a"), MAX).await.unwrap();
    stores.env.env_put(b.id, &n, plain("b"), MAX).await.unwrap();
    stores
        .env
        .data_key_insert(a.id, wrapped("m1", 1))
        .await
        .unwrap();
    stores
        .env
        .data_key_insert(b.id, wrapped("m1", 2))
        .await
        .unwrap();
    assert_eq!(
        names_and_values(&stores, a.id).await,
        [("SHARED".to_owned(), plain("a"))]
    );
    assert!(stores.env.env_delete(b.id, &n).await.unwrap());
    assert_eq!(
        names_and_values(&stores, a.id).await,
        [("SHARED".to_owned(), plain("a"))]
    );
    assert_eq!(
        stores.env.data_key(a.id).await.unwrap(),
        Some(wrapped("m1", 1))
    );
    stores.apps.delete(a.id).await.unwrap();
    assert_eq!(
        stores.env.data_key(b.id).await.unwrap(),
        Some(wrapped("m1", 2))
    );
    let keys = stores.env.data_keys().await.unwrap();
    assert!(keys.iter().all(|(app, _)| *app != a.id), "{keys:?}");
    for app in [a.id, AppId::new()] {
        assert!(stores.env.env_list(app).await.unwrap().is_empty());
        assert_eq!(stores.env.data_key(app).await.unwrap(), None);
        assert!(!stores.env.env_delete(app, &n).await.unwrap());
        let e = stores
            .env
            .env_put(app, &n, plain("x"), MAX)
            .await
            .unwrap_err();
        assert!(matches!(e, EnvRepoError::AppNotFound), "got {e:?}");
        let e = stores
            .env
            .data_key_insert(app, wrapped("m1", 3))
            .await
            .unwrap_err();
        assert!(matches!(e, EnvRepoError::AppNotFound), "got {e:?}");
        let e = stores
            .env
            .data_key_replace(app, &wrapped("m1", 1), wrapped("m2", 1))
            .await
            .unwrap_err();
        assert!(matches!(e, EnvRepoError::AppNotFound), "got {e:?}");
    }
}

/// 16 racing first inserts of an app's data key: one wins, and every call
/// returns that one; a later insert returns it too.
pub async fn env_data_key_first_writer_wins_even_racing(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = fx.app("a").await;
    assert_eq!(stores.env.data_key(app.id).await.unwrap(), None);
    let mut tasks = JoinSet::new();
    for i in 0..16u8 {
        let stores = stores.clone();
        tasks.spawn(async move { stores.env.data_key_insert(app.id, wrapped("m1", i)).await });
    }
    let mut got = Vec::new();
    while let Some(r) = tasks.join_next().await {
        got.push(r.expect("task").expect("insert"));
    }
    let winner = got[0].clone();
    assert!(got.iter().all(|k| *k == winner), "{got:?}");
    assert!((0..16u8).any(|i| wrapped("m1", i) == winner));
    assert_eq!(
        stores.env.data_key(app.id).await.unwrap(),
        Some(winner.clone())
    );
    assert_eq!(
        stores
            .env
            .data_key_insert(app.id, wrapped("m2", 99))
            .await
            .unwrap(),
        winner
    );
}

/// `data_key_replace` swaps the key only if the stored one is `old`;
/// otherwise (or with none stored) it is `KeyChanged` and nothing changes.
pub async fn env_data_key_replace_is_a_compare_and_set(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = fx.app("a").await;
    let e = stores
        .env
        .data_key_replace(app.id, &wrapped("m1", 1), wrapped("m2", 1))
        .await
        .unwrap_err();
    assert!(matches!(e, EnvRepoError::KeyChanged), "got {e:?}");
    assert_eq!(stores.env.data_key(app.id).await.unwrap(), None);
    let first = stores
        .env
        .data_key_insert(app.id, wrapped("m1", 1))
        .await
        .unwrap();
    for wrong in [wrapped("m1", 2), wrapped("m0", 1), {
        let mut k = wrapped("m1", 1);
        k.sealed.nonce[0] ^= 1;
        k
    }] {
        let e = stores
            .env
            .data_key_replace(app.id, &wrong, wrapped("m2", 5))
            .await
            .unwrap_err();
        assert!(matches!(e, EnvRepoError::KeyChanged), "got {e:?}");
        assert_eq!(
            stores.env.data_key(app.id).await.unwrap(),
            Some(first.clone())
        );
    }
    stores
        .env
        .data_key_replace(app.id, &first, wrapped("m2", 5))
        .await
        .unwrap();
    assert_eq!(
        stores.env.data_key(app.id).await.unwrap(),
        Some(wrapped("m2", 5))
    );
    let e = stores
        .env
        .data_key_replace(app.id, &first, wrapped("m3", 5))
        .await
        .unwrap_err();
    assert!(matches!(e, EnvRepoError::KeyChanged), "got {e:?}");
}

/// `data_keys` lists every app's key, once each.
pub async fn env_data_keys_lists_every_apps_key(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (a, b, c) = (fx.app("a").await, fx.app("b").await, fx.app("c").await);
    stores
        .env
        .data_key_insert(a.id, wrapped("m1", 1))
        .await
        .unwrap();
    stores
        .env
        .data_key_insert(c.id, wrapped("m2", 3))
        .await
        .unwrap();
    let mine: HashSet<AppId> = [a.id, b.id, c.id].into();
    let mut keys: Vec<(AppId, WrappedKey)> = stores
        .env
        .data_keys()
        .await
        .unwrap()
        .into_iter()
        .filter(|(app, _)| mine.contains(app))
        .collect();
    keys.sort_by_key(|(app, _)| *app);
    let mut want = vec![(a.id, wrapped("m1", 1)), (c.id, wrapped("m2", 3))];
    want.sort_by_key(|(app, _)| *app);
    assert_eq!(keys, want);
}
