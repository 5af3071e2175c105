//! The script's input and output, in plain Rust types.
//!
//! The transport turns an HTTP request into a [`ScriptRequest`] and a
//! [`ScriptResponse`] back into HTTP; neither type mentions rhai or HTTP
//! crates, so core stays transport-free. The conversions to and from rhai
//! values live here too, and run on the pool's worker thread (JSON parsing of
//! the body included), never on the async runtime.
//!
//! The output rules (DESIGN.md "Scripts and invocation"):
//! - a string → 200 `text/plain; charset=utf-8`;
//! - `response(status, body[, headers])` → that status and headers; a string
//!   body as is (`text/plain`), a BLOB as bytes (`application/octet-stream`),
//!   `()` as no body, any other body as JSON;
//! - `()` → 204, no body;
//! - anything else → 200 `application/json`.
//!
//! JSON output is strict: a value with no JSON form (a function pointer, a
//! timestamp, a custom type, a NaN or infinite float, nesting deeper than
//! [`MAX_JSON_DEPTH`]) is a runtime error rather than a silently mangled body.

use std::collections::BTreeMap;

use rhai::{Dynamic, EvalAltResult, ImmutableString, Map, Position};
use serde::ser::{Error as _, SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

/// Content type of a string body.
pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
/// Content type of a JSON body.
pub const APPLICATION_JSON: &str = "application/json";
/// Content type of a BLOB body.
pub const OCTET_STREAM: &str = "application/octet-stream";
/// Deepest nesting of arrays and maps the JSON output accepts.
pub const MAX_JSON_DEPTH: usize = 128;

/// One HTTP request, as the script sees it (the `request` variable).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScriptRequest {
    /// The method, upper case: `GET`, `POST`, ...
    pub method: String,
    /// The path after the script's own prefix, starting with `/` (`/` when
    /// the script itself was called). The transport decides; core passes it on.
    pub path: String,
    /// Query parameters, each name with its first value (as
    /// `URLSearchParams.get` answers). `request.query` in the script.
    pub query: BTreeMap<String, String>,
    /// Every value of each name given more than once, in order (the first
    /// is also in [`query`](Self::query)). With `query` it makes
    /// `request.query_all`: every name with all its values, as an array.
    pub query_repeated: BTreeMap<String, Vec<String>>,
    /// Headers, names in lower case. Repeated headers should be joined with
    /// `, ` by the transport.
    pub headers: BTreeMap<String, String>,
    /// The body as text (the transport decides what to do with non-UTF-8).
    /// It is also parsed as JSON into `request.json`, or `()` when it is
    /// empty or not JSON.
    pub body: String,
    /// Why the script runs: `request.event`, a JSON object with at least
    /// `kind` (`async`, `cron` or `event`, with the fields the event engine
    /// adds). `None` is an HTTP request: `#{ kind: "http" }`.
    pub event: Option<serde_json::Value>,
}

/// What the script answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptResponse {
    /// The status, 200–599.
    pub status: u16,
    /// The value for `Content-Type`, or `None` for no body. A `content-type`
    /// header set by the script lands here, not in `headers`.
    pub content_type: Option<String>,
    /// Other headers set by the script: names lower case and valid tokens,
    /// values free of control characters, in the script's (sorted) order.
    pub headers: Vec<(String, String)>,
    /// The body bytes (empty for 204, 205 and 304).
    pub body: Vec<u8>,
}

impl ScriptResponse {
    /// The body as UTF-8 text, if it is (a convenience for tests and logs).
    pub fn body_text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }
}

impl ScriptRequest {
    /// Query pairs as the transport parsed them, in order: the first value of
    /// each name goes to `query`, and every value of a repeated name to
    /// `query_repeated`.
    pub fn set_query_pairs(&mut self, pairs: impl IntoIterator<Item = (String, String)>) {
        self.query.clear();
        self.query_repeated.clear();
        for (name, value) in pairs {
            match self.query.get(&name) {
                None => {
                    self.query.insert(name, value);
                }
                Some(first) => self
                    .query_repeated
                    .entry(name)
                    .or_insert_with_key(|_| vec![first.clone()])
                    .push(value),
            }
        }
    }

