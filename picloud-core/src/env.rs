//! [`EnvService`]: each app's environment variables and secrets.
//!
//! Editors write them (`AppEdit`), viewers read them (`AppView`); a secret
//! shows its name and `secret: true`, never its value, once written. Secrets
//! are sealed here (see [`crate::secrets`]) before they reach the store,
//! under the app's data key, itself wrapped by the instance's master key.
//!
//! Runs read the environment through [`EnvService::for_run`]: one decrypted
//! copy per app, cached in memory, dropped by every change made through
//! this service, so a change is live at once for the next run on this node.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::authz::{AuthzRepoError, Capability};
use crate::domain::{
    App, ENV_MAX_VALUE_BYTES, ENV_MAX_VARS_PER_APP, EnvName, EnvValue, EnvVar, Principal,
};
use crate::error::{ErrorKind, ServiceError};
use crate::ids::AppId;
use crate::ports::{AppRepoError, EnvRepoError};
use crate::secrets::{DataKey, MasterKey, SecretError};
use crate::stores::Stores;

/// What a caller is told when a secret is written without a master key.
pub const NO_MASTER_KEY: &str = "secrets need a master key, and this server has none: set PICLOUD_MASTER_KEY (64 hex characters, e.g. from `openssl rand -hex 32`) or PICLOUD_MASTER_KEY_FILE, and restart";

/// Every outcome of [`EnvService`] other than success.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvError {
    /// The caller may not do this.
    #[error("forbidden")]
    Forbidden,
    /// No app has this id or slug.
    #[error("app not found: {0}")]
    AppNotFound(String),
    /// The app has no variable of this name.
    #[error("no environment variable {0}")]
    NotFound(String),
    /// The input breaks a rule (a bad name, a value too long, too many).
    #[error("{0}")]
    Invalid(String),
    /// A secret was written, and the server has no master key.
    #[error("{NO_MASTER_KEY}")]
    NoMasterKey,
    /// Sealing or opening failed (a wrong master key, a changed row).
    #[error("secret sealing failed: {0}")]
    Sealing(#[from] SecretError),
    /// The env store failed.
    #[error("env store error: {0}")]
    Env(EnvRepoError),
    /// The app store failed.
    #[error("app repository error: {0}")]
    Apps(#[from] AppRepoError),
    /// The authorization lookup failed.
    #[error("authorization repo error: {0}")]
    Authz(#[from] AuthzRepoError),
}

crate::error::from_authz_denied!(EnvError, not_found = AppNotFound);

impl From<EnvRepoError> for EnvError {
    fn from(e: EnvRepoError) -> Self {
        match e {
            EnvRepoError::TooMany(n) => {
                Self::Invalid(format!("an app may hold at most {n} environment variables"))
            }
            other => Self::Env(other),
        }
    }
}

impl ServiceError for EnvError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Forbidden => ErrorKind::Forbidden,
            Self::AppNotFound(_) | Self::NotFound(_) => ErrorKind::NotFound,
            Self::Invalid(_) => ErrorKind::Invalid,
            Self::NoMasterKey => ErrorKind::Conflict,
            Self::Sealing(_) | Self::Env(_) | Self::Apps(_) | Self::Authz(_) => ErrorKind::Internal,
        }
    }
}

/// A variable as the API shows it: a secret's value is never shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvView {
    /// Its name.
    pub name: EnvName,
    /// The value of a plain variable; `None` for a secret.
    pub value: Option<String>,
    /// Whether it is a secret.
    pub secret: bool,
    /// When it was last written.
    pub updated_at: DateTime<Utc>,
}

impl EnvView {
    fn of(var: &EnvVar) -> Self {
        match &var.value {
            EnvValue::Plain(v) => Self {
                name: var.name.clone(),
                value: Some(v.clone()),
                secret: false,
                updated_at: var.updated_at,
            },
            EnvValue::Secret(_) => Self {
                name: var.name.clone(),
                value: None,
                secret: true,
                updated_at: var.updated_at,
            },
        }
    }
}

/// The shortest secret value that is redacted from logs: shorter ones
/// (`"1"`, `"on"`) would black out ordinary text.
pub const REDACT_MIN_BYTES: usize = 4;

/// An app's environment as a run sees it: every variable in plaintext, and
/// the secret values, for redaction from what the run leaves behind. Its
/// `Debug` form shows names only.
#[derive(Clone, Default)]
pub struct RunEnv {
    /// Every variable, by name.
    pub vars: Vec<(String, String)>,
    /// The forms of the secrets of at least [`REDACT_MIN_BYTES`] to redact
    /// (each value as it is, percent-encoded as in a URL, and escaped as
    /// in a printed string), longest first, so a secret inside another is
    /// redacted as the longer one.
    pub secrets: Vec<String>,
    /// `vars` as the script's `env` map, built once.
    pub map: rhai::Map,
}

impl std::fmt::Debug for RunEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunEnv")
            .field(
                "vars",
                &self
                    .vars
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("secrets", &self.secrets.len())
            .finish_non_exhaustive()
    }
}

