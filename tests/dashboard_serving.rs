//! The embedded dashboard as the server serves it: `/` and every page of
//! the single-page app are its `200.html` (no-cache); its hashed assets are
//! cached for a year and gzipped on request; a miss under `/api/`, `/run/`,
//! `/async/`, `/_app/` or `/internal/` is a JSON 404, never the page.

mod support;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE};
use support::TestServer;

/// The path of the built bundle (its name carries a content hash).
fn bundle() -> String {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboard/build/_app/immutable");
    let name = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".js"))
        .expect("a built bundle");
    format!("/_app/immutable/{name}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_is_served_with_its_fallback_and_caching() {
    let s = TestServer::memory().await;
    for page in [
        "/",
        "/apps/shop",
        "/apps/shop?tab=jobs",
        "/users",
        "/tokens",
    ] {
        let resp = s.client.get(s.url(page)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{page}");
        let h = resp.headers();
        assert!(
            h[CONTENT_TYPE].to_str().unwrap().starts_with("text/html"),
            "{page}"
        );
        assert_eq!(h[CACHE_CONTROL], "no-cache", "{page}");
        assert_eq!(h["x-frame-options"], "DENY");
        let body = resp.text().await.unwrap();
        assert!(body.contains("/_app/immutable/"), "{page}: {body}");
    }
    // An asset: a year of caching, its type, gzip when asked for.
    let resp = s
        .client
        .get(s.url(&bundle()))
        .header(ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers();
    assert_eq!(h[CACHE_CONTROL], "public, max-age=31536000, immutable");
    assert!(
        h[CONTENT_TYPE].to_str().unwrap().contains("javascript"),
        "{h:?}"
    );
    assert_eq!(h[CONTENT_ENCODING], "gzip");
    // Misses where the app's page must never answer: JSON 404s.
    for path in [
        "/_app/immutable/missing.js",
        "/_app/version.txt",
        "/api/v1/nothing",
        "/api/",
        "/internal/anything",
        "/run/",
        "/async/x",
    ] {
        let resp = s.client.get(s.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(
            resp.headers()[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{path}"
        );
    }
    // Writes to a page are not the app's either.
    let resp = s.client.post(s.url("/apps/shop")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}
