//! # picloud-store-memory
//!
//! An in-memory implementation of every PiCloud port. It is the default store
//! of the `picloud` server (nothing persists across restarts) and the reference
//! against which other stores are compared: it passes the same conformance
//! suite as the PostgreSQL store and mirrors its observable semantics, down to
//! foreign keys (a membership needs an existing app and user), cascades
//! (deleting an app deletes its memberships) and ordering.
//!
//! Every operation takes one lock for its whole duration, which makes each one
//! atomic exactly as a single SQL statement is: `try_insert` never overwrites,
//! `update_role` never creates.
//!
//! ```
//! use picloud_store_memory::MemoryStore;
//!
//! let stores = MemoryStore::new().into_stores();
//! # let _ = stores;
//! ```
#![forbid(unsafe_code)]

mod tokens;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use picloud_core::Stores;
use picloud_core::domain::{
    AdminUser, ApiToken, App, AppMembership, AppMembershipDetail, AppRole, Deployed, InstanceRole,
    InvocationRecord, NewAdminUser, NewApiToken, NewApp, Script, ScriptName, ScriptVersion,
    ScriptVersionInfo, UserCredentials,
};
use picloud_core::ids::{AdminUserId, AppId, ScriptId, TokenId};
use picloud_core::ports::{
    AdminUserRepoError, AdminUserRepository, AppMembersRepoError, AppMembersRepository,
    AppRepoError, AppRepository, AuthzRepo, AuthzRepoError, INVOCATION_BYTES_PER_APP,
    INVOCATION_BYTES_PER_SCRIPT, INVOCATION_RECORD_MAX_BYTES, INVOCATIONS_KEPT, InvocationLog,
    InvocationLogError, QuotaExceeded, ScriptRepoError, ScriptRepository, StorageQuota,
    TokenRepoError, TokenRepository, fit_record,
};

/// Every port in memory. Cheap to create; share it through an `Arc`.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: RwLock<State>,
}

#[derive(Debug, Default)]
struct State {
    apps: HashMap<AppId, App>,
    app_slugs: HashMap<String, AppId>,
    users: HashMap<AdminUserId, StoredUser>,
    usernames: HashMap<String, AdminUserId>,
    /// Memberships keyed by `(app, user)`, so one app's rows are a range.
    members: BTreeMap<(AppId, AdminUserId), AppMembership>,
    /// The same memberships by `(user, app)`, for "apps I can see".
    members_by_user: BTreeSet<(AdminUserId, AppId)>,
    /// API tokens by the hash of their secret, indexed by id, user, scope
    /// app and expiry.
    tokens: tokens::Tokens,
    /// Scripts by `(app, name)`, so one app's scripts are a range, by name.
    scripts: BTreeMap<(AppId, String), StoredScript>,
    /// Per-app limits overrides (JSON text).
    app_limits: HashMap<AppId, String>,
    /// Recent invocations per script, oldest first (by start time, then
    /// arrival).
    invocations: HashMap<ScriptId, VecDeque<KeptRecord>>,
    /// The arrival number of the next invocation record (PostgreSQL's
    /// `bigserial` id), which breaks ties between equal start times.
    next_record: u64,
}

#[derive(Debug, Clone)]
struct StoredScript {
    script: Script,
    versions: Vec<ScriptVersion>,
    /// The bytes of all `versions`' sources (what the app's quota counts).
    source_bytes: u64,
}

/// An invocation record as the log keeps it.
#[derive(Debug, Clone)]
struct KeptRecord {
    /// Its arrival number.
    seq: u64,
    /// Its [`InvocationRecord::log_bytes`].
    bytes: usize,
    record: InvocationRecord,
}

impl KeptRecord {
    /// Its place in "newest first" order: start time, then arrival.
    fn key(&self) -> (i64, u64) {
        (self.record.at.timestamp_micros(), self.seq)
    }
}