/// The forms a secret `value` may take in a log line or an error: as it is,
/// percent-encoded (a URL in an error message), and escaped as rhai and
/// JSON print a string.
fn redacted_forms(value: &str) -> Vec<String> {
    let mut forms = vec![value.to_owned()];
    let mut encoded = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    let escaped = format!("{value:?}");
    let escaped = escaped[1..escaped.len() - 1].to_owned();
    let json = serde_json::to_string(value).unwrap_or_default();
    let json = json
        .get(1..json.len().saturating_sub(1))
        .unwrap_or("")
        .to_owned();
    for form in [encoded, escaped, json] {
        if !forms.contains(&form) {
            forms.push(form);
        }
    }
    forms
}

impl RunEnv {
    /// `text` with every secret value replaced by `[redacted]`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "[redacted]");
            }
        }
        out
    }

    /// Whether there is anything to redact.
    pub fn has_secrets(&self) -> bool {
        !self.secrets.is_empty()
    }
}

#[derive(Debug)]
struct Inner {
    stores: Stores,
    master: Option<MasterKey>,
    data_keys: Mutex<HashMap<AppId, DataKey>>,
    runs: Mutex<HashMap<AppId, (Instant, Arc<RunEnv>)>>,
    /// Bumped by every change, so a load that raced one is not cached.
    generation: AtomicU64,
}

/// The rules of the env API, and each app's environment for its runs.
#[derive(Debug, Clone)]
pub struct EnvService {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The most apps whose environment is cached; past it the cache starts
/// again.
const MAX_CACHED_APPS: usize = 10_000;

/// How long a cached environment stands: a change made through another
/// node (several nodes on one PostgreSQL) is live here after this.
pub const RUN_ENV_TTL: Duration = Duration::from_secs(10);

impl EnvService {
    /// The service over `stores`, sealing secrets under `master` (`None`:
    /// secrets cannot be written, and [`EnvError::NoMasterKey`] says how to
    /// configure one).
    pub fn new(stores: Stores, master: Option<MasterKey>) -> Self {
        Self {
            inner: Arc::new(Inner {
                stores,
                master,
                data_keys: Mutex::default(),
                runs: Mutex::default(),
                generation: AtomicU64::new(0),
            }),
        }
    }

    /// Whether secrets can be written.
    pub fn has_master_key(&self) -> bool {
        self.inner.master.is_some()
    }

    async fn app(
        &self,
        principal: &Principal,
        ident: &str,
        capability: fn(AppId) -> Capability,
    ) -> Result<App, EnvError> {
        Ok(
            crate::authz::resolve_and_require(&self.inner.stores, principal, ident, capability)
                .await?,
        )
    }

    fn changed(&self, app: AppId) {
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
        lock(&self.inner.runs).remove(&app);
    }

    /// The data key of `app`, made (and stored wrapped) on first use.
    async fn data_key(&self, app: AppId) -> Result<DataKey, EnvError> {
        let master = self.inner.master.as_ref().ok_or(EnvError::NoMasterKey)?;
        if let Some(key) = lock(&self.inner.data_keys).get(&app) {
            return Ok(key.clone());
        }
        let env = &self.inner.stores.env;
        let wrapped = match env.data_key(app).await? {
            Some(w) => w,
            None => {
                let fresh = master.wrap(app, &DataKey::random()?)?;
                env.data_key_insert(app, fresh).await?
            }
        };
        let key = master.unwrap_key(app, &wrapped)?;
        lock(&self.inner.data_keys).insert(app, key.clone());
        Ok(key)
    }

    /// Creates or replaces `name` (AppEdit); `true` if it was created. A
    /// secret is sealed before it is stored; without a master key it is
    /// [`EnvError::NoMasterKey`].
    pub async fn put(
        &self,
        principal: &Principal,
        app: &str,
        name: &str,
        value: String,
        secret: bool,
    ) -> Result<(EnvView, bool), EnvError> {
        let app = self.app(principal, app, Capability::AppEdit).await?;
        let name = EnvName::parse(name).map_err(|e| EnvError::Invalid(e.to_string()))?;
        if value.len() > ENV_MAX_VALUE_BYTES {
            return Err(EnvError::Invalid(format!(
                "a value may hold at most {ENV_MAX_VALUE_BYTES} bytes"
            )));
        }
        let stored = if secret {
            let key = self.data_key(app.id).await?;
            EnvValue::Secret(key.seal(app.id, &name, &value)?)
        } else {
            EnvValue::Plain(value.clone())
        };
        let stores = self.inner.stores.clone();
        let (id, n) = (app.id, name.clone());
        // On its own task: a caller who hangs up cannot leave the store
        // changed and the cache stale.
        let this = self.clone();
        let created = crate::scripts::to_the_end(async move {
            let created = stores
                .env
                .env_put(id, &n, stored, ENV_MAX_VARS_PER_APP)
                .await;
            this.changed(id);
            created
        })
        .await?;
        let view = EnvView {
            name,
            value: (!secret).then_some(value),
            secret,
            updated_at: crate::clock::now(),
        };
        Ok((view, created))
    }

