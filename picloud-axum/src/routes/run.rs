//! `ANY /run/{app_slug}/{script}[/{*rest}]`: invoke a script. Public: a
//! script is an app's HTTP endpoint, so anyone may call it.
//!
//! The hot path: find the compiled live version in memory (before reading
//! a byte of the body: an unknown script costs a slow client nothing),
//! read the body (bounded), hand the request to the executor's pool, and
//! turn the answer into a response. No store read, no compile. Core
//! removes every credential PiCloud accepts before the script sees the
//! request.

use axum::body::{Body, to_bytes};
use axum::extract::{OriginalUri, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use picloud_core::Principal;
use picloud_core::domain::{InvocationContext, PublicErrors, Visibility};
use picloud_core::executor::{ExecErrorKind, ScriptRequest};

use crate::ApiState;
use crate::error::ApiError;

/// The largest request body a script receives, in bytes.
pub const MAX_RUN_BODY: usize = 1024 * 1024;

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .unwrap_or_default()
}

/// Headers a script may not set: they frame the HTTP message or belong to
/// the connection, and a wrong value would desynchronise a keep-alive
/// connection (and, behind a pooling proxy, another client's response).
const FORBIDDEN_RESPONSE_HEADERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
    "proxy-authenticate",
];

/// A script's `Set-Cookie`, confined to its app: the `Path` is forced under
/// `/run/{app}` and any `Domain` removed. Every app of an instance shares one
/// origin, so without this one app's script could set (or overwrite), by a
/// header, cookies that browsers then send to the other apps' scripts, or to
/// the admin API. Defence in depth only: script-served JavaScript shares the
/// origin too. `None` (the header is dropped) when the value is not a cookie.
fn confine_cookie(value: &str, root: &str) -> Option<String> {
    let mut cookie = cookie::Cookie::parse(value).ok()?;
    let inside = cookie.path().is_some_and(|p| {
        p.strip_prefix(root)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    });
    if !inside {
        cookie.set_path(root.to_owned());
    }
    cookie.unset_domain();
    Some(cookie.to_string())
}

/// The path under which the browser sees `app`'s scripts:
/// `{mount}/run/{app}`, where `{mount}` is whatever prefix the router is
/// nested under (`Router::nest("/picloud", …)`): the part of the original
/// URI's path that routing stripped before this handler saw `path`.
fn app_root(original: Option<&OriginalUri>, path: &str, app: &str) -> String {
    let mount = original
        .and_then(|o| o.path().strip_suffix(path))
        .unwrap_or("");
    format!("{mount}/run/{app}")
}

/// Splits `/run/{app}/{script}{rest}` into its parts, with the app and
/// script segments percent-decoded (as the admin API's paths are); the rest
/// stays as sent. `None` when a segment is empty or not UTF-8 once decoded.
fn split_path(path: &str) -> Option<(String, String, &str)> {
    split_path_under(path, "/run/")
}

/// [`split_path`] under another prefix (`/async/`).
fn split_path_under<'a>(path: &'a str, prefix: &str) -> Option<(String, String, &'a str)> {
    let rest = path.strip_prefix(prefix)?;
    let (app, rest) = rest.split_once('/')?;
    let (script, rest) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let decode = |segment: &str| {
        percent_encoding::percent_decode_str(segment)
            .decode_utf8()
            .ok()
            .map(std::borrow::Cow::into_owned)
            .filter(|s| !s.is_empty())
    };
    Some((decode(app)?, decode(script)?, rest))
}

/// The live script `script` of `app`, if the caller may call it: found in
/// memory before a byte of the body is read, and for a private script the
/// caller admitted by core (the embedder's principal, else a PiCloud bearer
/// token). Otherwise the response to send.
async fn admitted(
    s: &ApiState,
    parts: &axum::http::request::Parts,
    app: &str,
    script: &str,
) -> Result<std::sync::Arc<picloud_core::scripts::LiveScript>, Response> {
    let live = s
        .scripts
        .live(app, script)
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
    if live.visibility == Visibility::Private {
        // Core decides (`admit`); core also strips the token before the
        // script sees the request.
        let caller = match parts.extensions.get::<Principal>() {
            Some(p) => Some(*p),
            None => match crate::bearer::bearer_token_in(&parts.headers) {
                None => None,
                Some(token) => match s.auth.authenticate(token).await {
                    Ok(p) => Some(p),
                    Err(e) => return Err(crate::bearer::challenge(ApiError::from(e))),
                },
            },
        };
        if let Err(e) = s.scripts.admit(&live, caller.as_ref()).await {
            return Err(crate::bearer::challenge(ApiError::from(e)));
        }
    }
    Ok(live)
}

