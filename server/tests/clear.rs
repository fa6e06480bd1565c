//! The one action that changes data, `POST /clear`: it works from the
//! dashboard's own page and is refused to a cross-site form post, to a
//! foreign `Host` (DNS rebinding), without the server's token, and as a GET.

use std::path::PathBuf;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use timeglass_server::{app, ServerOptions};
use timeglass_store::{testing, SessionEnd, Store};
use tower::ServiceExt;

const HOST: &str = "127.0.0.1:7477";

struct World {
    _dir: tempfile::TempDir,
    db: PathBuf,
    app: Router,
}

impl World {
    /// A store with two ended sessions and one live one.
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("timeglass.db");
        let mut store = Store::open(&db).unwrap();
        for ended in [true, true, false] {
            let id = store.begin_session(&testing::session()).unwrap();
            // Recorded by this live process: never interrupted.
            store.set_recorder(id).unwrap();
            if ended {
                let end = SessionEnd {
                    exit_code: Some(0),
                    samples: 0,
                    torn_samples: 0,
                    lost_events: 0,
                    load: Default::default(),
                };
                store.end_session(id, &end).unwrap();
            }
        }
        let app = app(&ServerOptions::new(db.clone()));
        World { _dir: dir, db, app }
    }

    fn sessions(&self) -> usize {
        Store::open_existing(&self.db)
            .unwrap()
            .sessions()
            .unwrap()
            .len()
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, String) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// The token the list page carries.
    async fn token(&self) -> String {
        let get = Request::get("/")
            .header(header::HOST, HOST)
            .body(Body::empty())
            .unwrap();
        let (status, html) = self.send(get).await;
        assert_eq!(status, StatusCode::OK);
        let at = html
            .find("name=\"token\" value=\"")
            .expect("the page has the form")
            + 20;
        html[at..at + 32].to_string()
    }

    async fn post(&self, host: &str, origin: Option<&str>, body: &str) -> (StatusCode, String) {
        let mut request = Request::post("/clear")
            .header(header::HOST, host)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        self.send(request.body(Body::from(body.to_string())).unwrap())
            .await
    }
}

#[tokio::test]
async fn the_dashboard_clears_every_ended_session() {
    let world = World::new();
    let token = world.token().await;
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
    let (status, _) = world
        .post(
            HOST,
            Some("http://127.0.0.1:7477"),
            &format!("token={token}"),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(world.sessions(), 1, "the live session is kept");
}

#[tokio::test]
async fn a_cross_site_form_post_is_refused() {
    let world = World::new();
    let token = world.token().await;
    // What a browser sends when a page of another site posts a form here: its
    // own Origin. Even a leaked token does not help it.
    for body in [String::new(), format!("token={token}")] {
        let (status, text) = world.post(HOST, Some("https://evil.example"), &body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
        assert!(text.contains("did not come from the dashboard"), "{text}");
    }
    // No Origin at all (not a browser's form post): refused too.
    let (status, _) = world.post(HOST, None, &format!("token={token}")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(world.sessions(), 3);
}

#[tokio::test]
async fn dns_rebinding_is_refused() {
    let world = World::new();
    let token = world.token().await;
    // evil.example resolved to 127.0.0.1: to the browser, the page and the
    // dashboard are the same origin, so Origin matches Host.
    let (status, text) = world
        .post(
            "evil.example:7477",
            Some("http://evil.example:7477"),
            &format!("token={token}"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    assert!(text.contains("DNS rebinding"), "{text}");
    assert_eq!(world.sessions(), 3);
}

#[tokio::test]
async fn a_wrong_token_or_a_get_changes_nothing() {
    let world = World::new();
    let _ = world.token().await;
    let origin = Some("http://127.0.0.1:7477");
    for body in ["", "token=", "token=00000000000000000000000000000000"] {
        let (status, text) = world.post(HOST, origin, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}: {text}");
        assert!(text.contains("token is missing or wrong"), "{text}");
    }
    let get = Request::get("/clear")
        .header(header::HOST, HOST)
        .body(Body::empty())
        .unwrap();
    assert_eq!(world.send(get).await.0, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(world.sessions(), 3);
}
