//! The dashboard over a real SQLite store, handlers called without a socket
//! (`oneshot`), plus one test over a real socket.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use timeglass_model::{
    Frame, ProfiledRequest, Request as Marked, RequestContext, StackCount, BACKGROUND_FRAME,
};
use timeglass_server::{app, Server, ServerOptions};
use timeglass_store::testing::TestStore;
use timeglass_store::Store;
use tower::ServiceExt;

const MS: u64 = 1_000_000;

/// A temporary store with one session, one process and the requests given.
struct World {
    _dir: tempfile::TempDir,
    db: PathBuf,
}

impl World {
    fn new(requests: Vec<ProfiledRequest>) -> World {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("timeglass.db");
        TestStore::open(&db).write(requests);
        World { _dir: dir, db }
    }

    /// The four requests most tests use, oldest first (ids 1-4).
    fn sample() -> World {
        World::new(vec![
            profiled(
                get("GET", "/items/3", Some("/items/{item_id}"), Some(200), 0),
                fib_stacks(),
            ),
            profiled(
                get("POST", "/upload", Some("/upload"), Some(500), 10),
                vec![count(&["main", "upload"], 2)],
            ),
            background_request(),
            profiled(get("GET", "/nope", None, Some(404), 30), vec![]),
        ])
    }

    fn app(&self) -> Router {
        app(&ServerOptions::new(self.db.clone()))
    }

    fn store(&self) -> Store {
        Store::open_existing(&self.db).unwrap()
    }
}

fn frame(name: &str) -> Frame {
    Frame {
        name: name.into(),
        filename: format!("/app/{name}.py").into(),
        short: "app.py".into(),
        line: 7,
    }
}

fn count(names: &[&str], samples: u64) -> StackCount {
    let stack: Vec<Frame> = names
        .iter()
        .map(|n| {
            if n.starts_with('[') {
                Frame::synthetic(n)
            } else {
                frame(n)
            }
        })
        .collect();
    StackCount {
        stack: stack.into(),
        samples,
    }
}

fn fib_stacks() -> Vec<StackCount> {
    vec![
        count(&["main", "handler", "compute_fib"], 5),
        count(&["main", "handler"], 1),
    ]
}

fn get(method: &str, path: &str, route: Option<&str>, status: Option<u16>, at_ms: u64) -> Marked {
    Marked {
        marker_id: at_ms + 1,
        pid: 4242,
        tid: 99,
        method: method.into(),
        path: path.into(),
        route: route.map(Into::into),
        status,
        errored: false,
        cancelled: false,
        start_ns: at_ms * MS,
        end_ns: (at_ms + 4) * MS,
        response_end_ns: None,
    }
}

fn profiled(request: Marked, stacks: Vec<StackCount>) -> ProfiledRequest {
    ProfiledRequest {
        stacks,
        switched_samples: 1,
        ..ProfiledRequest::new(request)
    }
}

fn background_request() -> ProfiledRequest {
    let mut r = get("GET", "/signup", Some("/signup"), Some(200), 20);
    r.response_end_ns = Some(21 * MS);
    r.end_ns = 29 * MS;
    profiled(
        r,
        vec![
            count(&["main", "signup"], 1),
            count(&[BACKGROUND_FRAME, "send_email"], 8),
        ],
    )
}

