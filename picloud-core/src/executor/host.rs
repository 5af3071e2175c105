//! What a run may reach beyond itself: its app's environment (`env`), its
//! KV state (`kv::…`) and the network (`http::…`), through a
//! [`ScriptHost`] the caller hands to the run.
//!
//! The executor knows no store and no HTTP client: it turns script calls
//! into [`KvCall`]s and [`HttpCall`]s, checks the per-run limits (at most
//! [`KV_MAX_OPS_PER_RUN`] KV operations and [`HTTP_MAX_REQUESTS_PER_RUN`]
//! requests), and gives the host the run's deadline. The host (the script
//! service) does the work, blocking the pool worker that runs the script.
//!
//! **Every KV or HTTP call is an effect** (a read too: it blocks on a store
//! or the network, which an inline run on an async worker must never do),
//! so an inline attempt moves to the pool before the call, and the call
//! happens once, on the pool. `env` is plain data in the run's scope: a
//! script that only reads it stays inline.
//!
//! **The wall clock runs while a worker waits.** A call is bounded by what
//! is left of the run's wall clock; past it the run ends with the
//! wall-clock limit (504), however long the store or the remote server
//! would have taken. A worker blocked on the network is a worker no other
//! run can use: with the default 1 s wall clock and N workers, at most N
//! scripts wait on the network at once, and the pool's queue (then 503)
//! absorbs the rest. See ARCHITECTURE.md for what that means for IO-heavy
//! apps.

use std::sync::Arc;
use std::time::Instant;

use rhai::{Blob, Dynamic, EvalAltResult, Map, Module, NativeCallContext};

use crate::domain::{
    KV_MAX_LIST_LIMIT, KV_MAX_OPS_PER_RUN, KV_MAX_TTL_SECS, KV_MAX_VALUE_BYTES, KvEntry, KvPage,
    KvWrite, validate_kv_key,
};

/// The most outbound HTTP requests one run may make (redirects followed
/// count as one).
pub const HTTP_MAX_REQUESTS_PER_RUN: usize = 50;

/// The most bytes of values one run may read from and write to KV
/// together: 1,000 operations of 1 MiB each would move a gigabyte.
pub const KV_MAX_BYTES_PER_RUN: usize = 16 * 1024 * 1024;

/// Request headers a script may not set: the connection's own (framing,
/// hop-by-hop) and `host`, which would reach another virtual host behind
/// the same address.
const RESERVED_HEADERS: [&str; 10] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-connection",
];

/// A KV operation of a run, for its app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvCall {
    /// `kv::get(key)` and `kv::get_versioned(key)`.
    Get {
        /// The key.
        key: String,
    },
    /// `kv::set(key, value[, #{ttl}])`.
    Set(KvWrite),
    /// `kv::cas(key, expected_version, value[, #{ttl}])`.
    Cas {
        /// The version the key must have (`None`: it must be absent).
        expected: Option<i64>,
        /// The write.
        write: KvWrite,
    },
    /// `kv::incr(key[, by])`.
    Incr {
        /// The key.
        key: String,
        /// The amount.
        by: i64,
    },
    /// `kv::delete(key)`.
    Delete {
        /// The key.
        key: String,
    },
    /// `kv::list(prefix[, #{cursor, limit}])`.
    List {
        /// The prefix.
        prefix: String,
        /// The cursor of the previous page.
        cursor: Option<String>,
        /// The page size (1 to [`KV_MAX_LIST_LIMIT`]).
        limit: usize,
    },
}

/// The answer to a [`KvCall`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvReply {
    /// The entry of a `Get` (or a `Set`, or a successful `Cas`).
    Entry(Option<KvEntry>),
    /// `Cas` found another version: nothing changed.
    Moved,
    /// The new value of an `Incr`.
    Int(i64),
    /// Whether a `Delete` removed a key.
    Deleted(bool),
    /// A `List` page.
    Page(KvPage),
}