#[derive(Debug, Clone)]
struct StoredUser {
    user: AdminUser,
    password_hash: Option<String>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// This store as a [`Stores`] bundle: one shared instance, one view per port.
    pub fn into_stores(self) -> Stores {
        Stores::from_shared(Arc::new(self))
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave `State` half-written:
        // every mutation is a handful of infallible map operations.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

fn sorted_by_slug(mut apps: Vec<App>) -> Vec<App> {
    apps.sort_by(|a, b| a.slug.cmp(&b.slug));
    apps
}

#[async_trait]
impl AppRepository for MemoryStore {
    async fn create(&self, app: NewApp) -> Result<App, AppRepoError> {
        let mut s = self.write();
        if s.app_slugs.contains_key(app.slug.as_str()) {
            return Err(AppRepoError::Conflict(app.slug.to_string()));
        }
        if s.apps.contains_key(&app.id) {
            return Err(AppRepoError::Conflict(app.id.to_string()));
        }
        let app = app.into_app();
        s.app_slugs.insert(app.slug.to_string(), app.id);
        s.apps.insert(app.id, app.clone());
        Ok(app)
    }

    async fn get(&self, id: AppId) -> Result<Option<App>, AppRepoError> {
        Ok(self.read().apps.get(&id).cloned())
    }

    async fn find_by_slug(&self, slug: &str) -> Result<Option<App>, AppRepoError> {
        let s = self.read();
        Ok(s.app_slugs.get(slug).and_then(|id| s.apps.get(id)).cloned())
    }

    async fn list(&self) -> Result<Vec<App>, AppRepoError> {
        Ok(sorted_by_slug(self.read().apps.values().cloned().collect()))
    }

    async fn list_for_member(
        &self,
        user: AdminUserId,
    ) -> Result<Vec<(App, AppRole)>, AppRepoError> {
        let s = self.read();
        let mut apps: Vec<(App, AppRole)> = s
            .members_by_user
            .range((user, AppId::from(uuid_min()))..=(user, AppId::from(uuid_max())))
            .filter_map(|&(_, app)| {
                let role = s.members.get(&(app, user))?.role;
                s.apps.get(&app).map(|a| (a.clone(), role))
            })
            .collect();
        apps.sort_by(|a, b| a.0.slug.cmp(&b.0.slug));
        Ok(apps)
    }

    async fn delete(&self, id: AppId) -> Result<(), AppRepoError> {
        let mut s = self.write();
        let app = s.apps.remove(&id).ok_or(AppRepoError::NotFound)?;
        s.app_slugs.remove(app.slug.as_str());
        let users: Vec<AdminUserId> = app_range(&s.members, id).map(|(k, _)| k.1).collect();
        for user in users {
            s.members.remove(&(id, user));
            s.members_by_user.remove(&(user, id));
        }
        // Tokens scoped to the app, its scripts, their invocations and its
        // limits go with it (ON DELETE CASCADE in SQL).
        s.tokens.remove_scoped_to(id);
        let gone: Vec<ScriptId> = s
            .scripts
            .iter()
            .filter(|((app, _), _)| *app == id)
            .map(|(_, st)| st.script.id)
            .collect();
        s.scripts.retain(|(app, _), _| *app != id);
        for script in gone {
            s.invocations.remove(&script);
        }
        s.app_limits.remove(&id);
        Ok(())
    }
}

#[async_trait]
impl AdminUserRepository for MemoryStore {
    async fn create(&self, new: NewAdminUser) -> Result<AdminUser, AdminUserRepoError> {
        let mut s = self.write();
        if s.usernames.contains_key(&new.username) {
            return Err(AdminUserRepoError::Conflict(new.username));
        }
        if s.users.contains_key(&new.id) {
            return Err(AdminUserRepoError::Conflict(new.id.to_string()));
        }
        let user = new.to_user();
        s.usernames.insert(user.username.clone(), user.id);
        s.users.insert(
            user.id,
            StoredUser {
                user: user.clone(),
                password_hash: new.password_hash,
            },
        );
        Ok(user)
    }

    async fn get(&self, id: AdminUserId) -> Result<Option<AdminUser>, AdminUserRepoError> {
        Ok(self.read().users.get(&id).map(|u| u.user.clone()))
    }

    async fn find_by_username(
        &self,
        username: &str,
    ) -> Result<Option<AdminUser>, AdminUserRepoError> {
        let s = self.read();
        Ok(s.usernames
            .get(username)
            .and_then(|id| s.users.get(id))
            .map(|u| u.user.clone()))
    }

    async fn credentials(
        &self,
        username: &str,
    ) -> Result<Option<UserCredentials>, AdminUserRepoError> {
        let s = self.read();
        Ok(s.usernames
            .get(username)
            .and_then(|id| s.users.get(id))
            .map(|u| UserCredentials {
                user: u.user.clone(),
                password_hash: u.password_hash.clone(),
            }))
    }

    async fn list(&self) -> Result<Vec<AdminUser>, AdminUserRepoError> {
        let mut users: Vec<AdminUser> =
            self.read().users.values().map(|u| u.user.clone()).collect();
        users.sort_by(|a, b| a.username.as_bytes().cmp(b.username.as_bytes()));
        Ok(users)
    }

    async fn set_active(
        &self,
        id: AdminUserId,
        is_active: bool,
    ) -> Result<AdminUser, AdminUserRepoError> {
        let mut s = self.write();
        let stored = s.users.get_mut(&id).ok_or(AdminUserRepoError::NotFound)?;
        stored.user.is_active = is_active;
        Ok(stored.user.clone())
    }

    async fn set_instance_role(
        &self,
        id: AdminUserId,
        role: InstanceRole,
    ) -> Result<AdminUser, AdminUserRepoError> {
        let mut s = self.write();
        let stored = s.users.get_mut(&id).ok_or(AdminUserRepoError::NotFound)?;
        stored.user.instance_role = role;
        Ok(stored.user.clone())
    }

    async fn update_guarded(
        &self,
        id: AdminUserId,
        role: Option<InstanceRole>,
        is_active: Option<bool>,
        may_touch_owner: bool,
    ) -> Result<AdminUser, AdminUserRepoError> {
        // One write lock around the checks and the change.
        let mut s = self.write();
        let user = &s.users.get(&id).ok_or(AdminUserRepoError::NotFound)?.user;
        let changes = role.is_some() || is_active.is_some();
        if changes && !may_touch_owner && user.instance_role == InstanceRole::Owner {
            return Err(AdminUserRepoError::TargetIsOwner);
        }
        let owns = |role: InstanceRole, active: bool| role == InstanceRole::Owner && active;
        let before = owns(user.instance_role, user.is_active);
        let after = owns(
            role.unwrap_or(user.instance_role),
            is_active.unwrap_or(user.is_active),
        );
        if before && !after {
            let others = s
                .users
                .values()
                .filter(|u| u.user.id != id && owns(u.user.instance_role, u.user.is_active))
                .count();
            if others == 0 {
                return Err(AdminUserRepoError::LastOwner);
            }
        }
        let stored = s.users.get_mut(&id).ok_or(AdminUserRepoError::NotFound)?;
        if let Some(role) = role {
            stored.user.instance_role = role;
        }
        if let Some(active) = is_active {
            stored.user.is_active = active;
        }
        Ok(stored.user.clone())
    }

    async fn set_password_hash(
        &self,
        id: AdminUserId,
        password_hash: Option<String>,
    ) -> Result<(), AdminUserRepoError> {
        let mut s = self.write();
        let stored = s.users.get_mut(&id).ok_or(AdminUserRepoError::NotFound)?;
        stored.password_hash = password_hash;
        Ok(())
    }

    async fn count_active_owners(&self) -> Result<u64, AdminUserRepoError> {
        let n = self
            .read()
            .users
            .values()
            .filter(|u| u.user.is_active && u.user.instance_role == InstanceRole::Owner)
            .count();
        Ok(n as u64)
    }
}

const fn uuid_min() -> uuid::Uuid {
    uuid::Uuid::nil()
}

const fn uuid_max() -> uuid::Uuid {
    uuid::Uuid::max()
}

fn app_range(
    members: &BTreeMap<(AppId, AdminUserId), AppMembership>,
    app: AppId,
) -> impl Iterator<Item = (&(AppId, AdminUserId), &AppMembership)> {
    members.range((app, AdminUserId::from(uuid_min()))..=(app, AdminUserId::from(uuid_max())))
}

impl State {
    /// The foreign keys of `app_members`: both ends must exist.
    fn check_refs(&self, app: AppId, user: AdminUserId) -> Result<(), AppMembersRepoError> {
        if self.apps.contains_key(&app) && self.users.contains_key(&user) {
            Ok(())
        } else {
            Err(AppMembersRepoError::NotFound)
        }
    }

    fn insert_member(&mut self, row: AppMembership) {
        self.members_by_user.insert((row.user_id, row.app_id));
        self.members.insert((row.app_id, row.user_id), row);
    }
}

#[async_trait]
impl AppMembersRepository for MemoryStore {
    async fn list_for_app_enriched(
        &self,
        app: AppId,
    ) -> Result<Vec<AppMembershipDetail>, AppMembersRepoError> {
        let s = self.read();
        let mut rows: Vec<AppMembershipDetail> = app_range(&s.members, app)
            .filter_map(|(_, m)| {
                s.users
                    .get(&m.user_id)
                    .map(|u| AppMembershipDetail::compose(&u.user, m))
            })
            .collect();
        rows.sort_by(|a, b| a.username.as_bytes().cmp(b.username.as_bytes()));
        Ok(rows)
    }

    async fn find(
        &self,
        app: AppId,
        user: AdminUserId,
    ) -> Result<Option<AppMembership>, AppMembersRepoError> {
        Ok(self.read().members.get(&(app, user)).cloned())
    }

    async fn try_insert(
        &self,
        app: AppId,
        user: AdminUserId,
        role: AppRole,
    ) -> Result<Option<AppMembership>, AppMembersRepoError> {
        let mut s = self.write();
        s.check_refs(app, user)?;
        if s.members.contains_key(&(app, user)) {
            return Ok(None);
        }
        let row = AppMembership {
            app_id: app,
            user_id: user,
            role,
            created_at: picloud_core::clock::now(),
        };
        s.insert_member(row.clone());
        Ok(Some(row))
    }

    async fn update_role(
        &self,
        app: AppId,
        user: AdminUserId,
        role: AppRole,
    ) -> Result<Option<AppMembership>, AppMembersRepoError> {
        let mut s = self.write();
        Ok(s.members.get_mut(&(app, user)).map(|row| {
            row.role = role;
            row.clone()
        }))
    }

    async fn upsert(
        &self,
        app: AppId,
        user: AdminUserId,
        role: AppRole,
    ) -> Result<AppMembership, AppMembersRepoError> {
        let mut s = self.write();
        s.check_refs(app, user)?;
        if let Some(row) = s.members.get_mut(&(app, user)) {
            row.role = role;
            return Ok(row.clone());
        }
        let row = AppMembership {
            app_id: app,
            user_id: user,
            role,
            created_at: picloud_core::clock::now(),
        };
        s.insert_member(row.clone());
        Ok(row)
    }

    async fn remove(&self, app: AppId, user: AdminUserId) -> Result<(), AppMembersRepoError> {
        let mut s = self.write();
        s.members.remove(&(app, user));
        s.members_by_user.remove(&(user, app));
        Ok(())
    }
}

#[async_trait]
impl AuthzRepo for MemoryStore {
    async fn app_role(
        &self,
        app: AppId,
        user: AdminUserId,
    ) -> Result<Option<AppRole>, AuthzRepoError> {
        Ok(self.read().members.get(&(app, user)).map(|m| m.role))
    }
}

#[async_trait]
impl TokenRepository for MemoryStore {
    async fn create(&self, new: NewApiToken) -> Result<ApiToken, TokenRepoError> {
        let mut s = self.write();
        let t = &new.token;
        if !s.users.contains_key(&t.user_id)
            || t.scope
                .is_some_and(|scope| !s.apps.contains_key(&scope.app_id))
        {
            return Err(TokenRepoError::NotFound);
        }
        if s.tokens.is_taken(&new.token_hash, t.id) {
            return Err(TokenRepoError::Conflict(t.id.to_string()));
        }
        // Purges a bounded batch of expired tokens first (see `tokens`).
        s.tokens
            .insert(new.token_hash, new.token.clone(), chrono::Utc::now());
        Ok(new.token)
    }

    async fn find_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<(ApiToken, AdminUser)>, TokenRepoError> {
        let s = self.read();
        Ok(s.tokens
            .get(token_hash)
            .and_then(|t| s.users.get(&t.user_id).map(|u| (t.clone(), u.user.clone()))))
    }

    async fn list_for_user(&self, user: AdminUserId) -> Result<Vec<ApiToken>, TokenRepoError> {
        let mut tokens: Vec<ApiToken> = self.read().tokens.of_user(user).cloned().collect();
        tokens.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        Ok(tokens)
    }

    async fn revoke(&self, user: AdminUserId, id: TokenId) -> Result<(), TokenRepoError> {
        let mut s = self.write();
        if s.tokens.get_by_id(id).is_some_and(|t| t.user_id == user) {
            s.tokens.remove(id);
        }
        Ok(())
    }
}

impl State {
    fn script(&self, app: AppId, name: &ScriptName) -> Option<&StoredScript> {
        self.scripts.get(&(app, name.as_str().to_owned()))
    }

    /// The app's scripts, by name.
    fn app_scripts(&self, app: AppId) -> impl Iterator<Item = &StoredScript> {
        self.scripts
            .range((app, String::new())..)
            .take_while(move |((a, _), _)| *a == app)
            .map(|(_, st)| st)
    }

    /// Drops the oldest records of `script` beyond its bounds: it keeps the
    /// newest while they fit [`INVOCATIONS_KEPT`] and
    /// [`INVOCATION_BYTES_PER_SCRIPT`].
    fn trim_script(&mut self, script: ScriptId) {
        let Some(log) = self.invocations.get_mut(&script) else {
            return;
        };
        let (mut kept, mut bytes) = (0, 0);
        for r in log.iter().rev() {
            if kept == INVOCATIONS_KEPT || bytes + r.bytes > INVOCATION_BYTES_PER_SCRIPT {
                break;
            }
            kept += 1;
            bytes += r.bytes;
        }
        let dropped = log.len() - kept;
        log.drain(..dropped);
    }

    /// Drops the app's oldest records beyond [`INVOCATION_BYTES_PER_APP`]:
    /// walking all its scripts' records from the newest, the first that
    /// overflows goes, with every older one.
    fn trim_app(&mut self, app: AppId) {
        let scripts: Vec<ScriptId> = self.app_scripts(app).map(|st| st.script.id).collect();
        let mut all: Vec<((i64, u64), usize)> = scripts
            .iter()
            .filter_map(|id| self.invocations.get(id))
            .flatten()
            .map(|r| (r.key(), r.bytes))
            .collect();
        if all.iter().map(|r| r.1).sum::<usize>() <= INVOCATION_BYTES_PER_APP {
            return;
        }
        all.sort_unstable_by(|a, b| b.cmp(a));
        let mut bytes = 0;
        let Some(&(first_dropped, _)) = all.iter().find(|r| {
            bytes += r.1;
            bytes > INVOCATION_BYTES_PER_APP
        }) else {
            return;
        };
        for id in scripts {
            if let Some(log) = self.invocations.get_mut(&id) {
                while log.front().is_some_and(|r| r.key() <= first_dropped) {
                    log.pop_front();
                }
            }
        }
    }
}

#[async_trait]
impl ScriptRepository for MemoryStore {
    async fn deploy(
        &self,
        app: AppId,
        name: &ScriptName,
        source: String,
        by: AdminUserId,
        quota: StorageQuota,
    ) -> Result<Deployed, ScriptRepoError> {
        let mut s = self.write();
        if !s.apps.contains_key(&app) || !s.users.contains_key(&by) {
            return Err(ScriptRepoError::NotFound);
        }
        // The quota is checked under the same write lock as the insert.
        let size = source.len() as u64;
        let used: u64 = s.app_scripts(app).map(|st| st.source_bytes).sum();
        if used.saturating_add(size) > quota.source_bytes_per_app {
            return Err(ScriptRepoError::QuotaExceeded(
                QuotaExceeded::SourceBytesPerApp {
                    limit: quota.source_bytes_per_app,
                },
            ));
        }
        if s.script(app, name)
            .is_some_and(|st| st.script.latest_version >= quota.versions_per_script)
        {
            return Err(ScriptRepoError::QuotaExceeded(
                QuotaExceeded::VersionsPerScript {
                    limit: quota.versions_per_script,
                },
            ));
        }
        let now = picloud_core::clock::now();
        let key = (app, name.as_str().to_owned());
        let created = !s.scripts.contains_key(&key);
        let stored = s.scripts.entry(key).or_insert_with(|| StoredScript {
            script: Script {
                id: ScriptId::new(),
                app_id: app,
                name: name.clone(),
                live_version: 0,
                latest_version: 0,
                created_at: now,
                updated_at: now,
            },
            versions: Vec::new(),
            source_bytes: 0,
        });
        let version = ScriptVersion {
            script_id: stored.script.id,
            version: stored.script.latest_version + 1,
            source,
            created_by: by,
            created_at: now,
        };
        stored.versions.push(version.clone());
        stored.source_bytes += size;
        stored.script.latest_version = version.version;
        stored.script.live_version = version.version;
        stored.script.updated_at = now;
        Ok(Deployed {
            script: stored.script.clone(),
            version,
            created,
        })
    }

    async fn get(&self, app: AppId, name: &ScriptName) -> Result<Option<Script>, ScriptRepoError> {
        Ok(self.read().script(app, name).map(|st| st.script.clone()))
    }

    async fn list(&self, app: AppId) -> Result<Vec<Script>, ScriptRepoError> {
        let s = self.read();
        let mut scripts: Vec<Script> = s
            .scripts
            .range((app, String::new())..)
            .take_while(|((a, _), _)| *a == app)
            .map(|(_, st)| st.script.clone())
            .collect();
        scripts.sort_by(|a, b| a.name.as_str().as_bytes().cmp(b.name.as_str().as_bytes()));
        Ok(scripts)
    }

    async fn versions(
        &self,
        app: AppId,
        name: &ScriptName,
    ) -> Result<Vec<ScriptVersionInfo>, ScriptRepoError> {
        Ok(self
            .read()
            .script(app, name)
            .map(|st| st.versions.iter().map(ScriptVersion::info).collect())
            .unwrap_or_default())
    }

    async fn version(
        &self,
        app: AppId,
        name: &ScriptName,
        version: u32,
    ) -> Result<Option<ScriptVersion>, ScriptRepoError> {
        Ok(self
            .read()
            .script(app, name)
            .and_then(|st| st.versions.iter().find(|v| v.version == version).cloned()))
    }

    async fn set_live(
        &self,
        app: AppId,
        name: &ScriptName,
        version: u32,
    ) -> Result<Script, ScriptRepoError> {
        let mut s = self.write();
        let st = s
            .scripts
            .get_mut(&(app, name.as_str().to_owned()))
            .ok_or(ScriptRepoError::NotFound)?;
        if !st.versions.iter().any(|v| v.version == version) {
            return Err(ScriptRepoError::NotFound);
        }
        st.script.live_version = version;
        st.script.updated_at = picloud_core::clock::now();
        Ok(st.script.clone())
    }

    async fn delete(&self, app: AppId, name: &ScriptName) -> Result<bool, ScriptRepoError> {
        let mut s = self.write();
        let Some(gone) = s.scripts.remove(&(app, name.as_str().to_owned())) else {
            return Ok(false);
        };
        s.invocations.remove(&gone.script.id);
        Ok(true)
    }

    async fn source_bytes(&self, app: AppId) -> Result<u64, ScriptRepoError> {
        Ok(self.read().app_scripts(app).map(|st| st.source_bytes).sum())
    }

    async fn all_live(&self) -> Result<Vec<(Script, ScriptVersion)>, ScriptRepoError> {
        let s = self.read();
        Ok(s.scripts
            .values()
            .filter_map(|st| {
                st.versions
                    .iter()
                    .find(|v| v.version == st.script.live_version)
                    .map(|v| (st.script.clone(), v.clone()))
            })
            .collect())
    }

    async fn app_limits(&self, app: AppId) -> Result<Option<String>, ScriptRepoError> {
        Ok(self.read().app_limits.get(&app).cloned())
    }

    async fn set_app_limits(
        &self,
        app: AppId,
        limits: Option<String>,
    ) -> Result<(), ScriptRepoError> {
        let mut s = self.write();
        if !s.apps.contains_key(&app) {
            return Err(ScriptRepoError::NotFound);
        }
        match limits {
            Some(l) => s.app_limits.insert(app, l),
            None => s.app_limits.remove(&app),
        };
        Ok(())
    }
}

#[async_trait]
impl InvocationLog for MemoryStore {
    async fn append(&self, records: Vec<InvocationRecord>) -> Result<(), InvocationLogError> {
        let mut s = self.write();
        let app_of: HashMap<ScriptId, AppId> = s
            .scripts
            .values()
            .map(|st| (st.script.id, st.script.app_id))
            .collect();
        let mut scripts = BTreeSet::new();
        let mut apps = BTreeSet::new();
        for mut record in records {
            let Some(&app) = app_of.get(&record.script_id) else {
                continue;
            };
            fit_record(&mut record, INVOCATION_RECORD_MAX_BYTES);
            let kept = KeptRecord {
                seq: s.next_record,
                bytes: record.log_bytes(),
                record,
            };
            s.next_record += 1;
            scripts.insert(kept.record.script_id);
            apps.insert(app);
            let log = s.invocations.entry(kept.record.script_id).or_default();
            // Kept in `at` order (records are stamped when they start but
            // arrive when they finish), so retention drops the oldest.
            let at = log.partition_point(|x| x.record.at <= kept.record.at);
            log.insert(at, kept);
        }
        for script in scripts {
            s.trim_script(script);
        }
        for app in apps {
            s.trim_app(app);
        }
        Ok(())
    }

    async fn recent(
        &self,
        script: ScriptId,
        limit: usize,
    ) -> Result<Vec<InvocationRecord>, InvocationLogError> {
        // Newest first; among equal times, the later arrival first. Only
        // the `limit` records asked for are cloned.
        Ok(self
            .read()
            .invocations
            .get(&script)
            .map(|log| {
                log.iter()
                    .rev()
                    .take(limit)
                    .map(|r| r.record.clone())
                    .collect()
            })
            .unwrap_or_default())
    }
}
