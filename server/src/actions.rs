//! Actions that change data: only `POST /clear` (delete every recorded
//! session that is not being recorded).
//!
//! A page on any website can make the browser post a form to the
//! dashboard's address, and with DNS rebinding even read the answer. So a
//! changing request must pass three checks, besides the `Host` check every
//! request passes (`host.rs`): it is a POST; its `Origin` is the dashboard
//! itself (a cross-site form post carries the other site's); and it carries
//! this server's token, a random value made when the server started and
//! only found in the dashboard's own pages.

use std::io::Read;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use timeglass_store::{Prune, Store};

use crate::error::AppError;
use crate::AppState;

/// A fresh random token: 16 bytes from the kernel, in hex.
pub(crate) fn new_token() -> String {
    let mut bytes = [0u8; 16];
    if let Err(e) = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)) {
        // Without a token nothing can be changed, which is safe; say why.
        eprintln!(
            "timeglass: warning: no random token for the dashboard ({e}); its Clear action is off"
        );
        return String::new();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn refused(why: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        format!("403 Forbidden: {why}; use the dashboard's own page to change data.\n"),
    )
        .into_response()
}

/// Whether `origin` is this very server as the browser reached it.
fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    match (text(header::ORIGIN), text(header::HOST)) {
        (Some(origin), Some(host)) => origin.eq_ignore_ascii_case(&format!("http://{host}")),
        _ => false,
    }
}

/// The `token` field of an `application/x-www-form-urlencoded` body.
fn form_token(body: &[u8]) -> Option<&str> {
    std::str::from_utf8(body)
        .ok()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
}

/// Compares without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0, |acc, (x, y)| acc | (x ^ y))
            == 0
}

pub(crate) async fn clear(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    if !same_origin(&headers) {
        return Ok(refused("this request did not come from the dashboard (its Origin is another site's, or missing)"));
    }
    let token_ok =
        form_token(&body).is_some_and(|t| !state.token.is_empty() && same(t, &state.token));
    if !token_ok {
        return Ok(refused("the dashboard's token is missing or wrong (the server may have restarted: reload the page)"));
    }
    let db = state.db.clone();
    tokio::task::spawn_blocking(move || -> Result<(), AppError> {
        Store::open_existing(&db)?.prune(&Prune::All)?;
        Ok(())
    })
    .await??;
    Ok(Redirect::to("/").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_token_field() {
        assert_eq!(form_token(b"token=abc"), Some("abc"));
        assert_eq!(form_token(b"x=1&token=abc"), Some("abc"));
        assert_eq!(form_token(b"tokens=abc"), None);
        assert!(same("ab", "ab"));
        assert!(!same("ab", "ac"));
        assert!(!same("ab", "abc"));
        assert_eq!(new_token().len(), 32);
    }
}
