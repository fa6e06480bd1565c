//! The Compare page, its API and the differential flame graphs, over a
//! store of two sessions whose stacks are known by construction: at
//! 1000 Hz a sample is 1 ms, so `GET /work` spends 2 ms per request in `f`
//! in A and 4 ms in B, and 2 ms in `g` in both.

use std::path::PathBuf;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use timeglass_compare::{baseline, Snapshot, TestOptions};
use timeglass_model::{Frame, ProfiledRequest, Request as Marked, StackCount};
use timeglass_server::{app, ServerOptions};
use timeglass_store::{testing, Batch, ClockMap, NewProcess, NewSession, SessionId, Store};
use tower::ServiceExt;

const MS: u64 = 1_000_000;
const T0_NS: i64 = 1_790_000_000_000_000_000;
/// Requests per endpoint per session: enough for the statistical test.
const N: u64 = 40;

struct World {
    _dir: tempfile::TempDir,
    db: PathBuf,
    sessions: [SessionId; 2],
}

fn frame(name: &str) -> Frame {
    Frame {
        name: name.into(),
        filename: "/app/app.py".into(),
        short: "app.py".into(),
        line: 3,
    }
}

fn stack(names: &[&str], samples: u64) -> StackCount {
    StackCount {
        stack: names.iter().map(|n| frame(n)).collect::<Vec<_>>().into(),
        samples,
    }
}

/// Request `i` of an endpoint, taking `ms`, with `stacks`.
fn request(route: &str, i: u64, ms: u64, stacks: Vec<StackCount>) -> ProfiledRequest {
    let start = (i * 100 + if route == "/work" { 0 } else { 50 }) * MS;
    let mut r = ProfiledRequest::new(Marked {
        marker_id: i * 2 + u64::from(route == "/work"),
        pid: 4242,
        tid: 99,
        method: "GET".into(),
        path: route.into(),
        route: Some(route.into()),
        status: Some(200),
        errored: false,
        cancelled: false,
        start_ns: start,
        end_ns: start + ms * MS,
        response_end_ns: None,
    });
    r.stacks = stacks;
    r
}

impl World {
    /// A: `/work` in 6 ms (f 2, g 2 samples); B: `/work` in 12 ms (f 4, g 2).
    /// `/same` takes 3 ms with 1 sample of `h` in both.
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("timeglass.db");
        let mut store = Store::open(&db).unwrap();
        let mut sessions = Vec::new();
        for (s, (work_ms, f)) in [(6, 2), (12, 4)].into_iter().enumerate() {
            let clock = ClockMap {
                unix_ns: T0_NS + s as i64 * 3_600_000_000_000,
                ..testing::CLOCK
            };
            let session = NewSession {
                cwd: "/nonexistent-app".into(),
                clock,
                ..testing::session()
            };
            let process = NewProcess {
                python_version: Some("3.12.3".into()),
                ..testing::process()
            };
            let (session, process) = testing::begin(&mut store, &session, &process);
            let mut requests = Vec::new();
            for i in 0..N {
                let work = vec![stack(&["main", "f"], f), stack(&["main", "g"], 2)];
                requests.push((process, request("/work", i, work_ms, work)));
                let same = vec![stack(&["main", "h"], 1)];
                requests.push((process, request("/same", i, 3, same)));
            }
            store
                .write(&Batch {
                    session,
                    requests,
                    outside: vec![],
                    outside_timeline: vec![],
                    process_samples: vec![],
                })
                .unwrap();
            store.set_sample_mode(session, "wall").unwrap();
            sessions.push(session);
        }
        World {
            _dir: dir,
            db,
            sessions: [sessions[0], sessions[1]],
        }
    }

    fn app(&self) -> Router {
        app(&ServerOptions::new(self.db.clone()))
    }

    fn store(&self) -> Store {
        Store::open(&self.db).unwrap()
    }

    fn ab(&self) -> String {
        format!(
            "a=session:{}&b=session:{}",
            self.sessions[0].0, self.sessions[1].0
        )
    }
}

