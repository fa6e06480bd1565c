//! Golden files of the `/api/v1` JSON over recorded walks run through
//! replay → sampler → join → store (`render/tests/support/pipeline.rs`),
//! handlers called without a socket.
//! `TIMEGLASS_BLESS=1 cargo test -p timeglass-server --test golden`
//! rewrites them; review the diff of `server/tests/data/golden/`.

#[path = "../../render/tests/support/pipeline.rs"]
mod pipeline;

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use timeglass_server::{app, ServerOptions};
use tower::ServiceExt;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden")
}

#[tokio::test]
async fn the_api_json_matches_its_golden_files() {
    let dir = tempfile::tempdir().unwrap();
    let db = pipeline::store("demo-cpu.jsonl", dir.path());
    let scrub = [(dir.path().to_str().unwrap(), "<tmp>")];
    let router = app(&ServerOptions::new(db));
    let cases = [
        ("requests.json", "/api/v1/requests?session=1"),
        ("request-2.json", "/api/v1/requests/2"),
        ("request-2-profile.json", "/api/v1/requests/2/profile"),
        (
            "request-2-profile-mine-cpu.json",
            "/api/v1/requests/2/profile?mine=true&cpu=true",
        ),
        ("routes.json", "/api/v1/routes"),
        (
            "route.json",
            "/api/v1/routes/GET/items/%7Bitem_id%7D?session=1",
        ),
        ("stats.json", "/api/v1/stats?session=1"),
    ];
    for (file, uri) in cases {
        let request = Request::get(uri)
            .header(header::HOST, "localhost:7477")
            .body(Body::empty())
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let text = serde_json::to_string_pretty(&value).unwrap() + "\n";
        pipeline::golden(&golden_dir(), file, &text, &scrub);
    }
}