/// An outbound HTTP request of a run. Its `Debug` form leaves out header
/// values and the body (they may hold secrets).
#[derive(Clone, PartialEq, Eq)]
pub struct HttpCall {
    /// The method, uppercase.
    pub method: String,
    /// The URL.
    pub url: String,
    /// Request headers, as given.
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<Vec<u8>>,
    /// The most body bytes to read back (the run's string limit, at most
    /// the host's own cap); the rest is cut off.
    pub max_body_bytes: usize,
}

impl std::fmt::Debug for HttpCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpCall")
            .field("method", &self.method)
            .field("url", &self.url)
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("body_bytes", &self.body.as_ref().map(Vec::len))
            .finish_non_exhaustive()
    }
}

/// The answer to an [`HttpCall`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    /// The status code.
    pub status: u16,
    /// Response headers, names lowercase, in order.
    pub headers: Vec<(String, String)>,
    /// The body (cut at [`HttpCall::max_body_bytes`]).
    pub body: Vec<u8>,
    /// Whether the body was cut.
    pub truncated: bool,
}

/// Why a host call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// The call failed for a reason the script is told (a refused address,
    /// a full quota): a script error with this message.
    Failed(String),
    /// The run's wall clock ran out while it waited.
    Timeout,
}

/// What a run may reach beyond itself. The script service implements it per
/// run (the app's environment, its KV state, the instance's egress
/// policy); an embedder may bring their own.
///
/// `kv` and `http` are called on a pool worker thread (never on an async
/// worker) and may block until `deadline`, not after.
pub trait ScriptHost: Send + Sync {
    /// The app's environment, as the script's `env` map (a clone of a map
    /// built once: its strings are shared, not copied).
    fn env(&self) -> Map;

    /// Runs a KV operation for the run's app.
    fn kv(&self, call: KvCall, deadline: Instant) -> Result<KvReply, HostError>;

    /// Sends an outbound request.
    fn http(&self, call: HttpCall, deadline: Instant) -> Result<HttpReply, HostError>;
}

/// What the host functions need of the running sandbox.
pub(crate) trait RunContext: Send + Sync + 'static {
    /// The effect gate: an inline attempt stops here and moves to the pool.
    fn before_effect(&self) -> Result<(), Box<EvalAltResult>>;
    /// The run's host, if it has one.
    fn host(&self) -> Option<Arc<dyn ScriptHost>>;
    /// When the run's wall clock ends.
    fn deadline(&self) -> Instant;
    /// Counts one KV operation; `false` past the limit.
    fn count_kv(&self) -> bool;
    /// Counts `bytes` of values read or written; `false` past the limit.
    fn count_kv_bytes(&self, bytes: usize) -> bool;
    /// Counts one HTTP request; `false` past the limit.
    fn count_http(&self) -> bool;
    /// Stops the run for its wall clock, and the error that says so.
    fn wall_clock(&self) -> Box<EvalAltResult>;
}

type Fallible<T> = Result<T, Box<EvalAltResult>>;

fn fail<T>(function: &str, message: impl std::fmt::Display) -> Fallible<T> {
    Err(format!("{function}: {message}").into())
}

/// The host of a call, after the effect gate and the count.
fn host_for(run: &dyn RunContext, function: &str, http: bool) -> Fallible<Arc<dyn ScriptHost>> {
    run.before_effect()?;
    let counted = if http {
        run.count_http()
    } else {
        run.count_kv()
    };
    if !counted {
        let (n, what) = if http {
            (HTTP_MAX_REQUESTS_PER_RUN, "HTTP requests")
        } else {
            (KV_MAX_OPS_PER_RUN, "KV operations")
        };
        return fail(function, format!("a run may make at most {n} {what}"));
    }
    match run.host() {
        Some(host) => Ok(host),
        None => fail(function, "not available here (this run has no app)"),
    }
}

fn key_of(function: &str, key: &str) -> Fallible<String> {
    match validate_kv_key(key) {
        Ok(()) => Ok(key.to_owned()),
        Err(e) => fail(function, e),
    }
}

fn json_of(function: &str, value: &Dynamic) -> Fallible<String> {
    super::request::json_text_at_most(value, KV_MAX_VALUE_BYTES).or_else(|e| {
        if e.starts_with(super::request::ANSWER_TOO_LARGE) {
            fail(
                function,
                format!("a value may hold at most {KV_MAX_VALUE_BYTES} bytes of JSON"),
            )
        } else {
            fail(function, format!("the value has no JSON form: {e}"))
        }
    })
}