async fn get(app: Router, uri: &str) -> (StatusCode, String) {
    let request = Request::get(uri)
        .header(header::HOST, "localhost:7477")
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

async fn json(app: Router, uri: &str) -> Value {
    let (status, body) = get(app, uri).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn verdicts(c: &Value) -> Vec<(String, String)> {
    c["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["route"].as_str().unwrap().to_string(),
                e["verdict"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_api_returns_the_compare_crates_json() {
    let w = World::new();
    let got = json(w.app(), &format!("/api/v1/compare?{}", w.ab())).await;
    let store = w.store();
    let a = Snapshot::capture(&store, Some(w.sessions[0].0)).unwrap();
    let b = Snapshot::capture(&store, Some(w.sessions[1].0)).unwrap();
    let want = timeglass_compare::compare(&a, &b, &TestOptions::default()).unwrap();
    assert_eq!(got, serde_json::to_value(&want).unwrap());
    let mut v = verdicts(&got);
    v.sort();
    assert_eq!(
        v,
        [
            ("/same".to_string(), "same".to_string()),
            ("/work".to_string(), "slower".to_string())
        ]
    );
    // The explaining function is `f`, +2 ms per request.
    let endpoints = got["endpoints"].as_array().unwrap();
    let work = endpoints.iter().find(|e| e["route"] == "/work").unwrap();
    assert_eq!(work["functions"][0]["function"], "f (app.py)");
    assert_eq!(work["functions"][0]["self_a_ms"], 2.0);
    assert_eq!(work["functions"][0]["self_b_ms"], 4.0);
    // By default: the second latest session against the latest.
    assert_eq!(json(w.app(), "/api/v1/compare").await, got);
}

#[tokio::test]
async fn a_baseline_compares_as_its_session_did() {
    let w = World::new();
    let mut store = w.store();
    baseline::save(&mut store, "main", Some(w.sessions[0].0), false).unwrap();
    let by_name = json(
        w.app(),
        &format!(
            "/api/v1/compare?a=baseline:main&b=session:{}",
            w.sessions[1].0
        ),
    )
    .await;
    let by_session = json(w.app(), &format!("/api/v1/compare?{}", w.ab())).await;
    assert_eq!(by_name["endpoints"], by_session["endpoints"]);
    let (_, html) = get(w.app(), "/compare").await;
    assert!(
        html.contains("<option value=\"baseline:main\">baseline main · of session #1</option>"),
        "{html}"
    );
}

#[tokio::test]
async fn bad_input_is_a_400_with_one_line() {
    let w = World::new();
    let cases = [
        ("a=session:99&b=session:2", "no session 99 in the store"),
        (
            "a=baseline:nope&b=session:2",
            "no baseline `nope` in the store",
        ),
        ("a=tag:x", "`session:ID` or `baseline:NAME`"),
        ("a=session:1&b=baseline:x", "a baseline can only be A"),
    ];
    for (query, message) in cases {
        let (status, body) = get(w.app(), &format!("/api/v1/compare?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        let error: Value = serde_json::from_str(&body).unwrap();
        let error = error["error"].as_str().unwrap();
        assert!(error.contains(message) && !error.contains('\n'), "{error}");
        let (status, html) = get(w.app(), &format!("/compare?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(html.contains("class=\"compare-error\""), "{html}");
        assert!(
            html.contains("<select name=\"a\">"),
            "the form stays: {html}"
        );
    }
    let mut store = w.store();
    store.set_sample_mode(w.sessions[1], "gil-only").unwrap();
    let (status, body) = get(w.app(), &format!("/api/v1/compare?{}", w.ab())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.contains("sampled in `wall` mode and B in `gil-only` mode"),
        "{body}"
    );
}

#[tokio::test]
async fn the_page_shows_the_table_verdicts_and_explanations() {
    let w = World::new();
    let (status, html) = get(w.app(), &format!("/compare?{}", w.ab())).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("<a href=\"/compare\" aria-current=\"page\">Compare</a>"));
    let row = |route: &str| {
        let at = html
            .find(&format!("data-endpoint=\"GET {route}\""))
            .unwrap();
        html[at..at + html[at..].find("</tr>").unwrap()].to_string()
    };
    let work = row("/work");
    assert!(work.contains("verdict-slower\">slower"), "{work}");
    assert!(work.contains("6.00 ms → 12.0 ms"), "{work}");
    assert!(work.contains("+100% p50"), "{work}");
    assert!(
        work.contains(
            "/compare/endpoint?a=session%3A1&#38;b=session%3A2&#38;method=GET&#38;route=%2Fwork"
        ),
        "{work}"
    );
    assert!(row("/same").contains("verdict-same\">same"));
    assert!(
        html.contains("<code>f (app.py)</code> <strong class=\"up\">+2.0 ms</strong> per request"),
        "{html}"
    );
    // The defaults pick the same two sessions.
    let (_, default) = get(w.app(), "/compare").await;
    assert!(default.contains("<option value=\"session:1\" selected>"));
    assert!(default.contains("data-endpoint=\"GET /work\">"));
}

#[tokio::test]
async fn the_differential_graph_is_red_where_slower_and_grey_where_not() {
    let w = World::new();
    let q = format!("{}&method=GET&route=/work", w.ab());
    let diff = json(w.app(), &format!("/api/v1/compare/endpoint?{q}")).await;
    let main = &diff["tree"]["c"][0];
    assert_eq!(
        (main["n"].as_str(), main["a"].as_f64(), main["b"].as_f64()),
        (Some("main"), Some(4.0), Some(6.0))
    );
    let node = |name: &str| {
        main["c"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["n"] == name)
            .unwrap()
            .clone()
    };
    let f = node("f");
    assert_eq!(
        (f["a"].as_f64(), f["b"].as_f64(), f["t"].as_f64()),
        (Some(2.0), Some(4.0), Some(1.0))
    );
    let g = node("g");
    assert_eq!(
        (g["a"].as_f64(), g["b"].as_f64(), g["t"].as_f64()),
        (Some(2.0), Some(2.0), Some(0.0))
    );

    let (status, html) = get(w.app(), &format!("/compare/endpoint?{q}")).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("id=\"diff-data\""));
    assert!(html.contains("<script src=\"/assets/diff.js\"></script>"));
    assert!(html.contains("<td class=\"code fn-name\">f (app.py)</td><td class=\"num\">2.00 ms</td><td class=\"num\">4.00 ms</td><td class=\"num up\">+2.00 ms</td>"), "{html}");
    let (status, _) = get(
        w.app(),
        &format!("/compare/endpoint?{}&method=GET&route=/nope", w.ab()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, js) = get(w.app(), "/assets/diff.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(js.contains("diff-data"));
}

#[tokio::test]
async fn two_requests_compare_and_the_default_is_the_previous_of_the_route() {
    let w = World::new();
    let store = w.store();
    let ids = |s: usize| -> Vec<i64> {
        let e = timeglass_store::Endpoint {
            method: "GET".into(),
            route: Some("/work".into()),
        };
        store
            .endpoint_requests(w.sessions[s], &e)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect()
    };
    let (a_ids, b_ids) = (ids(0), ids(1));
    let c = json(
        w.app(),
        &format!("/api/v1/compare/requests?a={}&b={}", a_ids[0], b_ids[3]),
    )
    .await;
    let f = &c["diff"]["tree"]["c"][0]["c"][0];
    assert_eq!(
        (f["n"].as_str(), f["a"].as_f64(), f["b"].as_f64()),
        (Some("f"), Some(2.0), Some(4.0))
    );
    assert!(f["t"].as_f64().unwrap() > 0.0);

    let c = json(w.app(), &format!("/api/v1/compare/requests?b={}", b_ids[3])).await;
    assert_eq!(c["a"]["id"].as_i64(), Some(b_ids[2]));
    let c = json(w.app(), &format!("/api/v1/compare/requests?b={}", b_ids[0])).await;
    assert_eq!(
        c["a"]["id"].as_i64(),
        Some(b_ids[1]),
        "the first compares with the next"
    );

    let (_, page) = get(w.app(), &format!("/requests/{}", b_ids[3])).await;
    assert!(
        page.contains(&format!(
            "<input type=\"hidden\" name=\"b\" value=\"{}\"><input name=\"a\" value=\"{}\"",
            b_ids[3], b_ids[2]
        )),
        "{page}"
    );
    let (status, html) = get(
        w.app(),
        &format!("/compare/requests?a={}&b={}", a_ids[0], b_ids[3]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert_eq!(html.matches("class=\"card req-side\"").count(), 2);
    assert!(html.contains("id=\"diff-graph\""));
    let (status, html) = get(w.app(), &format!("/compare/requests?a=x&b={}", b_ids[3])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("`x` is not a request id"));
}