    /// Deletes `name` (AppEdit); idempotent, like a member's removal:
    /// deleting a name that is not there changes nothing and succeeds.
    pub async fn delete(
        &self,
        principal: &Principal,
        app: &str,
        name: &str,
    ) -> Result<(), EnvError> {
        let app = self.app(principal, app, Capability::AppEdit).await?;
        let Ok(name) = EnvName::parse(name) else {
            return Ok(());
        };
        let stores = self.inner.stores.clone();
        let this = self.clone();
        let (id, n) = (app.id, name.clone());
        crate::scripts::to_the_end(async move {
            let gone = stores.env.env_delete(id, &n).await;
            this.changed(id);
            gone
        })
        .await?;
        Ok(())
    }

    /// The app's variables, by name (AppView); secrets without values.
    pub async fn list(&self, principal: &Principal, app: &str) -> Result<Vec<EnvView>, EnvError> {
        let app = self.app(principal, app, Capability::AppView).await?;
        let vars = self.inner.stores.env.env_list(app.id).await?;
        Ok(vars.iter().map(EnvView::of).collect())
    }

    /// One variable (AppView); a secret without its value.
    pub async fn get(
        &self,
        principal: &Principal,
        app: &str,
        name: &str,
    ) -> Result<EnvView, EnvError> {
        let app = self.app(principal, app, Capability::AppView).await?;
        let vars = self.inner.stores.env.env_list(app.id).await?;
        vars.iter()
            .find(|v| v.name.as_str() == name)
            .map(EnvView::of)
            .ok_or_else(|| EnvError::NotFound(name.to_owned()))
    }

    /// The environment of `app` for a run, in plaintext: from the cache, or
    /// read and opened once.
    pub async fn for_run(&self, app: AppId) -> Result<Arc<RunEnv>, EnvError> {
        if let Some((at, env)) = lock(&self.inner.runs).get(&app)
            && at.elapsed() < RUN_ENV_TTL
        {
            return Ok(Arc::clone(env));
        }
        let generation = self.inner.generation.load(Ordering::SeqCst);
        let vars = self.inner.stores.env.env_list(app).await?;
        let mut env = RunEnv::default();
        for var in vars {
            let value = match &var.value {
                EnvValue::Plain(v) => v.clone(),
                EnvValue::Secret(sealed) => {
                    let key = self.data_key(app).await?;
                    let value = key.open(app, &var.name, sealed)?;
                    if value.len() >= REDACT_MIN_BYTES {
                        env.secrets.extend(redacted_forms(&value));
                    }
                    value
                }
            };
            env.vars.push((var.name.to_string(), value));
        }
        env.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        env.secrets.dedup();
        env.map = crate::executor::host::build_env_map(
            env.vars.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        );
        let env = Arc::new(env);
        let mut runs = lock(&self.inner.runs);
        if self.inner.generation.load(Ordering::SeqCst) == generation {
            if runs.len() >= MAX_CACHED_APPS {
                runs.clear();
            }
            runs.insert(app, (Instant::now(), Arc::clone(&env)));
        }
        Ok(env)
    }

    /// Forgets what is cached of `app` (its environment changed elsewhere,
    /// or the app was deleted).
    pub fn forget(&self, app: AppId) {
        self.changed(app);
        lock(&self.inner.data_keys).remove(&app);
    }

    /// Forgets what is cached of every app (cluster mode: changes may have
    /// been missed).
    pub fn forget_all(&self) {
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
        lock(&self.inner.runs).clear();
        lock(&self.inner.data_keys).clear();
    }

    /// Re-wraps every app's data key from `old` to `new`, straight through
    /// the store (offline: `picloud admin rotate-master-key`). Keys already
    /// under `new` are skipped, so an interrupted rotation can be run
    /// again. Returns how many keys were re-wrapped.
    pub async fn rotate_master_key(
        stores: &Stores,
        old: &MasterKey,
        new: &MasterKey,
    ) -> Result<usize, EnvError> {
        let mut n = 0;
        for (app, wrapped) in stores.env.data_keys().await? {
            if wrapped.master_key_id == new.id() {
                continue;
            }
            let key = old.unwrap_key(app, &wrapped)?;
            stores
                .env
                .data_key_replace(app, &wrapped, new.wrap(app, &key)?)
                .await?;
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_replaces_the_longest_secret_first() {
        let env = RunEnv {
            secrets: vec!["abcdefgh".into(), "abcd".into()],
            ..RunEnv::default()
        };
        assert_eq!(env.redact("x abcdefgh y abcd"), "x [redacted] y [redacted]");
        assert_eq!(env.redact("nothing"), "nothing");
    }

    #[test]
    fn a_secret_is_redacted_in_its_encoded_and_escaped_forms_too() {
        let forms = redacted_forms("a b\"c/é");
        assert!(forms.contains(&"a b\"c/é".to_owned()));
        assert!(forms.contains(&"a%20b%22c%2F%C3%A9".to_owned()));
        assert!(forms.contains(&"a b\\\"c/é".to_owned()));
        assert!(
            !format!(
                "{:?}",
                RunEnv {
                    vars: vec![("K".into(), "hunter22".into())],
                    ..RunEnv::default()
                }
            )
            .contains("hunter22")
        );
    }
}