fn value_of(ctx: &NativeCallContext, text: &str) -> Fallible<Dynamic> {
    super::bounded::parse_json(ctx, text)
}

fn ttl_of(function: &str, options: &Map) -> Fallible<Option<u64>> {
    match options.get("ttl") {
        None => Ok(None),
        Some(v) if v.is_unit() => Ok(None),
        Some(v) => match v.as_int() {
            Ok(secs) if (1..=KV_MAX_TTL_SECS as i64).contains(&secs) => Ok(Some(secs as u64)),
            _ => fail(
                function,
                format!("ttl is a whole number of seconds, 1 to {KV_MAX_TTL_SECS}"),
            ),
        },
    }
}

fn over_bytes<T>(function: &str) -> Fallible<T> {
    fail(
        function,
        format!("a run may read and write at most {KV_MAX_BYTES_PER_RUN} bytes of KV values"),
    )
}

fn call_kv(run: &dyn RunContext, function: &str, call: KvCall) -> Fallible<KvReply> {
    let host = host_for(run, function, false)?;
    let written = match &call {
        KvCall::Set(w) | KvCall::Cas { write: w, .. } => w.value.len(),
        _ => 0,
    };
    if !run.count_kv_bytes(written) {
        return over_bytes(function);
    }
    let reply = match host.kv(call, run.deadline()) {
        Ok(reply) => reply,
        Err(HostError::Timeout) => return Err(run.wall_clock()),
        Err(HostError::Failed(message)) => return fail(function, message),
    };
    if let KvReply::Entry(Some(entry)) = &reply
        && written == 0
        && !run.count_kv_bytes(entry.value.len())
    {
        return over_bytes(function);
    }
    Ok(reply)
}

fn unexpected<T>(function: &str) -> Fallible<T> {
    fail(function, "the store gave an unexpected answer")
}

fn kv_get(
    ctx: &NativeCallContext,
    run: &dyn RunContext,
    key: &str,
    versioned: bool,
) -> Fallible<Dynamic> {
    let function = if versioned {
        "kv::get_versioned"
    } else {
        "kv::get"
    };
    let key = key_of(function, key)?;
    match call_kv(run, function, KvCall::Get { key })? {
        KvReply::Entry(None) => Ok(Dynamic::UNIT),
        KvReply::Entry(Some(entry)) => {
            let value = value_of(ctx, &entry.value)?;
            if versioned {
                let mut map = Map::new();
                map.insert("value".into(), value);
                map.insert("version".into(), Dynamic::from_int(entry.version));
                Ok(Dynamic::from_map(map))
            } else {
                Ok(value)
            }
        }
        _ => unexpected(function),
    }
}

fn write_of(function: &str, key: &str, value: &Dynamic, options: &Map) -> Fallible<KvWrite> {
    Ok(KvWrite {
        key: key_of(function, key)?,
        value: json_of(function, value)?,
        ttl_secs: ttl_of(function, options)?,
    })
}

fn kv_set(run: &dyn RunContext, key: &str, value: &Dynamic, options: &Map) -> Fallible<()> {
    let write = write_of("kv::set", key, value, options)?;
    match call_kv(run, "kv::set", KvCall::Set(write))? {
        KvReply::Entry(_) => Ok(()),
        _ => unexpected("kv::set"),
    }
}

fn kv_cas(
    run: &dyn RunContext,
    key: &str,
    expected: &Dynamic,
    value: &Dynamic,
    options: &Map,
) -> Fallible<bool> {
    let expected = if expected.is_unit() {
        None
    } else {
        match expected.as_int() {
            Ok(v) => Some(v),
            Err(_) => {
                return fail(
                    "kv::cas",
                    "the expected version is an integer, or () for an absent key",
                );
            }
        }
    };
    let write = write_of("kv::cas", key, value, options)?;
    match call_kv(run, "kv::cas", KvCall::Cas { expected, write })? {
        KvReply::Entry(Some(_)) => Ok(true),
        KvReply::Moved => Ok(false),
        _ => unexpected("kv::cas"),
    }
}

