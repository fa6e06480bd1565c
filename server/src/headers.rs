//! Headers on every response: how long the server took (`Server-Timing`,
//! read by `make bench`), and a locked-down browser policy (no framing, no
//! sniffing, scripts and styles from the dashboard itself only).

use std::time::Instant;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

const POLICY: &str = "default-src 'self'; style-src 'self'; img-src 'self' data:; \
                      frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

pub(crate) async fn add(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let mut response = next.run(request).await;
    let elapsed_ms = start.elapsed().as_secs_f64() * 1000.0;
    let headers = response.headers_mut();
    if let Ok(timing) = HeaderValue::from_str(&format!("app;dur={elapsed_ms:.2}")) {
        headers.insert("server-timing", timing);
    }
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(POLICY));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
