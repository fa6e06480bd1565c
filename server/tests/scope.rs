//! The session picker and time range on the request list, its JSON API, its
//! live stream and the endpoint page's tiles, over a store of two sessions
//! whose requests are known by construction.

use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use timeglass_model::{ProfiledRequest, Request as Marked};
use timeglass_server::{app, ServerOptions};
use timeglass_store::{testing, Batch, ClockMap, NewSession, ProcessId, SessionId, Store};
use tower::ServiceExt;

const MS: u64 = 1_000_000;
/// Session 1 starts at 2026-09-21T14:13:20Z, session 2 an hour later.
const T0_NS: i64 = 1_790_000_000_000_000_000;
const HOUR_NS: i64 = 3_600_000_000_000;

struct World {
    _dir: tempfile::TempDir,
    db: PathBuf,
    sessions: [(SessionId, ProcessId); 2],
}

/// A request `at_s` seconds into its session, taking `ms`.
fn request(path: &str, route: &str, at_s: u64, ms: u64, status: u16) -> ProfiledRequest {
    ProfiledRequest::new(Marked {
        marker_id: at_s * 1000 + ms,
        pid: 4242,
        tid: 99,
        method: "GET".into(),
        path: path.into(),
        route: Some(route.into()),
        status: Some(status),
        errored: false,
        cancelled: false,
        start_ns: at_s * 1000 * MS,
        end_ns: (at_s * 1000 + ms) * MS,
        response_end_ns: None,
    })
}

impl World {
    /// Session 1: `/a/1` `/a/2` `/a/3` at 0, 60 and 120 s (ids 1-3), then
    /// `/shared` three times (ids 4-6, 5, 20 and 35 ms, the last a 500).
    /// Session 2: `/b/1` `/b/2` `/b/3` at 0, 60 and 120 s (ids 7-9) and
    /// `/shared` once (id 10, 7 ms).
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("timeglass.db");
        let mut store = Store::open(&db).unwrap();
        let first = begin(&mut store, T0_NS);
        let second = begin(&mut store, T0_NS + HOUR_NS);
        let world = World {
            _dir: dir,
            db,
            sessions: [first, second],
        };
        world.write(
            &mut store,
            0,
            vec![
                request("/a/1", "/a/{n}", 0, 4, 200),
                request("/a/2", "/a/{n}", 60, 4, 200),
                request("/a/3", "/a/{n}", 120, 4, 200),
                request("/shared", "/shared", 130, 5, 200),
                request("/shared", "/shared", 140, 20, 200),
                request("/shared", "/shared", 150, 35, 500),
            ],
        );
        world.write(
            &mut store,
            1,
            vec![
                request("/b/1", "/b/{n}", 0, 4, 200),
                request("/b/2", "/b/{n}", 60, 4, 200),
                request("/b/3", "/b/{n}", 120, 4, 200),
                request("/shared", "/shared", 130, 7, 200),
            ],
        );
        world
    }

    fn write(&self, store: &mut Store, session: usize, requests: Vec<ProfiledRequest>) {
        let (session, process) = self.sessions[session];
        let batch = Batch {
            session,
            requests: requests.into_iter().map(|r| (process, r)).collect(),
            outside: vec![],
            outside_timeline: vec![],
            process_samples: vec![],
        };
        store.write(&batch).unwrap();
    }

    fn app(&self) -> Router {
        app(&ServerOptions::new(self.db.clone()))
    }
}

fn begin(store: &mut Store, unix_ns: i64) -> (SessionId, ProcessId) {
    let clock = ClockMap {
        unix_ns,
        ..testing::CLOCK
    };
    let session = NewSession {
        clock,
        ..testing::session()
    };
    testing::begin(store, &session, &testing::process())
}