fn kv_incr(run: &dyn RunContext, key: &str, by: i64) -> Fallible<i64> {
    let key = key_of("kv::incr", key)?;
    match call_kv(run, "kv::incr", KvCall::Incr { key, by })? {
        KvReply::Int(n) => Ok(n),
        _ => unexpected("kv::incr"),
    }
}

fn kv_delete(run: &dyn RunContext, key: &str) -> Fallible<bool> {
    let key = key_of("kv::delete", key)?;
    match call_kv(run, "kv::delete", KvCall::Delete { key })? {
        KvReply::Deleted(gone) => Ok(gone),
        _ => unexpected("kv::delete"),
    }
}

fn kv_list(run: &dyn RunContext, prefix: &str, options: &Map) -> Fallible<Dynamic> {
    const F: &str = "kv::list";
    if prefix.len() > crate::domain::KV_MAX_KEY_BYTES {
        return fail(F, "a prefix is at most as long as a key");
    }
    let cursor = match options.get("cursor") {
        None => None,
        Some(c) if c.is_unit() => None,
        Some(c) => match c.clone().into_immutable_string() {
            Ok(s) if s.len() <= crate::domain::KV_MAX_KEY_BYTES => Some(s.to_string()),
            _ => return fail(F, "the cursor is the string a previous page gave"),
        },
    };
    let limit = match options.get("limit") {
        None => 100,
        Some(l) => match l.as_int() {
            Ok(n) if (1..=KV_MAX_LIST_LIMIT as i64).contains(&n) => n as usize,
            _ => return fail(F, format!("limit is 1 to {KV_MAX_LIST_LIMIT}")),
        },
    };
    let call = KvCall::List {
        prefix: prefix.to_owned(),
        cursor,
        limit,
    };
    match call_kv(run, F, call)? {
        KvReply::Page(page) => {
            let mut map = Map::new();
            let keys: rhai::Array = page.keys.into_iter().map(Dynamic::from).collect();
            map.insert("keys".into(), Dynamic::from_array(keys));
            map.insert(
                "cursor".into(),
                page.cursor.map_or(Dynamic::UNIT, Dynamic::from),
            );
            Ok(Dynamic::from_map(map))
        }
        _ => unexpected(F),
    }
}

/// The `kv` module of a run.
fn kv_module(run: &Arc<dyn RunContext>) -> Module {
    let mut m = Module::new();
    let r = Arc::clone(run);
    m.set_native_fn("get", move |ctx: NativeCallContext, key: &str| {
        kv_get(&ctx, &*r, key, false)
    });
    let r = Arc::clone(run);
    m.set_native_fn("get_versioned", move |ctx: NativeCallContext, key: &str| {
        kv_get(&ctx, &*r, key, true)
    });
    let r = Arc::clone(run);
    m.set_native_fn("set", move |key: &str, value: Dynamic| {
        kv_set(&*r, key, &value, &Map::new())
    });
    let r = Arc::clone(run);
    m.set_native_fn("set", move |key: &str, value: Dynamic, options: Map| {
        kv_set(&*r, key, &value, &options)
    });
    let r = Arc::clone(run);
    m.set_native_fn(
        "cas",
        move |key: &str, expected: Dynamic, value: Dynamic| {
            kv_cas(&*r, key, &expected, &value, &Map::new())
        },
    );
    let r = Arc::clone(run);
    m.set_native_fn(
        "cas",
        move |key: &str, expected: Dynamic, value: Dynamic, options: Map| {
            kv_cas(&*r, key, &expected, &value, &options)
        },
    );
    let r = Arc::clone(run);
    m.set_native_fn("incr", move |key: &str| kv_incr(&*r, key, 1));
    let r = Arc::clone(run);
    m.set_native_fn("incr", move |key: &str, by: i64| kv_incr(&*r, key, by));
    let r = Arc::clone(run);
    m.set_native_fn("delete", move |key: &str| kv_delete(&*r, key));
    let r = Arc::clone(run);
    m.set_native_fn("list", move |prefix: &str| {
        kv_list(&*r, prefix, &Map::new())
    });
    let r = Arc::clone(run);
    m.set_native_fn("list", move |prefix: &str, options: Map| {
        kv_list(&*r, prefix, &options)
    });
    m
}

