//! The domains port's cases: one owner per hostname, even racing; release
//! only by the owner; lists by name; domains go with their app.
//!
//! Every hostname here carries the fixture's unique tag, so the cases also
//! hold on a store that other cases share.

use std::collections::HashSet;
use std::slice;

use tokio::task::JoinSet;

use super::only;
use crate::domain::Hostname;
use crate::ids::AppId;
use crate::ports::{Domain, DomainRepoError};
use crate::stores::Stores;
use crate::testkit::Fixture;

/// The cases of this port, in order.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_domains_cases {
    ($($callback:ident)::+; $($args:tt)*) => {
        $($callback)::+! { $($args)* domains =>
            domains_claim_then_list_by_name,
            domains_a_held_name_is_taken_for_every_app,
            domains_racing_claims_have_one_winner,
            domains_release_is_idempotent_and_only_the_owners,
            domains_claim_for_an_unknown_app_is_app_not_found,
            domains_go_with_their_app,
            domains_each_app_lists_only_its_own,
        }
    };
}

/// `{fx.tag()}{rest}` as a hostname: unique to the fixture.
fn host(fx: &Fixture, rest: &str) -> Hostname {
    let name = format!("{}{rest}", fx.tag());
    Hostname::parse(&name).unwrap_or_else(|e| panic!("{name:?}: {e}"))
}

/// The domains of every app in `apps`, from `all_domains`, by name.
async fn all_of(stores: &Stores, apps: &[AppId]) -> Vec<Domain> {
    let mine: HashSet<AppId> = apps.iter().copied().collect();
    let mut all = only(&stores.domains.all_domains().await.unwrap(), &mine, |d| {
        d.app_id
    });
    all.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    all
}

fn names(domains: &[Domain]) -> Vec<&str> {
    domains.iter().map(|d| d.hostname.as_str()).collect()
}

/// A claim returns the stored domain; `domains_of` lists the app's domains
/// by name in byte order (`-` < `.` < digits < letters, which a locale's
/// collation would order otherwise) and `all_domains` holds the same rows.
pub async fn domains_claim_then_list_by_name(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = fx.app("a").await;
    assert!(stores.domains.domains_of(app.id).await.unwrap().is_empty());
    let before = crate::clock::now();
    let mut claimed = Vec::new();
    for rest in [
        "a.example.com",
        "0.example.com",
        ".example.com",
        "-x.example.com",
    ] {
        let name = host(&fx, rest);
        let d = stores.domains.claim(app.id, &name).await.unwrap();
        assert_eq!(d.hostname, name);
        assert_eq!(d.app_id, app.id);
        assert!(
            d.created_at >= before - chrono::Duration::seconds(1),
            "{d:?}"
        );
        assert!(
            d.created_at <= crate::clock::now() + chrono::Duration::seconds(1),
            "{d:?}"
        );
        claimed.push(d);
    }
    let listed = stores.domains.domains_of(app.id).await.unwrap();
    let tag = fx.tag();
    assert_eq!(
        names(&listed),
        [
            format!("{tag}-x.example.com"),
            format!("{tag}.example.com"),
            format!("{tag}0.example.com"),
            format!("{tag}a.example.com"),
        ]
    );
    claimed.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    assert_eq!(
        listed, claimed,
        "a listing returns the claimed rows as claimed"
    );
    assert_eq!(all_of(&stores, &[app.id]).await, claimed);
}

/// A name some app holds is `Taken` for another app and for its owner
/// alike (also spelt in other case: a [`Hostname`] is lowercase), and the
/// failed claims change nothing.
pub async fn domains_a_held_name_is_taken_for_every_app(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (a, b) = (fx.app("a").await, fx.app("b").await);
    let name = host(&fx, ".shop.example.com");
    let held = stores.domains.claim(a.id, &name).await.unwrap();
    let e = stores.domains.claim(b.id, &name).await.unwrap_err();
    assert!(matches!(e, DomainRepoError::Taken), "got {e:?}");
    let e = stores.domains.claim(a.id, &name).await.unwrap_err();
    assert!(matches!(e, DomainRepoError::Taken), "got {e:?}");
    let shouted = Hostname::parse(&name.as_str().to_ascii_uppercase()).unwrap();
    let e = stores.domains.claim(b.id, &shouted).await.unwrap_err();
    assert!(matches!(e, DomainRepoError::Taken), "got {e:?}");
    assert_eq!(
        stores.domains.domains_of(a.id).await.unwrap(),
        slice::from_ref(&held)
    );
    assert!(stores.domains.domains_of(b.id).await.unwrap().is_empty());
    assert_eq!(all_of(&stores, &[a.id, b.id]).await, [held]);
}

