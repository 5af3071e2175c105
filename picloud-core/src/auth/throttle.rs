//! Login backoff: a flood of wrong passwords must not cost an argon2 run
//! each, nor slow everyone else's logins down.
//!
//! Failures are counted per [`ThrottleKey`]: the client's address (IPv6 by
//! its /64, since one host commonly holds a whole /64) and the username as
//! typed. Keying on both means an attacker elsewhere cannot lock the real
//! user out; when the transport knows no address (an embedder's router
//! without `ConnectInfo`), the key falls back to the username alone.
//!
//! After [`ThrottleConfig::free_failures`] consecutive failures a key is
//! blocked for [`ThrottleConfig::base_delay`], doubling with each further
//! failure up to [`ThrottleConfig::max_delay`]; while blocked, attempts are
//! refused at once, before any password check. A success clears the key, and
//! a key quiet for [`ThrottleConfig::forget_after`] starts afresh. Attempts in
//! flight count too, so parallel guesses cannot all slip through before the
//! first failure is recorded.
//!
//! Memory is bounded: at most [`ThrottleConfig::max_keys`] keys are kept; a new
//! key beyond that evicts the least recently used one. The clock is passed in
//! (`now`) so the logic is tested without waiting.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The settings of a [`LoginThrottle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Consecutive failures allowed before a key is blocked (default 5).
    pub free_failures: u32,
    /// The first block (default 1 s); it doubles with each further failure.
    pub base_delay: Duration,
    /// The longest block (default 60 s).
    pub max_delay: Duration,
    /// A key with no attempt for this long is forgotten (default 15 min).
    pub forget_after: Duration,
    /// The most keys remembered (default 10 000); beyond, the least
    /// recently used is evicted.
    pub max_keys: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            free_failures: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            forget_after: Duration::from_secs(15 * 60),
            max_keys: 10_000,
        }
    }
}

/// Who is trying to log in, as far as the throttle is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ThrottleKey {
    client: Option<IpAddr>,
    username: String,
}

/// The longest username kept in a key, in characters: no valid username is
/// longer, and longer ones must not make keys large.
const KEY_USERNAME_CHARS: usize = 64;

impl ThrottleKey {
    /// The key of `username` logging in from `client` (if known).
    pub fn new(client: Option<IpAddr>, username: &str) -> Self {
        let client = client.map(|ip| match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    IpAddr::V6(prefix.into())
                }
            },
        });
        Self {
            client,
            username: username.chars().take(KEY_USERNAME_CHARS).collect(),
        }
    }
}

/// Why an attempt may not go ahead: retry after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// How long until the key may try again.
    pub retry_after: Duration,
}

#[derive(Debug)]
struct Entry {
    /// Consecutive failures.
    failures: u32,
    /// Attempts started and not finished.
    in_flight: u32,
    /// Refuse attempts until then.
    blocked_until: Option<Instant>,
    /// The last attempt (start or finish).
    last_seen: Instant,
    /// Position in the recency order.
    stamp: u64,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<ThrottleKey, Entry>,
    /// Keys by recency (`stamp`), least recent first.
    recency: BTreeMap<u64, ThrottleKey>,
    next_stamp: u64,
}

impl State {
    fn touch(&mut self, key: &ThrottleKey, now: Instant) {
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        if let Some(e) = self.entries.get_mut(key) {
            self.recency.remove(&e.stamp);
            e.stamp = stamp;
            e.last_seen = now;
            self.recency.insert(stamp, key.clone());
        }
    }

    fn remove(&mut self, key: &ThrottleKey) {
        if let Some(e) = self.entries.remove(key) {
            self.recency.remove(&e.stamp);
        }
    }
}

/// Counts failed logins per key and refuses attempts while a key is blocked.
/// Cheap to share: clones share the same counters.
#[derive(Debug, Clone)]
pub struct LoginThrottle {
    config: ThrottleConfig,
    state: Arc<Mutex<State>>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self::new(ThrottleConfig::default())
    }
}