/// The request's headers (lowercase names, repeated ones joined with `, `)
/// and its body as UTF-8 text, read within [`MAX_RUN_BODY`].
async fn read_call(
    parts: &axum::http::request::Parts,
    body: Body,
) -> Result<(std::collections::BTreeMap<String, String>, String), Response> {
    let body = to_bytes(body, MAX_RUN_BODY).await.map_err(|_| {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response()
    })?;
    let body = String::from_utf8(body.to_vec()).map_err(|_| {
        ApiError::new(StatusCode::BAD_REQUEST, "the request body must be UTF-8").into_response()
    })?;
    let mut headers = std::collections::BTreeMap::<String, String>::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    Ok((headers, body))
}

/// `ANY /async/{app_slug}/{script}[/{*rest}]`: stores the request as a job
/// of the script's live version and answers 202 `{"job_id", "status":
/// "queued"}` with a `Location` at the job, once the job is durable. The
/// same `Idempotency-Key` on the same script within 24 hours answers the
/// first job's id and queues nothing; `picloud-max-attempts: 1–20` sets the
/// job's budget. A full queue is 429 with `Retry-After`, nothing stored.
pub async fn run_async(State(s): State<ApiState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Some((app, script, rest)) = split_path_under(parts.uri.path(), "/async/") else {
        return ApiError::not_found().into_response();
    };
    let live = match admitted(&s, &parts, &app, &script).await {
        Ok(live) => live,
        Err(response) => return response,
    };
    let (headers, body) = match read_call(&parts, body).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let text = |name: &str| {
        parts
            .headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let call = picloud_core::events::AsyncRequest {
        request: picloud_core::domain::StoredRequest {
            method: parts.method.as_str().to_owned(),
            path: if rest.is_empty() {
                "/".to_owned()
            } else {
                rest.to_owned()
            },
            query: query_pairs(parts.uri.query()),
            headers,
            body,
        },
        idempotency_key: text("idempotency-key"),
        max_attempts: text("picloud-max-attempts"),
    };
    match s.events.enqueue_async(&live, call).await {
        Ok(enqueued) => {
            let id = enqueued.id();
            let location = format!("/api/v1/admin/apps/{app}/jobs/{id}");
            let mut resp = (
                StatusCode::ACCEPTED,
                axum::Json(serde_json::json!({ "job_id": id, "status": "queued" })),
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            resp
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Invokes a script. Its output becomes the response: a string is 200
/// `text/plain`, `response(status, body[, headers])` sets all three, unit is
/// 204, any other value is 200 JSON. A script error is 500
/// `{"error": "script error: …", "line": N}`; a limit hit is a 5xx whose
/// message names the limit; a full pool is 503.
pub async fn run(State(s): State<ApiState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Some((app, script, rest)) = split_path(parts.uri.path()) else {
        return ApiError::not_found().into_response();
    };
    let (app, script) = (app.as_str(), script.as_str());
    let live = match admitted(&s, &parts, app, script).await {
        Ok(live) => live,
        Err(response) => return response,
    };
    let (headers, body) = match read_call(&parts, body).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let mut request = ScriptRequest {
        method: parts.method.as_str().to_owned(),
        path: if rest.is_empty() {
            "/".to_owned()
        } else {
            rest.to_owned()
        },
        headers,
        body,
        ..ScriptRequest::default()
    };
    request.set_query_pairs(query_pairs(parts.uri.query()));
    let request_id = parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let context = InvocationContext::http(
        request_id,
        parts.method.as_str(),
        &request.path,
        parts.uri.query(),
    );
    let request_id = context.request_id.clone();
    match s.scripts.run_with(app, &live, request, context).await {
        Ok(invocation) => match invocation.outcome {
            Ok(r) => {
                let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
                let mut resp = Response::new(Body::from(r.body));
                *resp.status_mut() = status;
                let h = resp.headers_mut();
                if let Some(ct) = r.content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
                    h.insert(header::CONTENT_TYPE, ct);
                }
                let mut cookie_root: Option<String> = None;
                // On its own domain the app has the origin to itself.
                let on_own_domain = parts.extensions.get::<crate::CustomDomain>().is_some();
                for (name, mut value) in r.headers {
                    if FORBIDDEN_RESPONSE_HEADERS.contains(&name.as_str()) {
                        continue;
                    }
                    if name == "set-cookie" && !on_own_domain {
                        let root = cookie_root.get_or_insert_with(|| {
                            app_root(parts.extensions.get::<OriginalUri>(), parts.uri.path(), app)
                        });
                        match confine_cookie(&value, root) {
                            Some(confined) => value = confined,
                            None => continue,
                        }
                    }
                    if let (Ok(n), Ok(v)) = (
                        HeaderName::from_bytes(name.as_bytes()),
                        HeaderValue::from_str(&value),
                    ) {
                        h.append(n, v);
                    }
                }
                resp
            }
            Err(e) => {
                // The script's failure, not the server's: logged for the
                // app, with what finds its invocation record.
                tracing::info!(
                    target: "picloud::script",
                    app,
                    script,
                    version = live.version,
                    request_id = %request_id,
                    status = picloud_core::scripts::exec_status(&e),
                    error = %e,
                    "script failed"
                );
                let script_failed = matches!(
                    e.kind(),
                    ExecErrorKind::Runtime | ExecErrorKind::Timeout | ExecErrorKind::LimitExceeded
                );
                if script_failed && s.scripts.public_errors_of(app).await == PublicErrors::Generic {
                    let status = StatusCode::from_u16(picloud_core::scripts::exec_status(&e))
                        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    return ApiError::generic_script_error(status, &request_id).into_response();
                }
                ApiError::from(&e).into_response()
            }
        },
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_paths_split_into_app_script_and_rest() {
        let parts = |p| split_path(p).map(|(a, s, r)| (a, s, r.to_owned()));
        let owned = |a: &str, s: &str, r: &str| Some((a.to_owned(), s.to_owned(), r.to_owned()));
        assert_eq!(parts("/run/shop/hello"), owned("shop", "hello", ""));
        assert_eq!(
            parts("/run/shop/api/users/7"),
            owned("shop", "api", "/users/7")
        );
        assert_eq!(parts("/run/shop/api/"), owned("shop", "api", "/"));
        assert_eq!(parts("/run/shop"), None);
        assert_eq!(parts("/run//x"), None);
        assert_eq!(parts("/nope/a/b"), None);
    }

    #[test]
    fn app_and_script_segments_are_decoded_like_the_admin_api() {
        let parts = |p| split_path(p).map(|(a, s, r)| (a, s, r.to_owned()));
        assert_eq!(
            parts("/run/ev%69l/x%2Dy/a%20b"),
            Some(("evil".to_owned(), "x-y".to_owned(), "/a%20b".to_owned()))
        );
        assert_eq!(parts("/run/%FF/x"), None, "not UTF-8");
    }

    #[test]
    fn cookies_are_confined_to_their_app() {
        let confined = |v: &str| confine_cookie(v, "/run/shop");
        assert_eq!(confined("sid=1").as_deref(), Some("sid=1; Path=/run/shop"));
        assert_eq!(
            confined("sid=1; Path=/; Domain=example.com; HttpOnly").as_deref(),
            Some("sid=1; HttpOnly; Path=/run/shop")
        );
        // A path inside the app is kept; a look-alike prefix is not inside.
        assert_eq!(
            confined("a=b; Path=/run/shop/cart").as_deref(),
            Some("a=b; Path=/run/shop/cart")
        );
        assert_eq!(
            confined("a=b; Path=/run/shopping").as_deref(),
            Some("a=b; Path=/run/shop")
        );
        assert_eq!(
            confined("a=b; Path=/api/v1/admin").as_deref(),
            Some("a=b; Path=/run/shop")
        );
        assert_eq!(confined("not a cookie"), None);
    }

    #[test]
    fn the_cookie_root_follows_the_mount_point() {
        let original = |p: &str| OriginalUri(p.parse().unwrap());
        assert_eq!(app_root(None, "/run/shop/x", "shop"), "/run/shop");
        assert_eq!(
            app_root(Some(&original("/run/shop/x")), "/run/shop/x", "shop"),
            "/run/shop"
        );
        assert_eq!(
            app_root(
                Some(&original("/picloud/run/shop/x/y")),
                "/run/shop/x/y",
                "shop"
            ),
            "/picloud/run/shop"
        );
        assert_eq!(
            confine_cookie("sid=1; Path=/", "/picloud/run/shop").as_deref(),
            Some("sid=1; Path=/picloud/run/shop")
        );
    }

    #[test]
    fn queries_keep_the_first_value_and_every_repeated_one() {
        let mut r = ScriptRequest::default();
        r.set_query_pairs(query_pairs(Some("a=1&b=two%20words&a=3&a=")));
        assert_eq!(r.query.get("a").map(String::as_str), Some("1"));
        assert_eq!(r.query.get("b").map(String::as_str), Some("two words"));
        assert_eq!(r.query_repeated.len(), 1);
        assert_eq!(r.query_repeated["a"], ["1", "3", ""]);
        assert!(query_pairs(None).is_empty());
    }
}
