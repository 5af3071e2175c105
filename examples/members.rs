//! A walk through PiCloud's membership rules on the in-memory store.
//!
//! ```text
//! cargo run --example members
//! ```
//!
//! It creates an owner, an admin and a few members, then grants, changes and
//! removes memberships, printing each call and its outcome: the same outcomes
//! the HTTP API maps to 201, 409, 422, 404 and 403.

use picloud::store::memory::MemoryStore;
use picloud::{
    AdminUser, AppMembershipDetail, AppRole, Capability, InstanceRole, MembershipError,
    MembershipService, NewAdminUser, NewApp, Principal, Slug, Stores, my_role, require,
};

async fn user(stores: &Stores, name: &str, role: InstanceRole, active: bool) -> AdminUser {
    let mut new = NewAdminUser::new(
        picloud::Username::parse(name).expect("a valid username"),
        role,
    );
    new.is_active = active;
    stores.users.create(new).await.expect("create user")
}

fn show<T: std::fmt::Debug>(what: &str, r: &Result<T, MembershipError>) {
    match r {
        Ok(v) => println!("  ok    {what}\n        -> {v:?}"),
        Err(e) => println!("  error {what}\n        -> {e}"),
    }
}

fn brief(d: &AppMembershipDetail) -> String {
    format!("{} as {}", d.username, d.role)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let stores = MemoryStore::new().into_stores();
    let owner = user(&stores, "olivia", InstanceRole::Owner, true).await;
    let admin = user(&stores, "adam", InstanceRole::Admin, true).await;
    let mia = user(&stores, "mia", InstanceRole::Member, true).await;
    let max = user(&stores, "max", InstanceRole::Member, true).await;
    let gone = user(&stores, "gus", InstanceRole::Member, false).await;
    let slug = Slug::parse("shop").expect("a valid slug");
    let app = stores
        .apps
        .create(NewApp::new(
            slug,
            picloud::DisplayName::parse("Shop").expect("a valid name"),
        ))
        .await
        .expect("create app");
    let slug = app.slug.as_str();
    let svc = MembershipService::new(stores.clone());
    let (as_owner, as_admin, as_mia) = (
        Principal::of(&owner),
        Principal::of(&admin),
        Principal::of(&mia),
    );

    println!(
        "app {slug}; users: owner {}, admin {}, members {}, {} and (inactive) {}\n",
        owner.username, admin.username, mia.username, max.username, gone.username
    );

    println!("The owner grants mia `viewer`:");
    let r = svc.grant(&as_owner, slug, mia.id, AppRole::Viewer).await;
    show("grant mia viewer", &r.map(|d| brief(&d)));

    println!("A second grant is refused: role changes go through PATCH (HTTP 409):");
    show(
        "grant mia editor",
        &svc.grant(&as_owner, slug, mia.id, AppRole::Editor).await,
    );

    println!("Inactive users and owners/admins get no explicit rows (HTTP 422):");
    show(
        "grant gus viewer",
        &svc.grant(&as_owner, slug, gone.id, AppRole::Viewer).await,
    );
    show(
        "grant adam viewer",
        &svc.grant(&as_owner, slug, admin.id, AppRole::Viewer).await,
    );

    println!("Changing the role of a non-member never creates one (HTTP 404):");
    show(
        "change max to editor",
        &svc.change_role(&as_owner, slug, max.id, AppRole::Editor)
            .await,
    );

    println!("An instance admin is an implicit editor, not an app admin (HTTP 403):");
    show("admin lists members", &svc.list(&as_admin, slug).await);

    println!("Promote mia to app_admin; she can now manage members herself:");
    let r = svc
        .change_role(&as_owner, slug, mia.id, AppRole::AppAdmin)
        .await;
    show("change mia to app_admin", &r.map(|d| brief(&d)));
    let r = svc.grant(&as_mia, slug, max.id, AppRole::Editor).await;
    show("mia grants max editor", &r.map(|d| brief(&d)));
    let r = svc.list(&as_mia, slug).await;
    show(
        "mia lists members",
        &r.map(|v| v.iter().map(brief).collect::<Vec<_>>()),
    );

    println!("Effective roles (my_role) on the app:");
    for u in [&owner, &admin, &mia, &max, &gone] {
        let p = Principal::of(u);
        let explicit = stores.authz.app_role(app.id, u.id).await.unwrap();
        let can_edit = require(stores.authz.as_ref(), &p, Capability::AppEdit(app.id))
            .await
            .is_ok();
        println!(
            "  {:<20} my_role = {:<10} can edit: {can_edit}",
            u.username,
            my_role(&p, app.id, explicit).map_or("none".to_string(), |r| r.to_string())
        );
    }

    println!("\nRemoval is idempotent (HTTP 204 twice):");
    show("remove max", &svc.remove(&as_owner, slug, max.id).await);
    show(
        "remove max again",
        &svc.remove(&as_owner, slug, max.id).await,
    );
}
