//! The profile downloads under `/api/v1/` and their links on the pages,
//! over a real SQLite store, handlers called without a socket.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use timeglass_model::{Frame, ProfiledRequest, Request as Marked, StackCount};
use timeglass_server::{app, ServerOptions};
use timeglass_store::{Batch, ClockMap, NewProcess, NewSession, Store};
use tower::ServiceExt;

const MS: u64 = 1_000_000;

fn frame(name: &str) -> Frame {
    Frame {
        name: name.into(),
        filename: format!("/app/{name}.py").into(),
        short: "app.py".into(),
        line: 7,
    }
}

fn request(id: u64, path: &str, at_ms: u64) -> ProfiledRequest {
    ProfiledRequest {
        stacks: vec![StackCount {
            stack: vec![frame("main"), frame("handler")].into(),
            samples: 3,
        }],
        ..ProfiledRequest::new(Marked {
            marker_id: id,
            pid: 4242,
            tid: 99,
            method: "GET".into(),
            path: path.into(),
            route: Some("/items/{item_id}".into()),
            status: Some(200),
            errored: false,
            cancelled: false,
            start_ns: at_ms * MS,
            end_ns: (at_ms + 4) * MS,
            response_end_ns: None,
        })
    }
}

fn store() -> (tempfile::TempDir, axum::Router) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("timeglass.db");
    let mut store = Store::open(&db).unwrap();
    let session = store
        .begin_session(&NewSession {
            command: vec!["uvicorn".into()],
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
    store
        .write(&Batch {
            session,
            requests: vec![
                (process, request(1, "/items/1", 0)),
                (process, request(2, "/items/2", 10)),
            ],
            outside: vec![],
            outside_timeline: vec![],
            process_samples: vec![],
        })
        .unwrap();
    let router = app(&ServerOptions::new(db));
    (dir, router)
}

async fn get(app: axum::Router, uri: &str) -> (StatusCode, Option<String>, Vec<u8>) {
    let request = Request::get(uri)
        .header(header::HOST, "localhost:7477")
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let disposition = response
        .headers()
        .get(header::CONTENT_DISPOSITION)
        .map(|v| v.to_str().unwrap().to_string());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, disposition, body.to_vec())
}

#[tokio::test]
async fn every_format_downloads_for_a_request_an_endpoint_and_a_session() {
    let (_dir, app) = store();
    for base in [
        "/api/v1/requests/1",
        "/api/v1/route-profiles/GET/items/%7Bitem_id%7D",
        "/api/v1/sessions/1",
    ] {
        for format in ["folded", "svg", "speedscope", "chrome", "pprof"] {
            let (status, disposition, body) =
                get(app.clone(), &format!("{base}/export/{format}")).await;
            assert_eq!(status, StatusCode::OK, "{base} {format}");
            assert!(disposition.unwrap().starts_with("attachment; filename="));
            assert!(!body.is_empty());
        }
    }
    // The endpoint merges both requests' samples; the request has its own.
    let (_, _, one) = get(app.clone(), "/api/v1/requests/1/export/folded").await;
    let (_, _, both) = get(
        app.clone(),
        "/api/v1/route-profiles/GET/items/%7Bitem_id%7D/export/folded",
    )
    .await;
    assert_eq!(
        String::from_utf8(one).unwrap(),
        "main (app.py:7);handler (app.py:7) 3\n"
    );
    assert_eq!(
        String::from_utf8(both).unwrap(),
        "main (app.py:7);handler (app.py:7) 6\n"
    );
    let (_, disposition, _) = get(app.clone(), "/api/v1/requests/1/export/speedscope").await;
    assert_eq!(
        disposition.unwrap(),
        "attachment; filename=\"request-1.speedscope.json\""
    );
}

#[tokio::test]
async fn unknown_formats_and_subjects_are_not_found() {
    let (_dir, app) = store();
    for uri in [
        "/api/v1/requests/1/export/flamegraph",
        "/api/v1/requests/99/export/folded",
        "/api/v1/route-profiles/GET/nothing/export/folded",
    ] {
        let (status, _, _) = get(app.clone(), uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
    }
    let (status, _, body) = get(app.clone(), "/api/v1/sessions/9/export/folded").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8(body)
        .unwrap()
        .contains("no session with id 9"));
}

#[tokio::test]
async fn the_request_endpoint_and_session_pages_link_their_downloads() {
    let (_dir, app) = store();
    for (page, link) in [
        ("/requests/1", "/api/v1/requests/1/export/speedscope"),
        (
            "/routes/GET/items/%7Bitem_id%7D",
            "/api/v1/route-profiles/GET/items/%7Bitem_id%7D/export/pprof",
        ),
        ("/?session=1", "/api/v1/sessions/1/export/chrome"),
    ] {
        let (status, _, body) = get(app.clone(), page).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let html = String::from_utf8(body).unwrap();
        assert!(
            html.contains(&format!("href=\"{link}\"")),
            "{page} lacks {link}"
        );
    }
}
