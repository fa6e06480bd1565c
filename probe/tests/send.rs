//! Sending against real sockets on loopback: a server that accepts and never
//! answers, and a port nobody listens on.

use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use timeglass_probe::{plan, schema, send_all, Client, Outcome, MAX_SILENT_IN_A_ROW};

const SCHEMA: &str = r#"{"openapi": "3.1.0", "info": {"title": "t", "version": "1"},
  "paths": {"/items/{item_id}": {"get": {"parameters": [{"name": "item_id", "in": "path",
    "required": true, "schema": {"type": "integer", "minimum": 1, "maximum": 9}}],
    "responses": {"200": {"description": "ok"}}}},
   "/search": {"get": {"parameters": [{"name": "q", "in": "query", "required": true,
    "schema": {"type": "string", "maxLength": 3}}],
    "responses": {"200": {"description": "ok"}}}}}}"#;

/// Accepts every connection and keeps it open without a byte of answer.
fn silent_server() -> (String, Arc<Mutex<Vec<TcpStream>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&held);
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            keep.lock().unwrap().push(stream);
        }
    });
    (url, held)
}

#[test]
fn an_app_that_answers_nothing_is_given_up_on_after_a_few_timeouts() {
    let (url, held) = silent_server();
    let ops = schema::operations(SCHEMA).unwrap();
    let p = plan(&ops, false, 500);
    assert!(
        p.requests() > MAX_SILENT_IN_A_ROW,
        "the plan must outlast the give-up"
    );
    let client = Client::new(url.parse().unwrap(), Duration::from_millis(200));
    let start = Instant::now();
    let sending = send_all(&p, &client, "t");
    let took = start.elapsed();
    assert!(sending.gave_up);
    assert_eq!(sending.sent(), MAX_SILENT_IN_A_ROW);
    let answers: Vec<_> = sending.answers.iter().flatten().collect();
    assert!(answers
        .iter()
        .all(|a| a.outcome == Outcome::Hung && a.status.is_none()));
    for a in &answers {
        assert!(a.elapsed >= Duration::from_millis(180), "{:?}", a.elapsed);
        assert!(a.elapsed < Duration::from_secs(2), "{:?}", a.elapsed);
    }
    assert_eq!(answers[0].tag, "t-0");
    assert_eq!(answers[4].tag, "t-4");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(
        held.lock().unwrap().len(),
        MAX_SILENT_IN_A_ROW,
        "one connection per request"
    );
}

#[test]
fn a_refused_connection_is_a_connection_error_and_an_unreachable_schema_an_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base: url::Url = format!("http://127.0.0.1:{port}").parse().unwrap();
    let client = Client::new(base.clone(), Duration::from_secs(1));
    let err = client
        .fetch_schema(&base.join("/openapi.json").unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("could not reach"), "{err}");
    let ops = schema::operations(SCHEMA).unwrap();
    let sending = send_all(&plan(&ops, false, 2), &client, "r");
    let outcomes: Vec<_> = sending
        .answers
        .iter()
        .flatten()
        .map(|a| a.outcome)
        .collect();
    assert_eq!(
        outcomes,
        [Outcome::ConnectionError, Outcome::ConnectionError]
    );
}