async fn fetch(app: Router, uri: &str, host: &str) -> (StatusCode, String) {
    let request = Request::get(uri)
        .header(header::HOST, host)
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

async fn page(app: Router, uri: &str) -> (StatusCode, String) {
    fetch(app, uri, "localhost:7477").await
}

#[tokio::test]
async fn list_page_shows_requests_newest_first() {
    let world = World::sample();
    let (status, html) = page(world.app(), "/").await;
    assert_eq!(status, StatusCode::OK);
    let at = |s: &str| html.find(s).unwrap_or_else(|| panic!("{s} missing"));
    assert!(
        at("/nope") < at("/signup")
            && at("/signup") < at("/upload")
            && at("/upload") < at("/items/3")
    );
    assert!(html.contains("href=\"/requests/1\""));
    assert!(html.contains("/items/{item_id}"));
    assert!(
        html.contains("<tr class=\"err\" data-id=\"2\""),
        "5xx rows are marked red"
    );
}

#[tokio::test]
async fn list_filters_by_text_and_status_class() {
    let world = World::sample();
    let (_, html) = page(world.app(), "/?q=ITEM_ID").await;
    assert!(html.contains("/items/3") && !html.contains("/upload<"));
    let (_, html) = page(world.app(), "/?q=&status=5xx").await;
    assert!(html.contains("/upload<") && !html.contains("/items/3"));
    assert!(html.contains("value=\"5xx\" selected"));
    let (_, html) = page(world.app(), "/?q=zzz").await;
    assert!(html.contains("No requests match."));
    let (_, html) = page(world.app(), "/?min_ms=3.5&method=GET").await;
    assert!(html.contains("value=\"3.5\"") && html.contains("value=\"GET\" selected"));
    let (status, _) = page(world.app(), "/?status=7xx").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn list_pages_continue_before_the_last_row() {
    let world = World::sample();
    let (_, html) = page(world.app(), "/?limit=2").await;
    assert!(html.contains("/nope") && html.contains("/signup") && !html.contains("/upload<"));
    assert!(html.contains("href=\"/?before=3\""), "{html}");
    let (_, html) = page(world.app(), "/?limit=2&q=%2F").await;
    assert!(
        html.contains("href=\"/?q=%2F&#38;before=3\""),
        "the filter stays: {html}"
    );
    let (_, html) = page(world.app(), "/?limit=2&before=3").await;
    assert!(html.contains("/upload<") && html.contains("/items/3") && !html.contains("/signup"));
    assert!(!html.contains("Next page"));
}

#[tokio::test]
async fn detail_page_has_summary_timeline_flame_graph_and_context() {
    let world = World::sample();
    let (status, html) = page(world.app(), "/requests/1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("pid 4242") && html.contains("thread 99"));
    assert!(html.contains("href=\"/routes/GET/items/%7Bitem_id%7D\""));
    // The flame graph's data is in the page; flame.js draws it.
    let data = embedded_profile(&html);
    assert_eq!(data["samples"], 6);
    assert_eq!(data["tree"]["c"][0]["n"], "main");
    assert_eq!(data["tree"]["c"][0]["c"][0]["c"][0]["n"], "compute_fib");
    assert!(html.contains("/assets/flame.js") && html.contains("id=\"mine\""));
    assert!(html.contains("No context was captured"));

    let (_, html) = page(world.app(), "/requests/3").await;
    assert!(html.contains("Background") && html.contains("8.00 ms"));
    assert!(
        html.contains("tl-background"),
        "the timeline shows the background stage"
    );
    assert_eq!(embedded_profile(&html)["tree"]["c"][0]["n"], "[background]");
}

#[tokio::test]
async fn context_is_shown_and_served_with_redactions_marked() {
    let mut r = profiled(
        get("POST", "/login", Some("/login"), Some(200), 0),
        vec![count(&["main", "login"], 3)],
    );
    r.request.response_end_ns = Some(3 * MS);
    r.request.end_ns = 3 * MS;
    r.context = Some(RequestContext {
        request_headers: vec![
            ("authorization".into(), "[redacted]".into()),
            ("content-type".into(), "application/json".into()),
        ],
        query: "next=%2Fhome&token=[redacted]".into(),
        body: r#"{"user": "ann", "password": "[redacted]"}"#.into(),
        body_bytes: 40_000,
        response_headers: vec![("set-cookie".into(), "[redacted]".into())],
        response_start_ns: Some(2 * MS),
        handler_start_ns: Some(MS / 2),
    });
    let world = World::new(vec![r]);
    let (_, html) = page(world.app(), "/requests/1").await;
    for part in [
        "authorization",
        "application/json",
        "next",
        "set-cookie",
        "&#34;user&#34;",
    ] {
        assert!(html.contains(part), "{part} missing");
    }
    assert_eq!(html.matches("class=\"redacted\"").count(), 4);
    assert!(
        html.contains("of 39.1 KiB"),
        "a cut body says how much it had"
    );
    assert!(html.contains("tl-sending-response"));

    let (_, json) = page(world.app(), "/api/v1/requests/1").await;
    let detail: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(detail["context"]["body_bytes"], 40_000);
    assert_eq!(detail["context"]["request_headers"][0][1], "[redacted]");
    let stages: Vec<&str> = detail["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        stages,
        ["middleware & dependencies", "handler", "sending response"]
    );
}

#[tokio::test]
async fn profile_api_applies_my_code_only_and_hides_synthetic_frames() {
    let lib = |name: &str| Frame {
        name: name.into(),
        filename: "/venv/lib/python3.12/site-packages/starlette/routing.py".into(),
        short: "starlette/routing.py".into(),
        line: 3,
    };
    let stacks = vec![
        StackCount {
            stack: vec![lib("handle"), frame("handler"), lib("dumps")].into(),
            samples: 4,
        },
        StackCount {
            stack: vec![Frame::synthetic(BACKGROUND_FRAME), frame("send_email")].into(),
            samples: 2,
        },
    ];
    let world = World::new(vec![profiled(
        get("GET", "/a", Some("/a"), Some(200), 0),
        stacks,
    )]);
    let profile = |uri: &'static str| {
        let app = world.app();
        async move {
            let (status, body) = page(app, uri).await;
            assert_eq!(status, StatusCode::OK, "{uri}: {body}");
            serde_json::from_str::<serde_json::Value>(&body).unwrap()
        }
    };
    let all = profile("/api/v1/requests/1/profile").await;
    assert_eq!(roots(&all), ["handle", "[background]"]);
    assert_eq!(all["functions"][0]["name"], "dumps");

    let mine = profile("/api/v1/requests/1/profile?mine=true").await;
    assert_eq!(roots(&mine), ["handler", "[background]"]);
    assert_eq!(
        mine["tree"]["c"][0]["s"], 4,
        "library time folds into the caller"
    );

    let plain = profile("/api/v1/requests/1/profile?mine=true&hide_synthetic=true").await;
    assert_eq!(roots(&plain), ["handler", "send_email"]);
    assert_eq!(plain["samples"], 6);

    let (status, svg) = page(world.app(), "/api/v1/requests/1/flamegraph.svg?icicle=true").await;
    assert_eq!(status, StatusCode::OK);
    assert!(svg.contains("<svg") && svg.contains("handler (app.py:7)"));
}

fn roots(profile: &serde_json::Value) -> Vec<&str> {
    profile["tree"]["c"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["n"].as_str().unwrap())
        .collect()
}

fn embedded_profile(html: &str) -> serde_json::Value {
    let marker = "id=\"profile-data\">";
    let start = html.find(marker).expect("profile data") + marker.len();
    let end = start + html[start..].find("</script>").unwrap();
    serde_json::from_str(&html[start..end]).unwrap()
}

#[tokio::test]
async fn list_marks_requests_slower_than_their_route_p95() {
    // 30 requests of one route: 1..=30 ms; p95 is the 29th.
    let requests = (1..=30)
        .map(|i| {
            let mut r = get(
                "GET",
                &format!("/items/{i}"),
                Some("/items/{item_id}"),
                Some(200),
                i * 100,
            );
            r.end_ns = r.start_ns + i * MS;
            profiled(r, vec![])
        })
        .collect();
    let world = World::new(requests);
    let (_, html) = page(world.app(), "/").await;
    assert_eq!(
        html.matches("class=\"slow\"").count(),
        1,
        "only the 30 ms request"
    );
    let slow_row = html.lines().find(|l| l.contains("class=\"slow\"")).unwrap();
    assert!(slow_row.contains("/items/30<"));
    assert!(slow_row.contains("p95 29.0 ms"));
}

#[tokio::test]
async fn list_filters_by_method_and_min_duration_and_sorts_by_duration() {
    let mut slow = get("POST", "/upload", Some("/upload"), Some(201), 50);
    slow.end_ns = slow.start_ns + 90 * MS;
    let world = World::new(vec![
        profiled(get("GET", "/a", Some("/a"), Some(200), 0), vec![]),
        profiled(slow, vec![]),
        profiled(get("GET", "/b", Some("/b"), Some(200), 100), vec![]),
    ]);
    let ids = |body: &str| -> Vec<i64> {
        let list: serde_json::Value = serde_json::from_str(body).unwrap();
        list["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect()
    };
    let (_, body) = page(world.app(), "/api/v1/requests?method=post").await;
    assert_eq!(ids(&body), [2]);
    let (_, body) = page(world.app(), "/api/v1/requests?min_ms=10").await;
    assert_eq!(ids(&body), [2]);
    let (_, body) = page(world.app(), "/api/v1/requests?sort=-duration").await;
    assert_eq!(ids(&body)[0], 2);
    let (_, body) = page(world.app(), "/api/v1/requests?sort=time&limit=1&before=1").await;
    assert_eq!(ids(&body), [2]);
    let (_, html) = page(world.app(), "/?sort=-duration").await;
    assert!(
        html.contains("data-live=\"off\""),
        "only newest-first lists take rows live"
    );
    let (_, html) = page(world.app(), "/?method=GET").await;
    assert!(html.contains("data-live=\"on\""));
    // askama escapes `&` as `&#38;`, which browsers read as `&amp;`.
    assert!(html.contains("/api/v1/requests/stream?after=3&#38;method=GET"));
}

#[tokio::test]
async fn route_view_has_percentiles_histogram_and_merged_flame_graph() {
    let requests = (1..=10)
        .map(|i| {
            let mut r = get(
                "GET",
                &format!("/items/{i}"),
                Some("/items/{item_id}"),
                Some(200),
                i * 100,
            );
            r.end_ns = r.start_ns + i * MS;
            if i == 10 {
                r.status = Some(503);
            }
            profiled(r, vec![count(&["main", "handler"], 1)])
        })
        .collect();
    let world = World::new(requests);
    let (status, html) = page(world.app(), "/routes/GET/items/%7Bitem_id%7D").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("10.0%"), "error rate");
    assert!(html.contains("class=\"histogram\""));
    assert_eq!(
        embedded_profile(&html)["samples"],
        10,
        "merged over all requests"
    );

    let (_, json) = page(world.app(), "/api/v1/routes/GET/items/%7Bitem_id%7D").await;
    let detail: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(detail["stats"]["count"], 10);
    assert_eq!(detail["stats"]["p50_ms"], 5.0);
    assert_eq!(detail["stats"]["p95_ms"], 10.0);
    assert_eq!(detail["slowest"][0]["id"], 10);
    let (_, json) = page(
        world.app(),
        "/api/v1/route-profiles/GET/items/%7Bitem_id%7D/profile",
    )
    .await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&json).unwrap()["samples"],
        10
    );

    let (_, html) = page(world.app(), "/routes").await;
    assert!(html.contains("href=\"/routes/GET/items/%7Bitem_id%7D\""));
    let (status, _) = page(world.app(), "/routes/GET/nowhere").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn live_stream_sends_new_matching_requests() {
    let world = World::sample();
    let mut request = Request::get("/api/v1/requests/stream?after=2&status=2xx")
        .header(header::HOST, "localhost")
        .body(Body::empty())
        .unwrap();
    request
        .headers_mut()
        .insert(header::ACCEPT, "text/event-stream".parse().unwrap());
    let response = world.app().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let mut body = response.into_body();
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let text = String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap();
    // Request 3 is a 200; request 4 (a 404) is filtered out.
    assert!(
        text.starts_with("event: request\ndata: {\"id\":3,"),
        "{text}"
    );
    assert!(text.contains("/signup"));
    assert!(!text.contains("/nope"));
}

#[tokio::test]
async fn responses_carry_a_strict_policy_and_no_cors() {
    let world = World::sample();
    let request = Request::get("/api/v1/requests")
        .header(header::HOST, "localhost")
        .header(header::ORIGIN, "http://evil.example")
        .body(Body::empty())
        .unwrap();
    let response = world.app().oneshot(request).await.unwrap();
    let headers = response.headers();
    assert!(headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
    assert!(headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .contains("default-src 'self'"));
    assert!(headers["server-timing"]
        .to_str()
        .unwrap()
        .starts_with("app;dur="));
    let post = Request::post("/api/v1/requests")
        .header(header::HOST, "localhost")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        world.app().oneshot(post).await.unwrap().status(),
        StatusCode::METHOD_NOT_ALLOWED,
        "nothing changes data"
    );
}

#[tokio::test]
async fn unknown_ids_and_pages_are_404() {
    let world = World::sample();
    let (status, html) = page(world.app(), "/requests/999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("no request with id 999"));
    assert_eq!(
        page(world.app(), "/api/v1/requests/999").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        page(world.app(), "/api/v1/requests/999/folded").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        page(world.app(), "/nothing/here").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn foreign_hosts_are_refused() {
    let world = World::sample();
    for host in [
        "evil.example",
        "evil.example:7477",
        "127.0.0.1.evil.example",
    ] {
        let (status, body) = fetch(world.app(), "/", host).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{host}");
        assert!(body.contains("DNS rebinding"));
    }
    for host in ["127.0.0.1:7477", "[::1]:7477", "localhost"] {
        assert_eq!(
            fetch(world.app(), "/", host).await.0,
            StatusCode::OK,
            "{host}"
        );
    }
}

#[tokio::test]
async fn a_missing_store_says_how_to_record_one() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(&ServerOptions::new(dir.path().join("none.db")));
    let (status, html) = page(app.clone(), "/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        html.contains("<code>timeglass run -- uvicorn app:app</code>"),
        "{html}"
    );
    let (_, json) = page(app, "/api/v1/requests").await;
    assert!(json.contains("timeglass run -- uvicorn app:app"));
}

#[tokio::test]
async fn api_matches_the_store() {
    let world = World::sample();
    let store = world.store();
    let (status, body) = page(world.app(), "/api/v1/requests?limit=3").await;
    assert_eq!(status, StatusCode::OK);
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    let newest = store
        .requests(&timeglass_store::RequestQuery {
            limit: 3,
            session: None,
        })
        .unwrap();
    assert_eq!(list["requests"], serde_json::to_value(&newest).unwrap());
    assert_eq!(list["next_before"], 2);

    let (_, body) = page(world.app(), "/api/v1/requests/3").await;
    let one: serde_json::Value = serde_json::from_str(&body).unwrap();
    let row = serde_json::to_value(store.request(3).unwrap().unwrap()).unwrap();
    for (key, value) in row.as_object().unwrap() {
        assert_eq!(&one[key], value, "{key}");
    }

    let (_, folded) = page(world.app(), "/api/v1/requests/1/folded").await;
    assert_eq!(
        folded,
        timeglass_render::folded(&store.request_stacks(1).unwrap())
    );
    assert!(folded.contains("compute_fib (app.py:7) 5"));
}

#[test]
fn serves_over_a_real_socket() {
    let world = World::sample();
    let options = ServerOptions {
        port: 0,
        ..ServerOptions::new(world.db.clone())
    };
    let server = Server::bind(&options).unwrap();
    assert!(!server.is_exposed());
    let address = server.local_addr();
    std::thread::spawn(move || server.run());

    let response = raw_get(address, "/requests/1");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("compute_fib"));
    let response = raw_get(address, "/assets/flame.js");
    assert!(response.starts_with("HTTP/1.1 200") && response.contains("text/javascript"));
}

fn raw_get(address: std::net::SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// Server time of the list page over ~1000 requests. Run with
/// `cargo test --release -p timeglass-server -- --ignored --nocapture`.
#[tokio::test]
#[ignore]
async fn list_page_timing() {
    let requests = (0..1000)
        .map(|i| {
            profiled(
                get(
                    "GET",
                    &format!("/items/{i}"),
                    Some("/items/{item_id}"),
                    Some(200),
                    i * 10,
                ),
                fib_stacks(),
            )
        })
        .collect();
    let world = World::new(requests);
    for (label, uri) in [
        ("list", "/"),
        ("filtered list", "/?q=items/99&status=2xx"),
        ("detail", "/requests/500"),
    ] {
        print_p50(&world, label, uri).await;
    }
}

async fn print_p50(world: &World, label: &str, uri: &str) {
    let mut times = Vec::new();
    for _ in 0..50 {
        let start = Instant::now();
        let (status, _) = page(world.app(), uri).await;
        times.push(start.elapsed());
        assert_eq!(status, StatusCode::OK);
    }
    times.sort();
    println!("{label} `{uri}`: p50 {:?}, max {:?}", times[25], times[49]);
}

fn statement(sql: &str, normalized: &str, at_ms: u64, line: u32) -> timeglass_model::SqlQuery {
    timeglass_model::SqlQuery {
        sql: sql.into(),
        sql_len: sql.len() as u64,
        normalized: normalized.into(),
        params: Some("(3,)".into()),
        params_len: 4,
        start_ns: at_ms * MS,
        end_ns: at_ms * MS + MS / 2,
        rows: Some(1),
        driver: "sqlite3".into(),
        error: None,
        caller: vec![frame_at("load_items", line)].into(),
        stack: vec![frame("main"), frame_at("load_items", line)].into(),
    }
}

fn frame_at(name: &str, line: u32) -> Frame {
    Frame {
        line,
        ..frame(name)
    }
}

/// A request that ran one statement six times (an N+1), another once, and
/// made one HTTP call; its waits are `[sql]`/`[http]` stacks.
fn io_request() -> ProfiledRequest {
    let mut r = get("GET", "/orders", Some("/orders"), Some(200), 0);
    r.end_ns = 20 * MS;
    let mut first = statement("SELECT * FROM orders", "SELECT * FROM orders", 1, 10);
    first.error = Some("OperationalError: database is locked".into());
    let mut queries = vec![first];
    for i in 0..6 {
        queries.push(statement(
            &format!("SELECT name FROM items WHERE id = {i}"),
            "SELECT name FROM items WHERE id = ?",
            2 + i,
            12,
        ));
    }
    let calls = vec![timeglass_model::HttpCall {
        method: "GET".into(),
        url: "https://api.example.com/rates?key=[redacted]".into(),
        status: Some(503),
        start_ns: 10 * MS,
        end_ns: 16 * MS,
        error: None,
        library: "httpx".into(),
        caller: vec![frame("fetch_rates")].into(),
        stack: vec![frame("main"), frame("fetch_rates")].into(),
    }];
    ProfiledRequest {
        stacks: vec![count(&["main", "render"], 3)],
        waits: vec![
            count(&["main", "load_items", "[sql] SELECT name FROM items"], 3),
            count(&["main", "fetch_rates", "[http] GET api.example.com"], 6),
        ],
        queries,
        calls,
        n_plus_one: Some(timeglass_model::Repeated {
            normalized: "SELECT name FROM items WHERE id = ?".into(),
            count: 6,
            caller: Some("app.py:12 in load_items".into()),
        }),
        ..ProfiledRequest::new(r)
    }
}

#[tokio::test]
async fn list_shows_queries_db_time_and_the_n_plus_one_flag() {
    let world = World::new(vec![
        io_request(),
        profiled(get("GET", "/plain", Some("/plain"), Some(200), 30), vec![]),
    ]);
    let (status, body) = page(world.app(), "/api/v1/requests").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    let rows = list["requests"].as_array().unwrap();
    let orders = rows.iter().find(|r| r["path"] == "/orders").unwrap();
    assert_eq!(orders["queries"], 7);
    assert_eq!(orders["db_ms"], 3.5);
    assert_eq!(orders["calls"], 1);
    assert_eq!(orders["n_plus_one"], true);
    assert_eq!(orders["repeated"]["count"], 6);
    let plain = rows.iter().find(|r| r["path"] == "/plain").unwrap();
    assert_eq!(
        (plain["queries"].clone(), plain["n_plus_one"].clone()),
        (0.into(), false.into())
    );

    let (_, html) = page(world.app(), "/").await;
    assert!(
        html.contains("<th class=\"num\" title=\"SQL statements the request ran\">Queries</th>")
    );
    assert_eq!(
        html.matches("class=\"badge nplus1-badge\"").count(),
        1,
        "{html}"
    );
    assert!(html.contains(
        "title=\"likely N+1: SELECT name FROM items WHERE id = ? ran 6× from app.py:12 in load_items\""
    ));
    assert!(html.contains("<td class=\"num db\"><span title=\"18% of the response time waiting on the database\">3.50 ms</span></td>"), "{html}");

    // The live stream sends the same fields with the row.
    let stream = world.app().oneshot(
        Request::get("/api/v1/requests/stream?after=0")
            .header(header::HOST, "localhost")
            .body(Body::empty())
            .unwrap(),
    );
    let response = stream.await.unwrap();
    let mut body = response.into_body();
    let frame = body.frame().await.unwrap().unwrap();
    let text = String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap();
    let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let event: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(
        (event["id"].clone(), event["n_plus_one"].clone()),
        (1.into(), true.into())
    );
    assert!(event["html"].as_str().unwrap().contains("nplus1-badge"));
}

#[tokio::test]
async fn detail_lists_statements_groups_repeats_and_draws_them_on_the_timeline() {
    let world = World::new(vec![io_request()]);
    let (status, body) = page(world.app(), "/api/v1/requests/1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let detail: serde_json::Value = serde_json::from_str(&body).unwrap();
    let statements = detail["statements"].as_array().unwrap();
    assert_eq!(statements.len(), 7);
    assert_eq!(statements[0]["sql"], "SELECT * FROM orders");
    assert_eq!(statements[6]["sql"], "SELECT name FROM items WHERE id = 5");
    assert_eq!(statements[6]["start_ms"], 7.0);
    assert_eq!(detail["http_calls"][0]["status"], 503);

    let (status, html) = page(world.app(), "/requests/1").await;
    assert_eq!(status, StatusCode::OK);
    // Tiles, the groups (the N+1 highlighted), every statement in order.
    assert!(html.contains("<div class=\"value\">7 <span class=\"sub\">in 3.50 ms</span></div>"));
    assert!(html.contains("<div class=\"value\">1 <span class=\"sub\">in 6.00 ms</span></div>"));
    assert!(html.contains("<tr class=\"group nplus1\"><td class=\"num\"><span class=\"badge nplus1-badge\" title=\"likely N+1\">N+1</span> 6×</td><td class=\"num\">3.00 ms</td>"), "{html}");
    assert_eq!(html.matches("<tr class=\"stmt nplus1\">").count(), 6);
    assert_eq!(html.matches("<tr class=\"stmt err\">").count(), 1);
    assert!(html.contains("<div class=\"q-error\">OperationalError: database is locked</div>"));
    assert_eq!(
        html.matches("class=\"tl-bar tl-query tl-failed\"").count(),
        1
    );
    let first = html.find("SELECT * FROM orders</code>").unwrap();
    let last = html
        .find("SELECT name FROM items WHERE id = 5</code>")
        .unwrap();
    assert!(first < last);
    assert!(html.contains("<code>(3,)</code>"));
    assert!(html.contains("app.py:12 in load_items"));
    assert!(html.contains("https://api.example.com/rates?key=[redacted]"));
    // One bar per statement and call, at its offset: 20 ms long, the call at 10 ms.
    assert_eq!(html.matches("class=\"tl-bar tl-query\"").count(), 6);
    assert!(
        html.contains(
            "class=\"tl-bar tl-call\" x=\"50.000%\" y=\"0\" width=\"30.000%\" height=\"100%\" rx=\"2\" \
         data-title=\"6.00 ms at 10.0 ms: GET https://api.example.com/rates?key=[redacted] → 503\""
        ),
        "{html}"
    );
    assert!(
        html.contains("<title>0.50 ms at 1.00 ms (sqlite3, 1 rows): SELECT * FROM orders</title>")
    );
}

#[tokio::test]
async fn hiding_synthetic_frames_drops_the_waits_and_their_time() {
    let world = World::new(vec![io_request()]);
    let json = |uri: &'static str| {
        let app = world.app();
        async move {
            let (status, body) = page(app, uri).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            serde_json::from_str::<serde_json::Value>(&body).unwrap()
        }
    };
    let all = json("/api/v1/requests/1/profile").await;
    assert_eq!(all["samples"], 12);
    let names: Vec<&str> = all["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"[http] GET api.example.com"), "{names:?}");
    let sampled = json("/api/v1/requests/1/profile?hide_synthetic=true").await;
    assert_eq!(sampled["samples"], 3, "only what was sampled remains");
    assert_eq!(sampled["functions"][0]["name"], "render");
    assert_eq!(sampled["functions"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn endpoint_view_shows_queries_per_request_and_db_share() {
    let mut plain = get("GET", "/orders", Some("/orders"), Some(200), 40);
    plain.end_ns = 60 * MS;
    let world = World::new(vec![io_request(), profiled(plain, vec![])]);
    let (status, body) = page(world.app(), "/api/v1/routes/GET/orders").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let detail: serde_json::Value = serde_json::from_str(&body).unwrap();
    let stats = &detail["stats"];
    assert_eq!(stats["avg_queries"], 3.5);
    assert_eq!(stats["n_plus_one"], 1);
    assert!((stats["db_share"].as_f64().unwrap() - 3.5 / 40.0).abs() < 1e-9);
    let (_, html) = page(world.app(), "/routes/GET/orders").await;
    assert!(
        html.contains("<div class=\"label\">Queries / request</div><div class=\"value\">3.5</div>")
    );
    assert!(html.contains("N+1</span> in 1 request<"));
    assert!(html.contains("<div class=\"label\">DB time share</div><div class=\"value\">9%</div>"));
}

/// An async request that ran 30 ms of Python, held the loop 25 ms at line 31
/// and delayed requests 2 and 3 (marker ids 11 and 21), then awaited SQL;
/// and an I/O-bound one with blocked, awaiting and queued time.
fn breakdown_world() -> World {
    use timeglass_model::{
        LoopBlock, TimeBreakdown, AWAIT_FRAME_PREFIX, BLOCKED_FRAME, NATIVE_FRAME,
    };
    let mut blocker = get("GET", "/report", Some("/report"), Some(200), 0);
    blocker.end_ns = 60 * MS;
    let mut blocker = profiled(
        blocker,
        vec![
            count(&["main", "handler", "compute"], 30),
            count(&["main", "handler", NATIVE_FRAME], 5),
            count(&["main", "handler", "[sql] SELECT ? FROM t"], 25),
        ],
    );
    blocker.breakdown = TimeBreakdown {
        python_ns: 30 * MS,
        native_ns: 5 * MS,
        sql_ns: 25 * MS,
        ..TimeBreakdown::default()
    };
    blocker.cpu_ns = 35 * MS;
    blocker.loop_block = Some(LoopBlock {
        blocked_ns: 25 * MS,
        start_ns: 2 * MS,
        line: Some("app.py:31 in handler".into()),
        delayed: vec![11, 21],
    });
    let waiting = |at_ms: u64| {
        let mut r = get("GET", "/io", Some("/io"), Some(200), at_ms);
        r.end_ns = r.start_ns + 40 * MS;
        let mut r = profiled(
            r,
            vec![
                count(&["main", "fetch", BLOCKED_FRAME], 20),
                count(
                    &[
                        "main",
                        "fetch",
                        &format!("{AWAIT_FRAME_PREFIX} asyncio.sleep]"),
                    ],
                    10,
                ),
                count(&["main", "fetch", "[ready, event loop busy]"], 8),
                count(&["main", "fetch"], 2),
            ],
        );
        r.breakdown = TimeBreakdown {
            python_ns: 2 * MS,
            blocked_ns: 20 * MS,
            await_ns: 10 * MS,
            queued_ns: 8 * MS,
            ..TimeBreakdown::default()
        };
        r.cpu_ns = 2 * MS;
        r
    };
    World::new(vec![blocker, waiting(10), waiting(20)])
}

#[tokio::test]
async fn request_page_shows_its_time_breakdown_cpu_and_loop_block() {
    let world = breakdown_world();
    let (status, html) = page(world.app(), "/requests/1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains(
            "Blocked the event loop for 25.0 ms</strong> at <code>app.py:31 in handler</code>; \
             delayed 2 requests: <a href=\"/requests/2\">#2</a>, <a href=\"/requests/3\">#3</a>"
        ),
        "{html}"
    );
    assert!(html.contains("<div class=\"label\">CPU</div><div class=\"value\">35.0 ms</div>"));
    // One bar to scale of its 60 ms: Python 30, native 5, SQL 25.
    let bar = &html[html.find("<svg class=\"tb-bar\"").unwrap()..];
    let bar = &bar[..bar.find("</svg>").unwrap()];
    assert!(bar.contains("class=\"tb-python\" x=\"0.00\" y=\"0\" width=\"500.00\""));
    assert!(bar.contains("class=\"tb-native\" x=\"500.00\" y=\"0\" width=\"83.33\""));
    assert!(bar.contains("class=\"tb-sql\" x=\"583.33\" y=\"0\" width=\"416.67\""));
    assert!(!bar.contains("tb-rest"), "it adds up to the duration");
    assert!(html.contains("awaiting SQL <b>25.0 ms</b> <span class=\"muted\">42%</span>"));
    let time = &html[html.find("id=\"time\"").unwrap()..];
    let warning = &html[html.find("loop-warning").unwrap()..];
    for part in [&time[..time.find("</ul>").unwrap()], &warning[..300]] {
        assert!(!part.contains("style="), "no inline styles: {part}");
    }
    assert!(html.contains("data-time=\"cpu\""), "the wall / CPU toggle");

    let (_, html) = page(world.app(), "/requests/2").await;
    assert!(!html.contains("loop-warning"));
    assert!(html.contains("blocked (sleep, I/O, locks) <b>20.0 ms</b>"));
    assert!(html.contains("queued (loop busy, no worker) <b>8.00 ms</b>"));

    let (_, json) = page(world.app(), "/api/v1/requests/1").await;
    let detail: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(detail["cpu_ms"], 35.0);
    assert_eq!(detail["breakdown"]["python_ms"], 30.0);
    assert_eq!(detail["breakdown"]["sql_ms"], 25.0);
    assert_eq!(detail["loop_block"]["blocked_ms"], 25.0);
    assert_eq!(detail["loop_block"]["line"], "app.py:31 in handler");
    assert_eq!(detail["loop_block"]["delayed"], serde_json::json!([2, 3]));
}

#[tokio::test]
async fn a_request_recorded_without_a_breakdown_says_so() {
    let world = World::sample();
    let (_, html) = page(world.app(), "/requests/1").await;
    assert!(
        html.contains("No time breakdown: its recorder did not sample what the request was doing.")
    );
    assert!(
        !html.contains("<div class=\"label\">CPU</div>"),
        "no CPU tile without it"
    );
    let (_, html) = page(world.app(), "/requests/4").await;
    assert!(html.contains("No time breakdown: no samples were taken while it ran."));
    let (_, html) = page(world.app(), "/").await;
    assert!(
        html.contains(
            "<td class=\"num cpu\"><span class=\"muted\" title=\"not measured\">—</span></td>"
        ),
        "zeros throughout are not 0 ms of CPU"
    );
}

#[tokio::test]
async fn the_cpu_view_leaves_out_time_off_the_cpu_and_the_functions_follow() {
    let world = breakdown_world();
    let profile = |uri: &'static str| {
        let app = world.app();
        async move {
            let (status, body) = page(app, uri).await;
            assert_eq!(status, StatusCode::OK, "{uri}: {body}");
            serde_json::from_str::<serde_json::Value>(&body).unwrap()
        }
    };
    let wall = profile("/api/v1/requests/2/profile").await;
    assert_eq!(wall["samples"], 40);
    let cpu = profile("/api/v1/requests/2/profile?cpu=true").await;
    assert_eq!(cpu["samples"], 2);
    let names: Vec<&str> = cpu["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fetch", "main"]);
    // Native code ran on a CPU: it stays.
    let cpu = profile("/api/v1/requests/1/profile?cpu=true").await;
    assert_eq!(cpu["samples"], 35);
    let (_, folded) = page(world.app(), "/api/v1/requests/2/folded?cpu=true").await;
    assert_eq!(folded, "main (app.py:7);fetch (app.py:7) 2\n");
}

#[tokio::test]
async fn list_has_a_sortable_cpu_column_and_flags_loop_blocks() {
    let world = breakdown_world();
    let (_, html) = page(world.app(), "/").await;
    assert!(html.contains("href=\"/?sort=-cpu\""), "CPU sorts");
    let row = html.lines().find(|l| l.contains("data-id=\"1\"")).unwrap();
    assert!(
        row.contains(
            "<td class=\"num cpu\"><span class=\"badge loop-badge\" title=\"blocked the event loop \
             for 25.0 ms at app.py:31 in handler; delayed 2 requests\">loop</span>35.0 ms</td>"
        ),
        "{row}"
    );
    let row = html.lines().find(|l| l.contains("data-id=\"2\"")).unwrap();
    assert!(row.contains("<td class=\"num cpu\">2.00 ms</td>"), "{row}");
    let (_, html) = page(world.app(), "/?sort=-cpu").await;
    assert!(html.contains("value=\"-cpu\" selected") && html.contains("href=\"/?sort=cpu\""));
    let at = |s: &str| html.find(s).unwrap();
    assert!(at("data-id=\"1\"") < at("data-id=\"3\""));

    let (_, body) = page(world.app(), "/api/v1/requests?sort=cpu").await;
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    let first = &list["requests"][0];
    assert_eq!(
        (first["id"].as_i64(), first["cpu_ms"].as_f64()),
        (Some(2), Some(2.0))
    );
    assert_eq!(first["breakdown"]["blocked_ms"], 20.0);
    assert_eq!(first["loop_block"], serde_json::Value::Null);
    assert_eq!(
        list["requests"][2]["loop_block"]["delayed"],
        serde_json::json!([2, 3])
    );
}

#[tokio::test]
async fn endpoint_view_shows_cpu_per_request_time_shares_and_loop_blocks() {
    let world = breakdown_world();
    let (_, html) = page(world.app(), "/routes/GET/io").await;
    assert!(
        html.contains("<div class=\"label\">CPU / request</div><div class=\"value\">2.00 ms</div>")
    );
    assert!(
        html.contains("<div class=\"label\">Blocked the loop</div><div class=\"value\">0</div>")
    );
    // Shares of 40 ms: blocked 20, await 10, queued 8, Python 2.
    assert!(html.contains(
        "blocked (sleep, I/O, locks) <b>20.0 ms / request</b> <span class=\"muted\">50%</span>"
    ));
    assert!(html.contains("class=\"tb-queued\" x=\"800.00\" y=\"0\" width=\"200.00\""));
    let (_, html) = page(world.app(), "/routes/GET/report").await;
    assert!(
        html.contains("<div class=\"label\">Blocked the loop</div><div class=\"value\"><span class=\"warn\">1</span></div>")
    );

    let (_, json) = page(world.app(), "/api/v1/routes/GET/io").await;
    let detail: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(detail["stats"]["avg_cpu_ms"], 2.0);
    assert_eq!(detail["stats"]["avg_breakdown"]["queued_ms"], 8.0);
    assert_eq!(detail["stats"]["loop_blocks"], 0);
}

#[tokio::test]
async fn stats_api_gives_overall_and_per_endpoint_figures() {
    let world = World::sample();
    let (status, body) = fetch(world.app(), "/api/v1/stats", "127.0.0.1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["session"], 1);
    assert_eq!(json["percentile"], "nearest-rank");
    assert_eq!(json["overall"]["requests"], 4);
    // One 500 and one 404 of four.
    assert_eq!(json["overall"]["error_rate_5xx"], 0.25);
    assert_eq!(json["overall"]["rate_4xx"], 0.25);
    let endpoints = json["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 4);
    for e in endpoints {
        assert_eq!(e["requests"], 1, "{e}");
        let l = &e["latency_ms"];
        assert_eq!(
            l["p50"], l["max"],
            "one request: every percentile is its time"
        );
    }

    let one = "/api/v1/stats?method=POST&route=/upload";
    let (_, body) = fetch(world.app(), one, "127.0.0.1").await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["overall"]["requests"], 1);
    assert_eq!(json["overall"]["error_rate_5xx"], 1.0);
    assert_eq!(json["endpoints"][0]["route"], "/upload");

    // The request list's status and response time filters: the figures
    // are then those of the requests they keep.
    let null = serde_json::Value::Null;
    for (uri, requests, route) in [
        ("/api/v1/stats?status=5xx", 1, Some("/upload".into())),
        // The 404 matched no route.
        ("/api/v1/report?status=4xx&min_ms=", 1, Some(null)),
        // Every request took 4 ms but /signup, answered after 1 ms.
        ("/api/v1/stats?min_ms=2&status=", 3, None),
        (
            "/api/v1/report?min_ms=1.5&status=2xx",
            1,
            Some("/items/{item_id}".into()),
        ),
    ] {
        let (status, body) = fetch(world.app(), uri, "127.0.0.1").await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["overall"]["requests"], requests, "{uri}");
        if let Some(route) = route {
            assert_eq!(json["endpoints"][0]["route"], route, "{uri}");
        }
    }
}

#[tokio::test]
async fn stats_api_refuses_bad_filters_in_one_line() {
    let world = World::sample();
    for (uri, status, says) in [
        (
            "/api/v1/stats?session=7",
            StatusCode::BAD_REQUEST,
            "no session 7",
        ),
        (
            "/api/v1/stats?session=x",
            StatusCode::BAD_REQUEST,
            "session id",
        ),
        (
            "/api/v1/stats?since=soon",
            StatusCode::BAD_REQUEST,
            "not a time",
        ),
        (
            "/api/v1/stats?route=/nothing",
            StatusCode::BAD_REQUEST,
            "matches route",
        ),
        (
            "/api/v1/stats?since=1m&until=2m",
            StatusCode::BAD_REQUEST,
            "not before",
        ),
        (
            "/api/v1/stats?status=teapot",
            StatusCode::BAD_REQUEST,
            "not a status class",
        ),
        (
            "/api/v1/report?min_ms=-4",
            StatusCode::BAD_REQUEST,
            "not a response time",
        ),
    ] {
        let (got, body) = fetch(world.app(), uri, "127.0.0.1").await;
        assert_eq!(got, status, "{uri}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let error = json["error"].as_str().unwrap();
        assert!(
            error.contains(says) && !error.contains('\n'),
            "{uri}: {error}"
        );
    }
}

#[tokio::test]
async fn series_api_buckets_requests_and_in_flight() {
    let world = World::sample();
    let (status, body) = fetch(
        world.app(),
        "/api/v1/series?until=2026-09-21T14:13:21Z",
        "127.0.0.1",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["bucket_seconds"], 1.0);
    // Four requests, all in the session's first second, never two at once.
    assert_eq!(json["rps"].as_array().unwrap()[0], 4.0);
    assert_eq!(json["in_flight"].as_array().unwrap()[0], 1);
    assert_eq!(json["t"].as_array().unwrap()[0], 1_790_000_000.0);
}

#[tokio::test]
async fn endpoints_page_follows_the_session_and_time_range() {
    let world = World::sample();
    let (_, html) = page(world.app(), "/routes").await;
    assert!(html.contains("<select name=\"session\">"));
    assert!(html.contains("href=\"/routes/GET/items/%7Bitem_id%7D\""));
    // A day long before the session: no endpoint, and the filter is kept.
    let (status, html) = page(
        world.app(),
        "/routes?since=2000-01-01T00:00:00Z&until=2000-01-02T00:00:00Z",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("No requests with a matching route in this session and time range."));
    assert!(html.contains("value=\"2000-01-01T00:00:00Z\""));
    let (status, _) = page(world.app(), "/routes?session=x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// The pages' Content-Security-Policy allows no inline style, so no page may
/// carry a `style=` attribute (it would be drawn unstyled) or a `<style>`.
#[tokio::test]
async fn pages_carry_no_inline_style_and_the_policy_allows_none() {
    let world = World::sample();
    for uri in [
        "/",
        "/requests/1",
        "/requests/3",
        "/routes",
        "/routes/GET/items/%7Bitem_id%7D",
        "/report",
    ] {
        let request = Request::get(uri)
            .header(header::HOST, "localhost:7477")
            .body(Body::empty())
            .unwrap();
        let response = world.app().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
        let policy = response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            policy.contains("style-src 'self';") && !policy.contains("unsafe-inline"),
            "{uri}: {policy}"
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let html = String::from_utf8(body.to_vec()).unwrap();
        assert!(!html.contains("style="), "{uri} has an inline style");
        assert!(!html.contains("<style"), "{uri} has a <style> element");
    }
}

/// Three requests of one route: RSS peaks of 100, 300 and 200 MiB; and one
/// recorded without readings.
fn memory_world() -> World {
    use timeglass_model::Memory;
    let mib = |n: u64| Some(n << 20);
    let mut rows: Vec<ProfiledRequest> = [(100, 0), (300, 10), (200, 20)]
        .into_iter()
        .map(|(peak, at)| {
            let mut r = profiled(get("GET", "/grow", Some("/grow"), Some(200), at), vec![]);
            r.memory = Memory {
                rss_start_bytes: mib(90),
                rss_end_bytes: mib(94),
                rss_peak_bytes: mib(peak),
                ..Memory::default()
            };
            r
        })
        .collect();
    rows.push(profiled(
        get("GET", "/grow", Some("/grow"), Some(200), 30),
        vec![],
    ));
    rows[0].memory.alloc_bytes = Some(3 << 20);
    rows[0].alloc_stacks = vec![
        count(&["main", "grow", "build"], 3 << 20),
        count(&["main", "grow"], 1 << 10),
    ];
    rows[1].memory.alloc_bytes = Some(1 << 20);
    rows[1].alloc_stacks = vec![count(&["main", "grow", "build"], 1 << 20)];
    World::new(rows)
}

#[tokio::test]
async fn list_has_a_sortable_peak_rss_column() {
    let world = memory_world();
    let (_, html) = page(world.app(), "/").await;
    assert!(html.contains("href=\"/?sort=-memory\""), "peak RSS sorts");
    let row = html.lines().find(|l| l.contains("data-id=\"2\"")).unwrap();
    assert!(
        row.contains(
            "<td class=\"num mem\"><span title=\"process RSS: 90.0 MiB at start, 94.0 MiB at end \
             (+4.0 MiB), peak 300.0 MiB\">300.0 MiB</span></td>"
        ),
        "{row}"
    );
    let row = html.lines().find(|l| l.contains("data-id=\"4\"")).unwrap();
    assert!(
        row.contains(
            "<td class=\"num mem\"><span class=\"muted\" title=\"not measured\">—</span></td>"
        ),
        "{row}"
    );
    let (_, html) = page(world.app(), "/?sort=-memory").await;
    assert!(html.contains("value=\"-memory\" selected") && html.contains("href=\"/?sort=memory\""));
    let at = |s: &str| html.find(s).unwrap();
    assert!(at("data-id=\"2\"") < at("data-id=\"3\"") && at("data-id=\"3\"") < at("data-id=\"1\""));
    assert!(
        at("data-id=\"1\"") < at("data-id=\"4\""),
        "no reading: last"
    );

    let (_, body) = page(world.app(), "/api/v1/requests?sort=memory&limit=2").await;
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ids: Vec<i64> = list["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [4, 1]);
    assert_eq!(list["requests"][1]["memory"]["rss_peak_bytes"], 100 << 20);
}

#[tokio::test]
async fn request_page_and_endpoint_view_show_memory() {
    let world = memory_world();
    let (_, html) = page(world.app(), "/requests/2").await;
    assert!(
        html.contains("<div class=\"label\">Peak memory</div><div class=\"value\">300.0 MiB</div>"),
        "summary card"
    );
    assert!(html.contains(">RSS 90.0 MiB → 94.0 MiB (+4.0 MiB)</span>"));
    let (_, html) = page(world.app(), "/requests/4").await;
    assert!(!html.contains("Peak memory"), "nothing read, nothing shown");

    let (_, html) = page(world.app(), "/routes/GET/grow").await;
    assert!(
        html.contains("<div class=\"label\">Peak RSS</div><div class=\"value\">200.0 MiB</div>"),
        "average over the three with a reading"
    );
    assert!(html.contains(">average · p95 300.0 MiB</div>"));
    let (_, json) = page(world.app(), "/api/v1/routes/GET/grow").await;
    let detail: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        detail["stats"]["rss_peak"],
        serde_json::json!({"requests": 3, "avg": (200u64 << 20) as f64, "p95": 300u64 << 20})
    );
}

#[tokio::test]
async fn the_memory_view_weighs_stacks_in_bytes_per_request_and_endpoint() {
    let world = memory_world();
    let profile = |url: &'static str| {
        let app = world.app();
        async move {
            let (status, body) = page(app, url).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            serde_json::from_str::<serde_json::Value>(&body).unwrap()
        }
    };
    let one = profile("/api/v1/requests/1/profile?memory=true").await;
    assert_eq!(one["samples"], (3 << 20) + (1 << 10));
    let route = profile("/api/v1/route-profiles/GET/grow/profile?memory=true").await;
    assert_eq!(
        route["samples"],
        (4 << 20) + (1 << 10),
        "summed over the route"
    );
    let wall = profile("/api/v1/requests/1/profile").await;
    assert_eq!(wall["samples"], 0, "the wall view is unchanged");
    let (_, folded) = page(world.app(), "/api/v1/requests/2/folded?memory=true").await;
    assert_eq!(
        folded,
        "main (app.py:7);grow (app.py:7);build (app.py:7) 1048576\n"
    );

    let (_, html) = page(world.app(), "/requests/1").await;
    assert!(
        html.contains("data-time=\"memory\""),
        "the toggle has a Memory view"
    );
    assert!(html.contains("<div class=\"label\">Allocated</div><div class=\"value\">3.0 MiB</div>"));
    let (_, html) = page(world.app(), "/").await;
    assert!(html.contains("href=\"/?sort=-allocated\""));
    let row = html.lines().find(|l| l.contains("data-id=\"1\"")).unwrap();
    assert!(row.contains(">3.0 MiB</span></td>"), "{row}");
    let (_, json) = page(world.app(), "/api/v1/routes/GET/grow").await;
    let detail: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(detail["stats"]["alloc"]["p95"], 3 << 20);
    assert_eq!(detail["stats"]["alloc"]["requests"], 2);
}