/// Sixteen apps claiming one name at once: exactly one wins, every other
/// claim is `Taken`, and the name is the winner's alone.
pub async fn domains_racing_claims_have_one_winner(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let mut apps = Vec::new();
    for i in 0..16 {
        apps.push(fx.app(&format!("r{i}")).await.id);
    }
    let name = host(&fx, ".race.example.com");
    let mut tasks = JoinSet::new();
    for &app in &apps {
        let (stores, name) = (stores.clone(), name.clone());
        tasks.spawn(async move { (app, stores.domains.claim(app, &name).await) });
    }
    let mut winners = Vec::new();
    let mut taken = 0;
    while let Some(r) = tasks.join_next().await {
        match r.expect("task") {
            (app, Ok(d)) => {
                assert_eq!((d.app_id, &d.hostname), (app, &name));
                winners.push(d);
            }
            (_, Err(DomainRepoError::Taken)) => taken += 1,
            (_, other) => panic!("got {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(taken, 15);
    let winner = winners.pop().unwrap();
    assert_eq!(all_of(&stores, &apps).await, slice::from_ref(&winner));
    for &app in &apps {
        let listed = stores.domains.domains_of(app).await.unwrap();
        if app == winner.app_id {
            assert_eq!(listed, slice::from_ref(&winner));
        } else {
            assert!(listed.is_empty(), "{listed:?}");
        }
    }
}

/// `release` says whether the app had the name: true once, then false.
/// Another app's release of it is false and leaves it with its owner;
/// once released, any app may claim it.
pub async fn domains_release_is_idempotent_and_only_the_owners(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (a, b) = (fx.app("a").await, fx.app("b").await);
    let name = host(&fx, ".example.org");
    let kept = host(&fx, "-kept.example.org");
    let held = stores.domains.claim(a.id, &name).await.unwrap();
    let other = stores.domains.claim(a.id, &kept).await.unwrap();
    assert!(!stores.domains.release(b.id, &name).await.unwrap());
    assert!(!stores.domains.release(AppId::new(), &name).await.unwrap());
    assert_eq!(
        stores.domains.domains_of(a.id).await.unwrap(),
        [other.clone(), held.clone()]
    );
    assert_eq!(all_of(&stores, &[a.id, b.id]).await, [other.clone(), held]);
    let e = stores.domains.claim(b.id, &name).await.unwrap_err();
    assert!(matches!(e, DomainRepoError::Taken), "got {e:?}");

    assert!(stores.domains.release(a.id, &name).await.unwrap());
    assert!(!stores.domains.release(a.id, &name).await.unwrap());
    assert_eq!(
        stores.domains.domains_of(a.id).await.unwrap(),
        slice::from_ref(&other)
    );
    // A name never claimed is not held either.
    let never = host(&fx, ".never.example.org");
    assert!(!stores.domains.release(a.id, &never).await.unwrap());

    let moved = stores.domains.claim(b.id, &name).await.unwrap();
    assert_eq!(moved.app_id, b.id);
    assert_eq!(
        stores.domains.domains_of(b.id).await.unwrap(),
        slice::from_ref(&moved)
    );
    assert_eq!(all_of(&stores, &[a.id, b.id]).await, [other, moved]);
}

/// A claim for an app that does not exist is `AppNotFound` and holds
/// nothing: the name stays free. An unknown app lists no domains.
pub async fn domains_claim_for_an_unknown_app_is_app_not_found(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let ghost = AppId::new();
    let name = host(&fx, ".ghost.example.com");
    let e = stores.domains.claim(ghost, &name).await.unwrap_err();
    assert!(matches!(e, DomainRepoError::AppNotFound), "got {e:?}");
    assert!(stores.domains.domains_of(ghost).await.unwrap().is_empty());
    assert!(all_of(&stores, &[ghost]).await.is_empty());
    let app = fx.app("a").await;
    let d = stores.domains.claim(app.id, &name).await.unwrap();
    assert_eq!(d.app_id, app.id);
}

/// Deleting an app drops its domains and only its: their names are free
/// for another app, and a claim for the deleted app is `AppNotFound`.
pub async fn domains_go_with_their_app(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (a, b) = (fx.app("a").await, fx.app("b").await);
    let (a1, a2) = (host(&fx, "-1.example.com"), host(&fx, "-2.example.com"));
    let b1 = host(&fx, "-b.example.com");
    stores.domains.claim(a.id, &a1).await.unwrap();
    stores.domains.claim(a.id, &a2).await.unwrap();
    let kept = stores.domains.claim(b.id, &b1).await.unwrap();

    stores.apps.delete(a.id).await.unwrap();
    assert!(stores.domains.domains_of(a.id).await.unwrap().is_empty());
    assert_eq!(all_of(&stores, &[a.id, b.id]).await, slice::from_ref(&kept));
    assert_eq!(stores.domains.domains_of(b.id).await.unwrap(), [kept]);
    assert!(!stores.domains.release(a.id, &a1).await.unwrap());
    let e = stores.domains.claim(a.id, &a1).await.unwrap_err();
    assert!(matches!(e, DomainRepoError::AppNotFound), "got {e:?}");

    let moved = stores.domains.claim(b.id, &a1).await.unwrap();
    assert_eq!(moved.app_id, b.id);
    assert_eq!(
        names(&stores.domains.domains_of(b.id).await.unwrap()),
        [a1.as_str(), b1.as_str()]
    );
}

/// Each app lists its own domains and no other's, and releasing one app's
/// name leaves the other's list as it was.
pub async fn domains_each_app_lists_only_its_own(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let (a, b, c) = (fx.app("a").await, fx.app("b").await, fx.app("c").await);
    let mut of_a = Vec::new();
    let mut of_b = Vec::new();
    for i in 0..3 {
        of_a.push(
            stores
                .domains
                .claim(a.id, &host(&fx, &format!("-a{i}.example.com")))
                .await
                .unwrap(),
        );
        of_b.push(
            stores
                .domains
                .claim(b.id, &host(&fx, &format!("-b{i}.example.com")))
                .await
                .unwrap(),
        );
    }
    assert_eq!(stores.domains.domains_of(a.id).await.unwrap(), of_a);
    assert_eq!(stores.domains.domains_of(b.id).await.unwrap(), of_b);
    assert!(stores.domains.domains_of(c.id).await.unwrap().is_empty());
    let both: Vec<Domain> = of_a.iter().chain(&of_b).cloned().collect();
    assert_eq!(all_of(&stores, &[a.id, b.id, c.id]).await, both);

    let gone = of_a.remove(1);
    assert!(stores.domains.release(a.id, &gone.hostname).await.unwrap());
    assert_eq!(stores.domains.domains_of(a.id).await.unwrap(), of_a);
    assert_eq!(stores.domains.domains_of(b.id).await.unwrap(), of_b);
}