    /// The `request` map: `method`, `path`, `query`, `query_all`, `headers`,
    /// `body`, `json`.
    pub(crate) fn into_rhai(self) -> Map {
        let json = parse_json_body(&self.body);
        let all = query_all(&self.query, &self.query_repeated);
        let event = event_value(self.event.as_ref());
        let mut map = request_map(
            self.method.into(),
            self.path.into(),
            string_map(self.query),
            all,
            string_map(self.headers),
            self.body.into(),
            json,
        );
        map.insert("event".into(), event);
        map
    }

    /// [`into_rhai`](Self::into_rhai), copying: an inline attempt keeps the
    /// request for the pool, should it be abandoned.
    pub(crate) fn to_rhai(&self) -> Map {
        let mut map = request_map(
            self.method.as_str().into(),
            self.path.as_str().into(),
            string_map(self.query.iter().map(|(k, v)| (k, v.as_str()))),
            query_all(&self.query, &self.query_repeated),
            string_map(self.headers.iter().map(|(k, v)| (k, v.as_str()))),
            self.body.as_str().into(),
            parse_json_body(&self.body),
        );
        map.insert("event".into(), event_value(self.event.as_ref()));
        map
    }

    /// The bytes of text the request holds (method, path, query, headers,
    /// body): what converting it costs, roughly.
    pub(crate) fn text_bytes(&self) -> usize {
        let pairs = |m: &BTreeMap<String, String>| -> usize {
            m.iter().map(|(k, v)| k.len() + v.len()).sum()
        };
        self.method.len()
            + self.path.len()
            + pairs(&self.query)
            + self
                .query_repeated
                .iter()
                .map(|(k, vs)| k.len() + vs.iter().map(String::len).sum::<usize>())
                .sum::<usize>()
            + pairs(&self.headers)
            + self.body.len()
            + self.event.as_ref().map_or(0, |e| e.to_string().len())
    }
}

/// A `query` or `headers` map of the `request` map, from its pairs (owned
/// or borrowed).
fn string_map<K: AsRef<str>, V: Into<ImmutableString>>(
    pairs: impl IntoIterator<Item = (K, V)>,
) -> Dynamic {
    let map: Map = pairs
        .into_iter()
        .map(|(k, v)| (k.as_ref().into(), Dynamic::from(v.into())))
        .collect();
    Dynamic::from_map(map)
}

/// `request.query_all`: every query name with all its values, as an array.
fn query_all(
    query: &BTreeMap<String, String>,
    repeated: &BTreeMap<String, Vec<String>>,
) -> Dynamic {
    let map: Map = query
        .iter()
        .map(|(k, first)| {
            let values: rhai::Array = match repeated.get(k) {
                Some(all) => all.iter().map(|v| Dynamic::from(v.clone())).collect(),
                None => vec![Dynamic::from(first.clone())],
            };
            (k.as_str().into(), Dynamic::from_array(values))
        })
        .collect();
    Dynamic::from_map(map)
}

/// The `request` map from its parts.
fn request_map(
    method: ImmutableString,
    path: ImmutableString,
    query: Dynamic,
    query_all: Dynamic,
    headers: Dynamic,
    body: ImmutableString,
    json: Dynamic,
) -> Map {
    let mut map = Map::new();
    map.insert("method".into(), Dynamic::from(method));
    map.insert("path".into(), Dynamic::from(path));
    map.insert("query".into(), query);
    map.insert("query_all".into(), query_all);
    map.insert("headers".into(), headers);
    map.insert("body".into(), Dynamic::from(body));
    map.insert("json".into(), json);
    map
}

/// `request.event`: the event engine's object, or `#{ kind: "http" }`.
fn event_value(event: Option<&serde_json::Value>) -> Dynamic {
    match event {
        Some(value) => rhai::serde::to_dynamic(value).unwrap_or(Dynamic::UNIT),
        None => {
            let mut map = Map::new();
            map.insert("kind".into(), Dynamic::from("http"));
            Dynamic::from_map(map)
        }
    }
}

