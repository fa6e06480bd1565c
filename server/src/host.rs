//! DNS rebinding protection: a page on any website can make a browser send
//! requests to `127.0.0.1:7477` under its own domain name, so requests whose
//! `Host` is not a loopback name or the bound address are refused.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

const REFUSED: &str = "403 Forbidden: the TimeGlass dashboard answers only to localhost, \
127.0.0.1, [::1] or the address it was started on (DNS rebinding protection).\n";

#[derive(Clone, Debug)]
pub(crate) struct AllowedHosts {
    /// The `--host` the server was bound to, lowercased and without brackets.
    bound: String,
    /// Bound to every interface (`0.0.0.0`, `::`): any IP address is then a
    /// way to reach it. A rebinding attack needs a domain name, never an IP.
    any_ip: bool,
}

impl AllowedHosts {
    pub(crate) fn new(bound: &str) -> AllowedHosts {
        let bound = unbracket(bound).to_ascii_lowercase();
        let any_ip = bound.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified());
        AllowedHosts { bound, any_ip }
    }

    /// Whether a `Host` header value (`name[:port]`) may be answered.
    pub(crate) fn allows(&self, host_header: &str) -> bool {
        let name = unbracket(host_name(host_header)).to_ascii_lowercase();
        matches!(name.as_str(), "localhost" | "127.0.0.1" | "::1")
            || name == self.bound
            || (self.any_ip && name.parse::<IpAddr>().is_ok())
    }
}

/// The name part of `name:port`, `[v6]:port`, `name` or `[v6]`.
fn host_name(header: &str) -> &str {
    if header.starts_with('[') {
        return header.find(']').map_or(header, |end| &header[..=end]);
    }
    header.split_once(':').map_or(header, |(name, _port)| name)
}

fn unbracket(name: &str) -> &str {
    name.strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name)
}

pub(crate) async fn check(
    State(allowed): State<AllowedHosts>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    match host {
        Some(h) if allowed.allows(h) => next.run(request).await,
        _ => (StatusCode::FORBIDDEN, REFUSED).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_and_the_bound_address_are_allowed() {
        let local = AllowedHosts::new("127.0.0.1");
        for ok in [
            "localhost",
            "LOCALHOST:7477",
            "127.0.0.1:1",
            "[::1]:7477",
            "[::1]",
        ] {
            assert!(local.allows(ok), "{ok}");
        }
        for refused in ["evil.example", "evil.example:7477", "192.168.1.2:7477", ""] {
            assert!(!local.allows(refused), "{refused}");
        }
        assert!(AllowedHosts::new("myhost").allows("MyHost:7477"));
        assert!(AllowedHosts::new("::1").allows("[::1]:80"));
    }

    #[test]
    fn bound_to_every_interface_allows_ip_addresses_only() {
        let all = AllowedHosts::new("0.0.0.0");
        assert!(all.allows("192.168.1.2:7477"));
        assert!(all.allows("[fe80::1]:7477"));
        assert!(!all.allows("evil.example:7477"));
    }
}
