//! The dashboard: the SvelteKit app built to `dashboard/build/`, embedded in
//! the binary (feature `dashboard`) and served at `/`.
//!
//! - A file of the build is served with its type; `_app/immutable/*`
//!   (content-hashed names) is cached for a year, everything else
//!   (the HTML above all) is `no-cache`, so a new binary's dashboard is
//!   picked up at once.
//! - Any other path is a page of the single-page app: its fallback,
//!   `200.html`. Except under `/api/`, `/run/`, `/async/`, `/_app/` and
//!   `/internal/`: a missing asset or endpoint there is a JSON 404, never
//!   HTML.
//! - Answers are gzip-compressed when the client accepts it.
//! - Nothing is loaded from elsewhere: the build has no external asset.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

#[derive(rust_embed::Embed)]
#[folder = "../dashboard/build/"]
#[allow_missing = true]
struct Assets;

/// The single-page app's fallback page.
const FALLBACK: &str = "200.html";

/// Paths whose misses are JSON 404s, never the app's page.
const NOT_THE_APP: [&str; 5] = ["api/", "run/", "async/", "_app/", "internal/"];

/// Whether the binary holds a built dashboard.
pub fn is_embedded() -> bool {
    Assets::get(FALLBACK).is_some()
}

/// The dashboard as a router with only a fallback: mount it as the
/// fallback of the instance's routes ([`crate::app`] does).
pub fn dashboard_router() -> Router {
    Router::new()
        .fallback(serve)
        .layer(tower_http::compression::CompressionLayer::new())
}

fn file(path: &str, file: rust_embed::EmbeddedFile) -> Response {
    let mime = file.metadata.mimetype().to_owned();
    let mut resp = Response::new(Body::from(file.data.into_owned()));
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&mime) {
        h.insert(header::CONTENT_TYPE, v);
    }
    let cache = if path.starts_with("_app/immutable/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    resp
}

async fn serve(method: Method, uri: Uri) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return ApiError::not_found().into_response();
    }
    let path = uri.path().trim_start_matches('/');
    if let Some(found) = (!path.is_empty()).then(|| Assets::get(path)).flatten() {
        return file(path, found);
    }
    if NOT_THE_APP.iter().any(|p| path.starts_with(p)) || path.contains("..") {
        return ApiError::not_found().into_response();
    }
    match Assets::get(FALLBACK) {
        Some(page) => {
            let mut resp = file(FALLBACK, page);
            *resp.status_mut() = StatusCode::OK;
            resp
        }
        None => ApiError::not_found().into_response(),
    }
}
