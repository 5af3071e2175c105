//! Authentication (feature `auth`): argon2 passwords, hashed API tokens, and
//! the [`AuthService`] that turns a bearer token into a [`Principal`].
//!
//! Secrets are never stored. Passwords are kept as argon2id PHC strings.
//! Tokens are 256 random bits shown once at issue; stores keep the SHA-256 of
//! the token, which is enough for a high-entropy secret and lets a lookup be
//! one indexed equality match. Every request re-reads the token's user, so a
//! deactivated user's tokens stop working on the very next request.
//!
//! Logins are throttled per client and username ([`throttle`]): after a few
//! wrong passwords, further attempts are refused at once, without running
//! argon2, and every argon2 run waits for one of a few slots (one per CPU),
//! so a flood of guesses queues instead of starving everything else.

pub mod throttle;

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::authz::{Capability, decide};
use crate::domain::{
    AdminUser, ApiToken, AppRole, DisplayName, InstanceRole, NewAdminUser, NewApiToken, Principal,
    TokenScope,
};
use crate::error::{ErrorKind, ServiceError};
use crate::ids::TokenId;
use crate::ports::{AdminUserRepoError, AppRepoError, AuthzRepoError, TokenRepoError};
use crate::stores::Stores;

/// The prefix of every token PiCloud issues, so that leaked tokens are easy to
/// recognise (and to scan for).
pub const TOKEN_PREFIX: &str = "pc_";

/// How long a token issued by login lives.
pub const LOGIN_TOKEN_TTL: Duration = Duration::hours(12);

/// The longest lifetime a token may be issued with (`expires_in`): ten years.
pub const MAX_TOKEN_LIFETIME: std::time::Duration =
    std::time::Duration::from_secs(10 * 366 * 24 * 60 * 60);

/// The shortest bootstrap token accepted (characters): 32 random characters
/// from any reasonable alphabet carry well over 128 bits.
pub const MIN_BOOTSTRAP_TOKEN_LEN: usize = 32;

/// The shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 8;

/// The longest password accepted, in characters (argon2 cost grows with it).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// A failure of the operating system's random source or of argon2.
#[derive(Debug, thiserror::Error)]
#[error("crypto failure: {0}")]
pub struct CryptoError(String);

impl CryptoError {
    /// Wraps another failure of the hashing machinery.
    pub(crate) fn from_auth(e: AuthError) -> Self {
        Self(e.to_string())
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| CryptoError(e.to_string()))?;
    Ok(buf)
}

/// A fresh token: `pc_` and 64 hex digits (256 random bits).
pub fn generate_token() -> Result<String, CryptoError> {
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        hex::encode(random_bytes::<32>()?)
    ))
}

/// The stored form of a token: the hex SHA-256 of its text.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Hashes a password with argon2id and a random salt, as a PHC string. Slow
/// on purpose (tens of milliseconds): call it off the async workers.
pub fn hash_password(password: &str) -> Result<String, CryptoError> {
    let salt =
        SaltString::encode_b64(&random_bytes::<16>()?).map_err(|e| CryptoError(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CryptoError(e.to_string()))
}

/// Checks a password against a PHC string. A malformed hash never matches.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash to verify against when the user does not exist, so that "no such
/// user" costs the same time as "wrong password".
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password("picloud-timing-equaliser").unwrap_or_default())
}

/// How many argon2 computations may run at once: one per CPU. Each takes
/// ~19 MiB and a core for tens of milliseconds, so an unbounded number is a
/// memory and CPU exhaustion attack through the login endpoint; more than one
/// per core would only make every check slower, and starve the rest of the
/// process of CPU.
fn hashing_permits() -> &'static Arc<Semaphore> {
    static PERMITS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    PERMITS.get_or_init(|| {
        let cpus = std::thread::available_parallelism().map_or(2, usize::from);
        Arc::new(Semaphore::new(cpus))
    })
}

/// How long a password check waits for a hashing slot before giving up.
const HASHING_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs slow crypto (argon2) off the async worker threads, at most
/// [`hashing_permits`] at once; when they stay busy for [`HASHING_WAIT`], the
/// caller gets [`AuthError::Busy`].
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AuthError> {
    let permit = tokio::time::timeout(HASHING_WAIT, Arc::clone(hashing_permits()).acquire_owned())
        .await
        .map_err(|_| AuthError::Busy)?
        .map_err(|_| AuthError::Busy)?;
    let result = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        f()
    })
    .await
    .map_err(|e| AuthError::Crypto(CryptoError(e.to_string())))?;
    Ok(result)
}