async fn page(app: Router, uri: &str) -> (StatusCode, String) {
    let request = Request::get(uri)
        .header(header::HOST, "localhost:7477")
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

async fn json(app: Router, uri: &str) -> serde_json::Value {
    let (status, body) = page(app, uri).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The paths the list API returns, in its order.
async fn listed(app: Router, query: &str) -> Vec<String> {
    let list = json(app, &format!("/api/v1/requests?{query}")).await;
    list["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_string())
        .collect()
}

/// The paths of the rows the list page renders, in its order.
fn rows(html: &str) -> Vec<String> {
    html.split("<td class=\"path\"><a href=\"/requests/")
        .skip(1)
        .map(|rest| {
            let text = &rest[rest.find("\">").unwrap() + 2..];
            text[..text.find("</a>").unwrap()].to_string()
        })
        .collect()
}

#[tokio::test]
async fn the_list_shows_exactly_the_session_and_range_chosen() {
    let world = World::new();
    let all = listed(world.app(), "").await;
    assert_eq!(all.len(), 10);
    assert_eq!(
        listed(world.app(), "session=2").await,
        ["/shared", "/b/3", "/b/2", "/b/1"]
    );
    // 14:14:00 to 14:15:00 holds session 1's request at 60 s (14:14:20).
    let range = "since=2026-09-21T14:14:00Z&until=2026-09-21T14:15:00Z";
    assert_eq!(listed(world.app(), range).await, ["/a/2"]);
    // The same range an hour later, in session 2 only; `until` is exclusive.
    let later = "session=2&since=2026-09-21T15:14:20Z&until=2026-09-21T15:15:20Z";
    assert_eq!(listed(world.app(), later).await, ["/b/2"]);
    // Other filters still apply beside them.
    assert_eq!(
        listed(world.app(), "session=1&q=shared&status=5xx").await,
        ["/shared"]
    );

    let (status, html) = page(world.app(), &format!("/?session=1&{range}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rows(&html), ["/a/2"]);
    assert!(
        html.contains("<option value=\"1\" selected>#1 · "),
        "{html}"
    );
    assert!(html.contains("value=\"2026-09-21T14:14:00Z\""));
    assert!(html.contains("value=\"2026-09-21T14:15:00Z\""));
    let (_, html) = page(world.app(), "/").await;
    assert_eq!(rows(&html).len(), 10);
    assert!(html.contains("<option value=\"\" selected>All sessions</option>"));
}

#[tokio::test]
async fn bad_sessions_and_times_are_refused() {
    let world = World::new();
    for (query, says) in [
        ("session=9", "no session 9"),
        ("session=x", "must be a session id"),
        ("since=yesterday", "is not a time"),
        (
            "since=2026-09-21T15:00:00Z&until=2026-09-21T14:00:00Z",
            "is not before",
        ),
    ] {
        for prefix in ["/?", "/api/v1/requests?"] {
            let (status, body) = page(world.app(), &format!("{prefix}{query}")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{prefix}{query}");
            assert!(body.contains(says), "{prefix}{query}: {body}");
        }
    }
}

#[tokio::test]
async fn paging_keeps_the_session_and_range() {
    let world = World::new();
    let first = "/?session=1&since=2026-09-21T14:13:00Z&limit=2";
    let (_, html) = page(world.app(), first).await;
    assert_eq!(rows(&html), ["/shared", "/shared"]);
    let start = html.find("<nav class=\"pager\">").unwrap();
    let next = &html[start..];
    let href = &next[next.find("href=\"").unwrap() + 6..];
    let href = href[..href.find('"').unwrap()].replace("&#38;", "&");
    assert!(
        href.contains("session=1&since=2026-09-21T14%3A13%3A00Z"),
        "{href}"
    );
    // The rest of session 1 (the page size is not carried), none of session 2.
    let (_, html) = page(world.app(), &href).await;
    assert_eq!(rows(&html), ["/shared", "/a/3", "/a/2", "/a/1"]);
    // The sort links keep them too.
    assert!(
        html.contains("href=\"/?session=1&#38;since=2026-09-21T14%3A13%3A00Z&#38;sort=-duration\"")
    );
}

/// The first `request` events of a stream that arrive within `wait`.
async fn streamed(app: Router, uri: &str, wait: Duration) -> String {
    let request = Request::get(uri)
        .header(header::HOST, "localhost")
        .header(header::ACCEPT, "text/event-stream")
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut text = String::new();
    let until = tokio::time::Instant::now() + wait;
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(until, body.frame()).await {
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    text
}

#[tokio::test]
async fn the_live_stream_leaves_out_other_sessions_requests() {
    let world = World::new();
    let uri = "/api/v1/requests/stream?after=10&session=1";
    let app = world.app();
    let stream = tokio::spawn(streamed(app, uri, Duration::from_millis(1500)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut store = Store::open_existing(&world.db).unwrap();
    // Id 11 in session 2, then id 12 in session 1.
    world.write(
        &mut store,
        1,
        vec![request("/b/late", "/b/{n}", 200, 4, 200)],
    );
    world.write(
        &mut store,
        0,
        vec![request("/a/late", "/a/{n}", 200, 4, 200)],
    );
    let text = stream.await.unwrap();
    assert!(text.contains("\"id\":12,"), "{text}");
    assert!(text.contains("/a/late"));
    assert!(!text.contains("/b/late"), "{text}");
    assert_eq!(text.matches("event: request").count(), 1, "{text}");
}

#[tokio::test]
async fn the_endpoint_tiles_follow_the_filters_as_the_stats_api() {
    let world = World::new();
    let route = "/routes/GET/shared";
    let api = "/api/v1/routes/GET/shared";
    let stats = |q: &str| format!("/api/v1/stats?method=GET&route=/shared&{q}");
    for query in [
        "",
        "session=1",
        "session=1&since=2026-09-21T14:15:35Z",
        "session=2",
    ] {
        let detail = json(world.app(), &format!("{api}?{query}")).await;
        let expected = json(world.app(), &stats(query)).await;
        let e = &expected["endpoints"][0];
        let s = &detail["stats"];
        assert_eq!(detail["session"], expected["session"], "{query}");
        assert_eq!(s["count"], e["requests"], "{query}");
        assert_eq!(s["error_rate"], e["error_rate_5xx"], "{query}");
        for (tile, stat) in [
            ("avg_ms", "avg"),
            ("p50_ms", "p50"),
            ("p90_ms", "p90"),
            ("p95_ms", "p95"),
            ("p99_ms", "p99"),
            ("max_ms", "max"),
        ] {
            assert_eq!(s[tile], e["latency_ms"][stat], "{query}: {tile}");
        }
        assert_eq!(s["avg_queries"], e["queries_avg"], "{query}");
    }
    // Known by construction: by default the latest session, one request of 7 ms.
    let detail = json(world.app(), api).await;
    assert_eq!(
        (
            detail["session"].as_i64(),
            detail["stats"]["count"].as_u64()
        ),
        (Some(2), Some(1))
    );
    // Session 1 after 14:15:25: the requests at 140 and 150 s, 20 and 35 ms.
    let (status, html) = page(
        world.app(),
        &format!("{route}?session=1&since=2026-09-21T14:15:35Z"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let tile = |label: &str| {
        let at = html
            .find(&format!("<div class=\"label\">{label}</div>"))
            .unwrap();
        let value = &html[at..];
        let value = &value[value.find("<div class=\"value\">").unwrap() + 19..];
        value[..value.find("</div>").unwrap()].to_string()
    };
    assert_eq!(tile("Requests"), "2");
    assert_eq!(tile("Error rate"), "50.0%");
    assert_eq!(tile("Max"), "35.0 ms");
    assert_eq!(tile("p50"), "20.0 ms");
    // The slowest requests and the links follow the same filters.
    assert!(html.contains("href=\"/requests/6\"") && html.contains("href=\"/requests/5\""));
    assert!(!html.contains("href=\"/requests/4\"") && !html.contains("href=\"/requests/10\""));
    assert!(html
        .contains("/?q=%2Fshared&#38;method=GET&#38;session=1&#38;since=2026-09-21T14%3A15%3A35Z"));
    // A range without its requests: the page says so rather than 404.
    let (status, html) = page(
        world.app(),
        &format!("{route}?session=1&until=2026-09-21T14:14:00Z"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("No requests of this endpoint in this session and time range."));
    let (status, _) = page(world.app(), "/routes/GET/nowhere").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
