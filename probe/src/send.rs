//! Sending: one blocking HTTP client with a timeout per request, no
//! redirects followed, every status an answer rather than an error.

use std::io::Read;
use std::time::{Duration, Instant, SystemTime};

use ureq::http;
use url::Url;

use crate::cases::Case;
use crate::ProbeError;

/// The header that carries each probe request's tag (`<run tag>-<seq>`),
/// so the recorded request that served it can be found again. Apps ignore
/// headers they do not read; nothing else is added to what a case sends.
pub const TAG_HEADER: &str = timeglass_model::PROBE_TAG_HEADER;

/// How much of a response body is read (and thrown away) before the
/// request counts as answered.
const MAX_RESPONSE_BYTES: u64 = 1024 * 1024;

/// How the app answered one case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// 4xx: the app said the input was bad. What a probe hopes for.
    Rejected,
    /// 1xx, 2xx or 3xx: the app took the bad input (or, for an unknown id,
    /// answered as if it existed).
    Accepted,
    /// 5xx: the app failed on it.
    Failed,
    /// No answer within the timeout.
    Hung,
    /// The connection was refused, reset or closed without an answer.
    ConnectionError,
}

impl Outcome {
    pub fn of_status(status: u16) -> Outcome {
        match status {
            400..=499 => Outcome::Rejected,
            500.. => Outcome::Failed,
            _ => Outcome::Accepted,
        }
    }

    /// A 5xx, a hang or a dropped connection: what makes the probe fail.
    pub fn is_bad(self) -> bool {
        matches!(
            self,
            Outcome::Failed | Outcome::Hung | Outcome::ConnectionError
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Rejected => "rejected",
            Outcome::Accepted => "accepted",
            Outcome::Failed => "failed",
            Outcome::Hung => "hung",
            Outcome::ConnectionError => "connection_error",
        }
    }
}

/// What happened to one case.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub url: String,
    /// The value of [`TAG_HEADER`] it was sent with.
    pub tag: String,
    pub started_at: SystemTime,
    pub elapsed: Duration,
    pub status: Option<u16>,
    pub outcome: Outcome,
    pub error: Option<String>,
}

pub struct Client {
    agent: ureq::Agent,
    base: Url,
    timeout: Duration,
}

impl Client {
    pub fn new(base: Url, timeout: Duration) -> Client {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent("timeglass-probe")
            // A fresh connection per request: a server may close one after a
            // 500 or a hang, and a case must not fail for the case before it.
            .max_idle_connections(0)
            .build()
            .into();
        Client {
            agent,
            base,
            timeout,
        }
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// GET of the schema: its text, or why there is none (exit 2 material).
    pub fn fetch_schema(&self, url: &Url) -> Result<String, ProbeError> {
        let unreachable = |reason: String| ProbeError::Unreachable {
            url: url.to_string(),
            reason,
        };
        let request = http::Request::get(url.as_str())
            .body(())
            .map_err(|e| unreachable(e.to_string()))?;
        let mut response = self
            .agent
            .run(request)
            .map_err(|e| unreachable(describe(&e, self.timeout)))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(ProbeError::SchemaStatus {
                url: url.to_string(),
                status,
            });
        }
        response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| unreachable(describe(&e, self.timeout)))
    }

    /// Sends one case, tagged `tag`.
    pub fn send(&self, case: &Case, tag: String) -> Answer {
        let url = format!(
            "{}{}",
            self.base.as_str().trim_end_matches('/'),
            case.path_and_query
        );
        let started_at = SystemTime::now();
        let start = Instant::now();
        let result = self.exchange(case, &url, &tag);
        let (status, outcome, error) = match result {
            Ok(status) => (Some(status), Outcome::of_status(status), None),
            Err(e) if is_timeout(&e) => (None, Outcome::Hung, Some(describe(&e, self.timeout))),
            Err(e) => (
                None,
                Outcome::ConnectionError,
                Some(describe(&e, self.timeout)),
            ),
        };
        Answer {
            url,
            tag,
            started_at,
            elapsed: start.elapsed(),
            status,
            outcome,
            error,
        }
    }

    fn exchange(&self, case: &Case, url: &str, tag: &str) -> Result<u16, ureq::Error> {
        let mut builder = http::Request::builder()
            .method(case.method.as_str())
            .uri(url)
            .header(TAG_HEADER, tag);
        for (name, value) in &case.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let mut response = match &case.body {
            Some((content_type, bytes)) => {
                let request = builder
                    .header("content-type", content_type.as_str())
                    .body(bytes.as_slice())?;
                self.agent.run(request)?
            }
            None => self.agent.run(builder.body(())?)?,
        };
        let status = response.status().as_u16();
        // The answer is whole once its body is read; a body that never ends
        // is a hang like any other.
        let mut sink = Vec::new();
        response
            .body_mut()
            .as_reader()
            .take(MAX_RESPONSE_BYTES)
            .read_to_end(&mut sink)
            .map_err(ureq::Error::from)?;
        Ok(status)
    }
}

fn is_timeout(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Timeout(_) => true,
        ureq::Error::Io(io) => io.kind() == std::io::ErrorKind::TimedOut,
        _ => false,
    }
}

fn describe(e: &ureq::Error, timeout: Duration) -> String {
    match e {
        e if is_timeout(e) => format!("no answer within {}", crate::seconds(timeout)),
        ureq::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}