/// Checks a password's length, returning a message for people.
pub fn validate_password(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_LEN {
        Err(format!(
            "password must be at least {MIN_PASSWORD_LEN} characters"
        ))
    } else if n > MAX_PASSWORD_LEN {
        Err(format!(
            "password must be at most {MAX_PASSWORD_LEN} characters"
        ))
    } else {
        Ok(())
    }
}

/// Every outcome of [`AuthService`] other than success.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No valid credentials: unknown user, wrong password, unknown, expired or
    /// revoked token, or a deactivated user.
    #[error("invalid or missing credentials")]
    Unauthenticated,
    /// Authenticated, but not allowed.
    #[error("forbidden")]
    Forbidden,
    /// Too many password checks are running; try again shortly.
    #[error("too many logins in progress; try again shortly")]
    Busy,
    /// Too many failed logins for this client and username: refused without
    /// checking the password. Retry after `retry_after`.
    #[error("too many failed logins; try again in {} s", retry_after_secs(*.retry_after))]
    Throttled {
        /// How long until the next attempt is let through.
        retry_after: std::time::Duration,
    },
    /// The scope's app does not exist.
    #[error("app not found: {0}")]
    AppNotFound(String),
    /// The request breaks a rule (shown to the caller as is).
    #[error("{0}")]
    Invalid(String),
    /// Hashing or randomness failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The token store failed.
    #[error("token repository error: {0}")]
    Tokens(#[from] TokenRepoError),
    /// The user store failed.
    #[error("user repository error: {0}")]
    Users(#[from] AdminUserRepoError),
    /// The app store failed.
    #[error("app repository error: {0}")]
    Apps(#[from] AppRepoError),
    /// The authorization lookup failed.
    #[error("authorization repo error: {0}")]
    Authz(#[from] AuthzRepoError),
}

crate::error::from_authz_denied!(AuthError, not_found = AppNotFound);

impl ServiceError for AuthError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Unauthenticated => ErrorKind::Unauthenticated,
            Self::Forbidden => ErrorKind::Forbidden,
            Self::Busy => ErrorKind::Busy,
            Self::Throttled { .. } => ErrorKind::Throttled,
            Self::AppNotFound(_) => ErrorKind::NotFound,
            Self::Invalid(_) => ErrorKind::Invalid,
            Self::Crypto(_) | Self::Tokens(_) | Self::Users(_) | Self::Apps(_) | Self::Authz(_) => {
                ErrorKind::Internal
            }
        }
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Throttled { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

/// A token just issued: the secret (shown once) and its record.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The secret, to hand to the caller once. It is not stored.
    pub token: String,
    /// The stored record.
    pub record: ApiToken,
}

/// What [`AuthService::bootstrap`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Bootstrap {
    /// An active owner already exists: nothing was done.
    OwnerExists,
    /// An active owner already exists, and the configured token is not one
    /// of its working tokens (it changed since the owner was created, or
    /// was revoked): it is ignored. The server says so in its log, with the
    /// recovery command (`picloud admin create-owner-token`).
    ConfiguredTokenIgnored,
    /// The owner `admin` was created with the configured token.
    CreatedWithConfiguredToken,
    /// The owner `admin` was created with this generated token, to print once.
    CreatedWithGeneratedToken(String),
}

/// A wait as whole seconds for a `Retry-After` header: rounded up, at least 1.
pub fn retry_after_secs(wait: std::time::Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// Logs people in, issues tokens, and authenticates bearer tokens.
#[derive(Debug, Clone)]
pub struct AuthService {
    stores: Stores,
    throttle: throttle::LoginThrottle,
}

impl AuthService {
    /// A service over `stores`, with the default login throttle.
    pub fn new(stores: Stores) -> Self {
        Self::with_throttle(stores, throttle::LoginThrottle::default())
    }

    /// A service over `stores` whose logins go through `throttle` (clones of
    /// a throttle share its counters).
    pub fn with_throttle(stores: Stores, throttle: throttle::LoginThrottle) -> Self {
        Self { stores, throttle }
    }

    /// The login throttle.
    pub fn throttle(&self) -> &throttle::LoginThrottle {
        &self.throttle
    }

    /// Turns a presented bearer token into a principal. Unknown, expired and
    /// revoked tokens, and tokens of deactivated users, are all
    /// [`AuthError::Unauthenticated`].
    pub async fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        let (record, user) = self
            .stores
            .tokens
            .find_by_hash(&hash_token(token))
            .await?
            .ok_or(AuthError::Unauthenticated)?;
        if record.expires_at.is_some_and(|t| t <= Utc::now()) || !user.is_active {
            return Err(AuthError::Unauthenticated);
        }
        Ok(Principal {
            user_id: user.id,
            instance_role: user.instance_role,
            is_active: user.is_active,
            scope: record.scope,
        })
    }

    /// Signs out the holder of `token` (a dashboard session): the token is
    /// revoked. An unknown or already revoked token changes nothing.
    pub async fn sign_out(&self, token: &str) -> Result<(), AuthError> {
        if let Some((record, user)) = self.stores.tokens.find_by_hash(&hash_token(token)).await? {
            self.stores.tokens.revoke(user.id, record.id).await?;
        }
        Ok(())
    }

    /// The user `principal` acts for (for "who am I").
    pub async fn whoami(&self, principal: &Principal) -> Result<AdminUser, AuthError> {
        self.stores
            .users
            .get(principal.user_id)
            .await?
            .filter(|u| u.is_active)
            .ok_or(AuthError::Unauthenticated)
    }

    /// Checks a username and password and issues a login token (12 hours).
    /// The same as [`AuthService::login_from`] with no client address: the
    /// throttle then keys on the username alone.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
    ) -> Result<(IssuedToken, AdminUser), AuthError> {
        self.login_from(None, username, password).await
    }

    /// Checks a username and password from `client` (the peer's address, if
    /// the transport knows it) and issues a login token (12 hours).
    ///
    /// After a few consecutive failures for this client and username, it
    /// answers [`AuthError::Throttled`] at once, without a store read or a
    /// password check, until the backoff has passed (see [`throttle`]).
    pub async fn login_from(
        &self,
        client: Option<IpAddr>,
        username: &str,
        password: &str,
    ) -> Result<(IssuedToken, AdminUser), AuthError> {
        let attempt = self
            .throttle
            .begin(throttle::ThrottleKey::new(client, username), Instant::now())
            .map_err(|t| AuthError::Throttled {
                retry_after: t.retry_after,
            })?;
        let result = self.check_password(username, password).await;
        match &result {
            Ok(_) => attempt.succeeded(),
            Err(AuthError::Unauthenticated) => attempt.failed(Instant::now()),
            // Busy or a broken store says nothing about the password.
            Err(_) => drop(attempt),
        }
        result
    }

    async fn check_password(
        &self,
        username: &str,
        password: &str,
    ) -> Result<(IssuedToken, AdminUser), AuthError> {
        // A name no user can have is not looked up (it may hold bytes a
        // database refuses); it still costs a password check below.
        let creds = if crate::domain::validate_username(username).is_ok() {
            self.stores.users.credentials(username).await?
        } else {
            None
        };
        let (hash, user) = match creds {
            Some(c) => (c.password_hash, Some(c.user)),
            None => (None, None),
        };
        let password = password.to_owned();
        let stored = hash.clone();
        let matches = blocking(move || {
            // No user (or no password): verify against a dummy hash anyway, so
            // both cases cost the same time.
            let phc = stored.unwrap_or_else(|| dummy_hash().to_owned());
            verify_password(&password, &phc)
        })
        .await?;
        match user {
            Some(user) if matches && hash.is_some() && user.is_active => {
                let issued = self
                    .store_token(
                        &user,
                        fixed_name("login"),
                        None,
                        Some(Utc::now() + LOGIN_TOKEN_TTL),
                    )
                    .await?;
                Ok((issued, user))
            }
            _ => Err(AuthError::Unauthenticated),
        }
    }

    /// Changes the caller's own password. `current` must be their present
    /// password; a user who has none yet (the bootstrap owner `admin`) sets
    /// a first one without it. Scoped tokens may not (403). A wrong `current`
    /// is 401 and counts as a failed login for the throttle (so this is no
    /// way around the login backoff). Existing tokens keep working.
    pub async fn change_password(
        &self,
        principal: &Principal,
        client: Option<IpAddr>,
        current: Option<&str>,
        new: &str,
    ) -> Result<(), AuthError> {
        Self::may_manage_tokens(principal)?;
        validate_password(new).map_err(AuthError::Invalid)?;
        let user = self
            .stores
            .users
            .get(principal.user_id)
            .await?
            .ok_or(AuthError::Unauthenticated)?;
        let creds = self
            .stores
            .users
            .credentials(user.username.as_str())
            .await?
            .ok_or(AuthError::Unauthenticated)?;
        if let Some(stored) = creds.password_hash {
            let Some(current) = current else {
                return Err(AuthError::Invalid(
                    "current_password is required to change a password".into(),
                ));
            };
            let attempt = self
                .throttle
                .begin(
                    throttle::ThrottleKey::new(client, user.username.as_str()),
                    Instant::now(),
                )
                .map_err(|t| AuthError::Throttled {
                    retry_after: t.retry_after,
                })?;
            let current = current.to_owned();
            let matches = blocking(move || verify_password(&current, &stored)).await?;
            if !matches {
                attempt.failed(Instant::now());
                return Err(AuthError::Unauthenticated);
            }
            attempt.succeeded();
        }
        let new = new.to_owned();
        let hash = blocking(move || hash_password(&new)).await??;
        self.stores
            .users
            .set_password_hash(user.id, Some(hash))
            .await?;
        Ok(())
    }

    /// Issues a named token for the caller, optionally scoped to one app
    /// (`app` is an id or slug) with a maximum role (default `app_admin`).
    /// A scoped principal cannot issue tokens; a scope needs `AppView` on its
    /// app; `max_role` without `app` is refused. With `expires_in` the token
    /// stops working that long from now (1 s to [`MAX_TOKEN_LIFETIME`]);
    /// without it, it works until revoked.
    pub async fn issue_token(
        &self,
        principal: &Principal,
        name: &str,
        app: Option<&str>,
        max_role: Option<AppRole>,
        expires_in: Option<std::time::Duration>,
    ) -> Result<IssuedToken, AuthError> {
        Self::may_manage_tokens(principal)?;
        let expires_at = match expires_in {
            None => None,
            Some(d) if d.is_zero() || d > MAX_TOKEN_LIFETIME => {
                return Err(AuthError::Invalid(format!(
                    "expires_in must be 1 to {} seconds",
                    MAX_TOKEN_LIFETIME.as_secs()
                )));
            }
            Some(d) => Some(
                crate::clock::now()
                    + chrono::Duration::from_std(d)
                        .map_err(|_| AuthError::Invalid("expires_in is out of range".into()))?,
            ),
        };
        let name = DisplayName::parse_field(name, "token name", 100)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let scope = match (app, max_role) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(AuthError::Invalid("max_role needs an app".into()));
            }
            (Some(ident), max_role) => {
                let app = crate::authz::resolve_and_require(
                    &self.stores,
                    principal,
                    ident,
                    Capability::AppView,
                )
                .await?;
                Some(TokenScope {
                    app_id: app.id,
                    max_role: max_role.unwrap_or(AppRole::AppAdmin),
                })
            }
        };
        let user = self
            .stores
            .users
            .get(principal.user_id)
            .await?
            .ok_or(AuthError::Unauthenticated)?;
        self.store_token(&user, name, scope, expires_at).await
    }

    /// The caller's own tokens, newest first.
    pub async fn list_tokens(&self, principal: &Principal) -> Result<Vec<ApiToken>, AuthError> {
        Self::may_manage_tokens(principal)?;
        Ok(self.stores.tokens.list_for_user(principal.user_id).await?)
    }

    /// Revokes one of the caller's own tokens. Idempotent; another user's
    /// token is never touched.
    pub async fn revoke_token(&self, principal: &Principal, id: TokenId) -> Result<(), AuthError> {
        Self::may_manage_tokens(principal)?;
        Ok(self.stores.tokens.revoke(principal.user_id, id).await?)
    }

    /// `ManageOwnTokens`, through [`decide`]. An inactive caller is not
    /// authenticated at all (401, like a revoked token): the credentials of a
    /// deactivated user no longer identify anyone. A scoped token is refused
    /// (403): it must not see, mint or revoke its user's other tokens.
    fn may_manage_tokens(principal: &Principal) -> Result<(), AuthError> {
        if !principal.is_active {
            return Err(AuthError::Unauthenticated);
        }
        if !decide(principal, None, Capability::ManageOwnTokens) {
            return Err(AuthError::Forbidden);
        }
        Ok(())
    }

    async fn store_token(
        &self,
        user: &AdminUser,
        name: DisplayName,
        scope: Option<TokenScope>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<IssuedToken, AuthError> {
        let token = generate_token()?;
        self.store_secret(user, name, scope, expires_at, token)
            .await
    }

    async fn store_secret(
        &self,
        user: &AdminUser,
        name: DisplayName,
        scope: Option<TokenScope>,
        expires_at: Option<DateTime<Utc>>,
        token: String,
    ) -> Result<IssuedToken, AuthError> {
        let record = ApiToken {
            id: TokenId::new(),
            user_id: user.id,
            name,
            scope,
            created_at: crate::clock::now(),
            expires_at: expires_at.map(|t| {
                use chrono::SubsecRound;
                t.trunc_subsecs(6)
            }),
        };
        let record = self
            .stores
            .tokens
            .create(NewApiToken {
                token: record,
                token_hash: hash_token(&token),
            })
            .await?;
        Ok(IssuedToken { token, record })
    }

    /// Creates the owner `admin` when the store has no active owner. Its token
    /// is `configured` if given (at least [`MIN_BOOTSTRAP_TOKEN_LEN`]
    /// characters), else a generated one the caller prints once.
    ///
    /// With an active owner present it does nothing: the configured token is
    /// registered only when the owner is created (it is then stored, hashed,
    /// and survives restarts on a persistent store until revoked).
    pub async fn bootstrap(&self, configured: Option<&str>) -> Result<Bootstrap, AuthError> {
        if let Some(t) = configured
            && t.len() < MIN_BOOTSTRAP_TOKEN_LEN
        {
            return Err(AuthError::Invalid(format!(
                "PICLOUD_BOOTSTRAP_TOKEN must be at least {MIN_BOOTSTRAP_TOKEN_LEN} characters"
            )));
        }
        if self.stores.users.count_active_owners().await? > 0 {
            // The token is used only when the owner is created: a revoked
            // bootstrap token must stay revoked across restarts.
            if let Some(t) = configured
                && self.authenticate(t).await.is_err()
            {
                return Ok(Bootstrap::ConfiguredTokenIgnored);
            }
            return Ok(Bootstrap::OwnerExists);
        }
        let Some(owner) = self.make_admin_owner().await? else {
            // Another node starting on the same database won the race.
            return Ok(Bootstrap::OwnerExists);
        };
        match configured {
            Some(t) => {
                if self
                    .stores
                    .tokens
                    .find_by_hash(&hash_token(t))
                    .await?
                    .is_none()
                {
                    match self
                        .store_secret(&owner, fixed_name("bootstrap"), None, None, t.to_owned())
                        .await
                    {
                        Ok(_) => {}
                        // Another node starting at the same moment stored
                        // it first (cluster mode): the owner and its token
                        // exist, once.
                        Err(AuthError::Tokens(TokenRepoError::Conflict(_))) => {
                            return Ok(Bootstrap::OwnerExists);
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(Bootstrap::CreatedWithConfiguredToken)
            }
            None => {
                let issued = self
                    .store_token(&owner, fixed_name("bootstrap"), None, None)
                    .await?;
                Ok(Bootstrap::CreatedWithGeneratedToken(issued.token))
            }
        }
    }
}

impl AuthService {
    /// Makes `admin` an active owner: creates it, or promotes and
    /// reactivates it in one guarded step (a promotion never trips the
    /// last-owner rule). `None` when another node created it meanwhile.
    async fn make_admin_owner(&self) -> Result<Option<AdminUser>, AuthError> {
        match self.stores.users.find_by_username("admin").await? {
            Some(u) => Ok(Some(
                self.stores
                    .users
                    .update_guarded(u.id, Some(InstanceRole::Owner), Some(true), true)
                    .await?,
            )),
            None => {
                let new = NewAdminUser::new(admin_username(), InstanceRole::Owner);
                match self.stores.users.create(new).await {
                    Ok(u) => Ok(Some(u)),
                    Err(AdminUserRepoError::Conflict(_)) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Owner recovery, for an operator with access to the store (the
    /// `picloud admin create-owner-token` command): issues a fresh, ordinary
    /// token, named `recovery`, for an active owner (`admin` when it is one,
    /// else the first by username). With no active owner left, the owner
    /// `admin` is made one first, as [`bootstrap`](Self::bootstrap) does.
    /// No authorization: whoever can reach the store directly already holds
    /// everything.
    pub async fn create_owner_token(&self) -> Result<(IssuedToken, AdminUser), AuthError> {
        let owners: Vec<AdminUser> = self
            .stores
            .users
            .list()
            .await?
            .into_iter()
            .filter(|u| u.is_active && u.instance_role == InstanceRole::Owner)
            .collect();
        let owner = match owners.iter().find(|u| u.username.as_str() == "admin") {
            Some(admin) => admin.clone(),
            None => match owners.into_iter().next() {
                Some(first) => first,
                None => match self.make_admin_owner().await? {
                    Some(admin) => admin,
                    // Created a moment ago by a starting server: promote it.
                    None => self.make_admin_owner().await?.ok_or(AuthError::Invalid(
                        "no active owner could be made: the user `admin` keeps changing".into(),
                    ))?,
                },
            },
        };
        let issued = self
            .store_token(&owner, fixed_name("recovery"), None, None)
            .await?;
        Ok((issued, owner))
    }
}

/// A token name PiCloud itself gives (`login`, `bootstrap`, `recovery`).
fn fixed_name(name: &'static str) -> DisplayName {
    DisplayName::parse(name).expect("a valid display name")
}

/// The bootstrap owner's name.
fn admin_username() -> crate::domain::Username {
    crate::domain::Username::parse("admin").expect("\"admin\" is a valid username")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_hashed() {
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 64);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), a);
        assert_eq!(hash_token(&a).len(), 64);
    }

    /// An `admin` that exists but is no active owner is made one in a single
    /// guarded call (a promotion, with the right to change owners), and gets
    /// a fresh bootstrap token.
    #[cfg(all(feature = "mock", feature = "testkit"))]
    #[tokio::test]
    async fn bootstrap_repairs_an_existing_admin_through_the_guarded_update() {
        use std::sync::Arc;

        use crate::ports::tokens::MockTokenRepository;
        use crate::ports::users::MockAdminUserRepository;

        let admin = AdminUser {
            is_active: false,
            ..NewAdminUser::new(admin_username(), InstanceRole::Member).to_user()
        };
        let id = admin.id;
        let mut users = MockAdminUserRepository::new();
        users
            .expect_count_active_owners()
            .times(1)
            .returning(|| Ok(0));
        let found = admin.clone();
        users
            .expect_find_by_username()
            .withf(|name| name == "admin")
            .times(1)
            .returning(move |_| Ok(Some(found.clone())));
        users
            .expect_update_guarded()
            .withf(move |u, role, active, may_touch_owner| {
                (*u, *role, *active, *may_touch_owner)
                    == (id, Some(InstanceRole::Owner), Some(true), true)
            })
            .times(1)
            .returning(move |_, _, _, _| {
                Ok(AdminUser {
                    instance_role: InstanceRole::Owner,
                    is_active: true,
                    ..admin.clone()
                })
            });
        let mut tokens = MockTokenRepository::new();
        tokens
            .expect_create()
            .withf(move |t| t.token.user_id == id)
            .times(1)
            .returning(|t| Ok(t.token));
        let mut stores = crate::testkit::strict_mocks();
        stores.users = Arc::new(users);
        stores.tokens = Arc::new(tokens);
        let done = AuthService::new(stores).bootstrap(None).await.unwrap();
        assert!(
            matches!(done, Bootstrap::CreatedWithGeneratedToken(_)),
            "{done:?}"
        );
    }

    #[test]
    fn passwords_hash_and_verify() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("wrong horse", &phc));
        assert!(!verify_password("correct horse", "not a phc string"));
        assert!(validate_password("short").is_err());
        assert!(validate_password("long enough").is_ok());
    }
}