/// The body parsed as JSON, or `()`. serde_json refuses nesting deeper than
/// 128, so a hostile body cannot recurse far.
fn parse_json_body(body: &str) -> Dynamic {
    let trimmed = body.trim_ascii_start();
    if trimmed.is_empty() {
        return Dynamic::UNIT;
    }
    serde_json::from_str::<Dynamic>(trimmed).unwrap_or(Dynamic::UNIT)
}

/// The value `response(status, body[, headers])` returns inside the script.
/// It is a custom type so that no ordinary map can be mistaken for it.
#[derive(Debug, Clone)]
pub(crate) struct ResponseValue {
    pub status: u16,
    pub body: Dynamic,
    pub headers: Vec<(String, String)>,
}

impl ResponseValue {
    /// Builds the value, checking status and headers now, so that the error
    /// points at the `response(...)` call.
    pub fn new(
        status: i64,
        body: Dynamic,
        headers: Option<Map>,
    ) -> Result<Self, Box<EvalAltResult>> {
        let status = u16::try_from(status)
            .ok()
            .filter(|s| (200..=599).contains(s))
            .ok_or_else(|| {
                runtime_err(format!(
                    "response status {status} is not between 200 and 599"
                ))
            })?;
        let mut out = Vec::new();
        for (name, value) in headers.unwrap_or_default() {
            let name = name.to_ascii_lowercase();
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(runtime_err(format!(
                    "invalid response header name {name:?}"
                )));
            }
            let value = if value.is_string() {
                value.into_string().unwrap_or_default()
            } else if value.is_int() || value.is_float() || value.is_bool() || value.is_char() {
                value.to_string()
            } else {
                return Err(runtime_err(format!(
                    "response header {name:?} must be a string, not {}",
                    value.type_name()
                )));
            };
            if value
                .chars()
                .any(|c| (c.is_control() && c != '\t') || c == '\u{7f}')
            {
                return Err(runtime_err(format!(
                    "response header {name:?} contains a control character"
                )));
            }
            out.push((name, value));
        }
        Ok(Self {
            status,
            body,
            headers: out,
        })
    }
}

fn runtime_err(message: String) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(message.into(), Position::NONE).into()
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Turns the script's result into a response, or a message saying why not.
pub(crate) fn into_response(value: Dynamic, max_json: usize) -> Result<ScriptResponse, String> {
    let value = value.flatten();
    if value.is::<ResponseValue>() {
        let r = value.cast::<ResponseValue>();
        let (content_type, body) = body_of(r.body, max_json)?;
        let mut content_type = content_type.map(str::to_owned);
        let mut headers = Vec::with_capacity(r.headers.len());
        for (name, value) in r.headers {
            if name == "content-type" {
                content_type = Some(value);
            } else {
                headers.push((name, value));
            }
        }
        let mut response = ScriptResponse {
            status: r.status,
            content_type,
            headers,
            body,
        };
        // These statuses have no body (RFC 9110 §15.3.5, §15.3.6, §15.4.5).
        if matches!(response.status, 204 | 205 | 304) {
            response.body.clear();
            response.content_type = None;
        }
        return Ok(response);
    }
    if value.is_unit() {
        return Ok(ScriptResponse {
            status: 204,
            content_type: None,
            headers: Vec::new(),
            body: Vec::new(),
        });
    }
    let (content_type, body) = body_of(value, max_json)?;
    Ok(ScriptResponse {
        status: 200,
        content_type: content_type.map(str::to_owned),
        headers: Vec::new(),
        body,
    })
}