/// A request body from a script value: a string as it is, a BLOB's bytes,
/// `()` none, anything else as JSON (and a JSON content type).
fn body_of(function: &str, body: &Dynamic) -> Fallible<(Option<Vec<u8>>, bool)> {
    if body.is_unit() {
        return Ok((None, false));
    }
    if body.is_string() {
        let s = body.clone().into_immutable_string().unwrap_or_default();
        return Ok((Some(s.as_bytes().to_vec()), false));
    }
    if body.is_blob() {
        return Ok((Some(body.clone().cast::<Blob>()), false));
    }
    // JSON bodies are bounded like a KV value.
    let text = json_of(function, body)?;
    Ok((Some(text.into_bytes()), true))
}

fn headers_of(function: &str, options: &Map) -> Fallible<Vec<(String, String)>> {
    let Some(headers) = options.get("headers") else {
        return Ok(Vec::new());
    };
    if headers.is_unit() {
        return Ok(Vec::new());
    }
    let Some(map) = headers.read_lock::<Map>() else {
        return fail(function, "headers is a map of names to strings");
    };
    map.iter()
        .map(|(name, value)| {
            let value = if value.is_string() {
                value
                    .clone()
                    .into_immutable_string()
                    .unwrap_or_default()
                    .to_string()
            } else {
                value.to_string()
            };
            Ok((name.to_string(), value))
        })
        .collect()
}

fn string_of(options: &Map, field: &str) -> Option<String> {
    options
        .get(field)
        .and_then(|v| v.clone().into_immutable_string().ok())
        .map(|s| s.to_string())
}

fn http_send(
    ctx: &NativeCallContext,
    run: &dyn RunContext,
    function: &str,
    method: &str,
    url: &str,
    body: &Dynamic,
    options: &Map,
) -> Fallible<Dynamic> {
    let method = method.to_ascii_uppercase();
    if method.is_empty() || method.len() > 16 || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return fail(function, "the method is a word such as GET or POST");
    }
    let mut headers = headers_of(function, options)?;
    if let Some((name, _)) = headers
        .iter()
        .find(|(n, _)| RESERVED_HEADERS.contains(&n.to_ascii_lowercase().as_str()))
    {
        return fail(
            function,
            format!("the header {name} is the connection's own; a script may not set it"),
        );
    }
    let (body, json) = body_of(function, body)?;
    if json
        && !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
    {
        headers.push(("content-type".into(), "application/json".into()));
    }
    let host = host_for(run, function, true)?;
    let max_string = ctx.engine().max_string_size();
    let call = HttpCall {
        method,
        url: url.to_owned(),
        headers,
        body,
        max_body_bytes: if max_string == 0 {
            usize::MAX
        } else {
            max_string
        },
    };
    let reply = match host.http(call, run.deadline()) {
        Ok(reply) => reply,
        Err(HostError::Timeout) => return Err(run.wall_clock()),
        Err(HostError::Failed(message)) => return fail(function, message),
    };
    // The answer map holds the body and the headers: together they fit
    // the run's string limit (the body is cut further if need be).
    let mut body = String::from_utf8_lossy(&reply.body).into_owned();
    let mut truncated = reply.truncated;
    let overhead = reply
        .headers
        .iter()
        .map(|(n, v)| n.len() + v.len())
        .sum::<usize>()
        + 64;
    let room = max_string_room(ctx).saturating_sub(overhead);
    if body.len() > room {
        body.truncate(body.floor_char_boundary(room));
        truncated = true;
    }
    let json = if truncated {
        Dynamic::UNIT
    } else {
        let trimmed = body.trim_ascii_start();
        if trimmed.is_empty() {
            Dynamic::UNIT
        } else {
            super::bounded::parse_json(ctx, trimmed).unwrap_or(Dynamic::UNIT)
        }
    };
    let mut headers = Map::new();
    for (name, value) in reply.headers {
        match headers.get_mut(name.as_str()) {
            Some(existing) => {
                let joined = format!("{existing}, {value}");
                *existing = Dynamic::from(joined);
            }
            None => {
                headers.insert(name.into(), Dynamic::from(value));
            }
        }
    }
    let mut map = Map::new();
    map.insert("status".into(), Dynamic::from_int(i64::from(reply.status)));
    map.insert("headers".into(), Dynamic::from_map(headers));
    map.insert("body".into(), Dynamic::from(body));
    map.insert("json".into(), json);
    map.insert("truncated".into(), Dynamic::from_bool(truncated));
    Ok(Dynamic::from_map(map))
}