impl LoginThrottle {
    /// A throttle with these settings.
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            config,
            state: Arc::default(),
        }
    }

    /// Its settings.
    pub fn config(&self) -> ThrottleConfig {
        self.config
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update is a few infallible map operations: a panic elsewhere
        // cannot leave the state half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How long a key with `failures` consecutive failures stays blocked.
    fn delay(&self, failures: u32) -> Option<Duration> {
        let over = failures.checked_sub(self.config.free_failures)?;
        let factor = 2u32.saturating_pow(over.min(31));
        Some(
            self.config
                .base_delay
                .saturating_mul(factor)
                .min(self.config.max_delay),
        )
    }

    /// Starts an attempt for `key` at `now`, or refuses it. The attempt must
    /// be finished with [`Attempt::succeeded`] or [`Attempt::failed`];
    /// dropping it unfinished (a cancelled request) counts as neither.
    pub fn begin(&self, key: ThrottleKey, now: Instant) -> Result<Attempt, Throttled> {
        let mut s = self.lock();
        let config = self.config;
        if let Some(e) = s.entries.get(&key)
            && now.saturating_duration_since(e.last_seen) >= config.forget_after
            && e.in_flight == 0
        {
            s.remove(&key);
        }
        if !s.entries.contains_key(&key) {
            if s.entries.len() >= config.max_keys.max(1) {
                let oldest = s.recency.first_key_value().map(|(_, k)| k.clone());
                if let Some(oldest) = oldest {
                    s.remove(&oldest);
                }
            }
            let stamp = s.next_stamp;
            s.next_stamp += 1;
            s.entries.insert(
                key.clone(),
                Entry {
                    failures: 0,
                    in_flight: 0,
                    blocked_until: None,
                    last_seen: now,
                    stamp,
                },
            );
            s.recency.insert(stamp, key.clone());
        }
        let e = s.entries.get_mut(&key).expect("inserted above");
        if let Some(until) = e.blocked_until
            && until > now
        {
            return Err(Throttled {
                retry_after: until - now,
            });
        }
        // Guesses in flight count as failures to be: once the free ones are
        // used up, one probe at a time.
        let allowed = config.free_failures.saturating_sub(e.failures).max(1);
        if e.in_flight >= allowed {
            return Err(Throttled {
                retry_after: config.base_delay,
            });
        }
        e.in_flight += 1;
        s.touch(&key, now);
        Ok(Attempt {
            throttle: self.clone(),
            key: Some(key),
        })
    }

    fn finish(&self, key: &ThrottleKey, outcome: Option<bool>, now: Instant) {
        let mut s = self.lock();
        let Some(e) = s.entries.get_mut(key) else {
            return; // evicted meanwhile
        };
        e.in_flight = e.in_flight.saturating_sub(1);
        match outcome {
            Some(true) => s.remove(key),
            Some(false) => {
                e.failures = e.failures.saturating_add(1);
                if let Some(delay) = self.delay(e.failures) {
                    e.blocked_until = Some(now + delay);
                }
                s.touch(key, now);
            }
            None => {}
        }
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A login attempt let through by [`LoginThrottle::begin`].
#[derive(Debug)]
#[must_use = "finish the attempt with `succeeded` or `failed`"]
pub struct Attempt {
    throttle: LoginThrottle,
    key: Option<ThrottleKey>,
}

impl Attempt {
    /// The credentials were right: the key starts afresh.
    pub fn succeeded(mut self) {
        if let Some(key) = self.key.take() {
            self.throttle.finish(&key, Some(true), Instant::now());
        }
    }

    /// The credentials were wrong, at `now`.
    pub fn failed(mut self, now: Instant) {
        if let Some(key) = self.key.take() {
            self.throttle.finish(&key, Some(false), now);
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.throttle.finish(&key, None, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ip: &str, user: &str) -> ThrottleKey {
        ThrottleKey::new(Some(ip.parse().unwrap()), user)
    }

    fn fail(t: &LoginThrottle, k: &ThrottleKey, now: Instant) {
        t.begin(k.clone(), now).expect("let through").failed(now);
    }

    #[test]
    fn five_failures_then_blocks_doubling_to_the_cap_and_a_success_resets() {
        let t = LoginThrottle::default();
        let k = key("10.0.0.1", "mia");
        let t0 = Instant::now();
        for _ in 0..5 {
            fail(&t, &k, t0);
        }
        // Blocked for 1 s after the fifth failure.
        let refused = t.begin(k.clone(), t0).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(1));
        let refused = t
            .begin(k.clone(), t0 + Duration::from_millis(400))
            .unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_millis(600));
        // Then each failure doubles the block: 2, 4, ... capped at 60 s.
        let mut now = t0 + Duration::from_secs(1);
        for expected in [2, 4, 8, 16, 32, 60, 60] {
            fail(&t, &k, now);
            let refused = t.begin(k.clone(), now).unwrap_err();
            assert_eq!(refused.retry_after, Duration::from_secs(expected));
            now += Duration::from_secs(expected);
        }
        // Once the block has passed, a success clears the key.
        t.begin(k.clone(), now).unwrap().succeeded();
        assert!(t.is_empty());
        for _ in 0..5 {
            fail(&t, &k, now);
        }
        assert!(t.begin(k, now).is_err(), "five fresh failures block again");
    }

    #[test]
    fn keys_are_per_address_and_username() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        let attacker = key("10.0.0.66", "mia");
        for _ in 0..5 {
            fail(&t, &attacker, now);
        }
        assert!(t.begin(attacker, now).is_err());
        t.begin(key("10.0.0.1", "mia"), now).unwrap().succeeded();
        t.begin(key("10.0.0.66", "olga"), now).unwrap().succeeded();
        // Without an address, the username alone is the key.
        let anon = ThrottleKey::new(None, "mia");
        for _ in 0..5 {
            fail(&t, &anon, now);
        }
        assert!(t.begin(anon, now).is_err());
        // One IPv6 /64 is one client; an IPv4-mapped address is its IPv4.
        assert_eq!(key("2001:db8::1", "u"), key("2001:db8::ffff:2", "u"));
        assert_ne!(key("2001:db8::1", "u"), key("2001:db8:0:1::1", "u"));
        assert_eq!(key("::ffff:10.0.0.1", "u"), key("10.0.0.1", "u"));
    }

    #[test]
    fn parallel_guesses_cannot_all_slip_through() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        let k = key("10.0.0.1", "mia");
        let attempts: Vec<Attempt> = (0..5).map(|_| t.begin(k.clone(), now).unwrap()).collect();
        let refused = t.begin(k.clone(), now).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(1));
        // A cancelled attempt frees its slot without counting.
        drop(attempts);
        for _ in 0..4 {
            fail(&t, &k, now);
        }
        // One free failure left: one probe at a time.
        let probe = t.begin(k.clone(), now).unwrap();
        assert!(t.begin(k.clone(), now).is_err());
        probe.failed(now);
        assert!(t.begin(k, now).is_err(), "now blocked");
    }

    #[test]
    fn quiet_keys_are_forgotten_and_memory_is_bounded() {
        let t = LoginThrottle::new(ThrottleConfig {
            max_keys: 3,
            ..ThrottleConfig::default()
        });
        let now = Instant::now();
        let k = key("10.0.0.1", "mia");
        for _ in 0..5 {
            fail(&t, &k, now);
        }
        assert!(t.begin(k.clone(), now).is_err());
        let later = now + t.config().forget_after;
        t.begin(k.clone(), later).unwrap().failed(later);
        assert!(t.begin(k.clone(), later).is_ok(), "counting starts afresh");
        // Three more keys: the least recently used (`k`) is evicted.
        for user in ["a", "b", "c"] {
            fail(&t, &key("10.0.0.2", user), later);
        }
        assert_eq!(t.len(), 3);
        // "a" was used least recently now; touching it keeps it.
        fail(&t, &key("10.0.0.2", "a"), later);
        fail(&t, &key("10.0.0.2", "d"), later);
        assert_eq!(t.len(), 3);
        for _ in 0..3 {
            fail(&t, &key("10.0.0.2", "a"), later);
        }
        assert!(
            t.begin(key("10.0.0.2", "a"), later).is_err(),
            "a kept its five failures"
        );
    }
}
