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
use timeglass_model::{Frame, ProfiledRequest, Request as Marked, StackCount, BACKGROUND_FRAME};
use timeglass_server::{app, Server, ServerOptions};
use timeglass_store::{Batch, ClockMap, NewProcess, NewSession, ProcessId, SessionId, Store};
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
        let mut store = Store::open(&db).unwrap();
        let (session, process) = begin(&mut store);
        let batch = Batch {
            session,
            requests: requests.into_iter().map(|r| (process, r)).collect(),
            outside: vec![],
        };
        store.write(&batch).unwrap();
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

fn begin(store: &mut Store) -> (SessionId, ProcessId) {
    let session = store
        .begin_session(&NewSession {
            command: vec!["uvicorn".into(), "app:app".into()],
            cwd: "/app".into(),
            rate_hz: 1000,
            clock: ClockMap {
                mono_ns: 0,
                unix_ns: 1_790_000_000_000_000_000,
            },
        })
        .unwrap();
    let process = store
        .add_process(
            session,
            &NewProcess {
                pid: 4242,
                command_line: vec!["python".into()],
                python_version: None,
            },
        )
        .unwrap();
    (session, process)
}

fn frame(name: &str) -> Frame {
    Frame {
        name: name.into(),
        filename: format!("/app/{name}.py"),
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
        html.contains("status-5xx\">500<"),
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
    let (status, _) = page(world.app(), "/?status=7xx").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn list_pages_continue_before_the_last_row() {
    let world = World::sample();
    let (_, html) = page(world.app(), "/?limit=2").await;
    assert!(html.contains("/nope") && html.contains("/signup") && !html.contains("/upload<"));
    assert!(html.contains("href=\"/?before=3\""), "{html}");
    let (_, html) = page(world.app(), "/?limit=2&before=3").await;
    assert!(html.contains("/upload<") && html.contains("/items/3") && !html.contains("/signup"));
    assert!(!html.contains("Older"));
}

#[tokio::test]
async fn detail_page_has_summary_flame_graph_and_top_functions() {
    let world = World::sample();
    let (status, html) = page(world.app(), "/requests/1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("<svg") && html.contains("compute_fib (app.py:7)"));
    assert!(
        !html.contains("<?xml"),
        "inline SVG carries no XML declaration"
    );
    assert!(html.contains(
        "<td title=\"compute_fib (app.py)\">compute_fib (app.py)</td><td class=\"num\">5</td>"
    ));
    assert!(html.contains("<td title=\"main (app.py)\">main (app.py)</td><td class=\"num\">6</td>"));
    assert!(html.contains("pid 4242"));

    let (_, html) = page(world.app(), "/requests/3").await;
    assert!(html.contains("<dt>Background</dt><dd>8.0 ms</dd>"));
    assert!(html.contains("[background]"));
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
    assert_eq!(
        one,
        serde_json::to_value(store.request(3).unwrap().unwrap()).unwrap()
    );

    let (_, folded) = page(world.app(), "/api/v1/requests/1/folded").await;
    assert_eq!(
        folded,
        timeglass_model::folded(&store.request_stacks(1).unwrap())
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