/// The run's string limit (`usize::MAX` when unlimited).
fn max_string_room(ctx: &NativeCallContext) -> usize {
    match ctx.engine().max_string_size() {
        0 => usize::MAX,
        n => n,
    }
}

/// The `http` module of a run.
fn http_module(run: &Arc<dyn RunContext>) -> Module {
    let mut m = Module::new();
    let r = Arc::clone(run);
    m.set_native_fn("get", move |ctx: NativeCallContext, url: &str| {
        http_send(
            &ctx,
            &*r,
            "http::get",
            "GET",
            url,
            &Dynamic::UNIT,
            &Map::new(),
        )
    });
    let r = Arc::clone(run);
    m.set_native_fn(
        "get",
        move |ctx: NativeCallContext, url: &str, options: Map| {
            http_send(&ctx, &*r, "http::get", "GET", url, &Dynamic::UNIT, &options)
        },
    );
    let r = Arc::clone(run);
    m.set_native_fn(
        "post",
        move |ctx: NativeCallContext, url: &str, body: Dynamic| {
            http_send(&ctx, &*r, "http::post", "POST", url, &body, &Map::new())
        },
    );
    let r = Arc::clone(run);
    m.set_native_fn(
        "post",
        move |ctx: NativeCallContext, url: &str, body: Dynamic, options: Map| {
            http_send(&ctx, &*r, "http::post", "POST", url, &body, &options)
        },
    );
    let r = Arc::clone(run);
    m.set_native_fn("request", move |ctx: NativeCallContext, options: Map| {
        const F: &str = "http::request";
        let Some(url) = string_of(&options, "url") else {
            return fail(F, "url is required");
        };
        let method = string_of(&options, "method").unwrap_or_else(|| "GET".into());
        let body = options.get("body").cloned().unwrap_or(Dynamic::UNIT);
        http_send(&ctx, &*r, F, &method, &url, &body, &options)
    });
    m
}

/// A context for engines that never run a script (the compile engine): it
/// lets the modules exist so that strict compiles know their names.
struct NoRun;

impl RunContext for NoRun {
    fn before_effect(&self) -> Result<(), Box<EvalAltResult>> {
        Err("not running".into())
    }
    fn host(&self) -> Option<Arc<dyn ScriptHost>> {
        None
    }
    fn deadline(&self) -> Instant {
        Instant::now()
    }
    fn count_kv(&self) -> bool {
        false
    }
    fn count_kv_bytes(&self, _bytes: usize) -> bool {
        false
    }
    fn count_http(&self) -> bool {
        false
    }
    fn wall_clock(&self) -> Box<EvalAltResult> {
        "not running".into()
    }
}

/// Registers the `kv` and `http` modules on `engine`, their calls going
/// through `run` (`None`: an engine that only compiles).
pub(crate) fn register(engine: &mut rhai::Engine, run: Option<Arc<dyn RunContext>>) {
    let run = run.unwrap_or_else(|| Arc::new(NoRun));
    engine.register_static_module("kv", kv_module(&run).into());
    engine.register_static_module("http", http_module(&run).into());
}

/// The script's `env` map.
pub(crate) fn env_map(host: Option<&Arc<dyn ScriptHost>>) -> Map {
    host.map(|h| h.env()).unwrap_or_default()
}

/// `vars` as an `env` map, built once per environment (a run gets a clone,
/// whose strings are shared).
pub fn build_env_map<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Map {
    vars.into_iter()
        .map(|(name, value)| (name.into(), Dynamic::from(value.to_owned())))
        .collect()
}