/// A body and its default content type: string as text, BLOB as bytes,
/// unit as nothing, anything else as JSON.
fn body_of(value: Dynamic, max_json: usize) -> Result<(Option<&'static str>, Vec<u8>), String> {
    let value = value.flatten();
    if value.is_unit() {
        return Ok((None, Vec::new()));
    }
    if value.is_string() {
        let s = value.into_string().unwrap_or_default();
        return Ok((Some(TEXT_PLAIN), s.into_bytes()));
    }
    if value.is_blob() {
        return Ok((Some(OCTET_STREAM), value.into_blob().unwrap_or_default()));
    }
    let body = json_bytes_at_most(&value, max_json)?;
    Ok((Some(APPLICATION_JSON), body))
}

/// What an answer whose JSON text passes its bound fails with.
pub(crate) const ANSWER_TOO_LARGE: &str = "the answer is larger than its limit";

/// A buffer that refuses to grow past `max` bytes: JSON text can be six
/// times its strings (`"\u0001"`), so it is bounded while it is written.
struct CappedBuffer {
    bytes: Vec<u8>,
    max: usize,
}

impl std::io::Write for CappedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > self.max {
            return Err(std::io::Error::other(ANSWER_TOO_LARGE));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A value as JSON text, strictly (see [`StrictJson`]), of at most `max`
/// bytes (else an error starting with [`ANSWER_TOO_LARGE`]): the script's
/// `map.to_json()`.
pub(crate) fn json_text_at_most(value: &Dynamic, max: usize) -> Result<String, String> {
    // serde_json writes only valid UTF-8.
    String::from_utf8(json_bytes_at_most(value, max)?).map_err(|e| e.to_string())
}

/// [`json_text_at_most`] as bytes (an answer's body: no UTF-8 check).
fn json_bytes_at_most(value: &Dynamic, max: usize) -> Result<Vec<u8>, String> {
    let mut text = CappedBuffer {
        // Most answers are small: one allocation, no regrowth.
        bytes: Vec::with_capacity(256.min(max)),
        max,
    };
    serde_json::to_writer(&mut text, &StrictJson(value, 0)).map_err(|e| {
        if e.is_io() {
            format!("{ANSWER_TOO_LARGE} ({max} bytes of JSON)")
        } else {
            e.to_string()
        }
    })?;
    Ok(text.bytes)
}

/// Serializes a `Dynamic` as JSON, refusing what has no JSON form (rhai's
/// own `Serialize` writes such values as their type name instead).
struct StrictJson<'a>(&'a Dynamic, usize);

impl Serialize for StrictJson<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let StrictJson(value, depth) = *self;
        if depth > MAX_JSON_DEPTH {
            return Err(S::Error::custom(format!(
                "the result is nested more than {MAX_JSON_DEPTH} levels deep and cannot be turned into JSON"
            )));
        }
        if value.is_unit() {
            return ser.serialize_unit();
        }
        if let Ok(b) = value.as_bool() {
            return ser.serialize_bool(b);
        }
        if let Ok(i) = value.as_int() {
            return ser.serialize_i64(i);
        }
        if let Ok(f) = value.as_float() {
            if !f.is_finite() {
                return Err(S::Error::custom(format!(
                    "the result contains the number {f}, which JSON cannot represent"
                )));
            }
            return ser.serialize_f64(f);
        }
        if let Ok(c) = value.as_char() {
            return ser.serialize_char(c);
        }
        if let Ok(s) = value.as_immutable_string_ref() {
            return ser.serialize_str(&s);
        }
        if let Ok(blob) = value.as_blob_ref() {
            return ser.collect_seq(blob.iter());
        }
        if let Ok(array) = value.as_array_ref() {
            let mut seq = ser.serialize_seq(Some(array.len()))?;
            for item in array.iter() {
                seq.serialize_element(&StrictJson(item, depth + 1))?;
            }
            return seq.end();
        }
        if let Ok(map) = value.as_map_ref() {
            let mut out = ser.serialize_map(Some(map.len()))?;
            for (k, v) in map.iter() {
                out.serialize_entry(k.as_str(), &StrictJson(v, depth + 1))?;
            }
            return out.end();
        }
        Err(S::Error::custom(format!(
            "the result contains a value of type {} which cannot be turned into JSON",
            value.type_name()
        )))
    }
}
