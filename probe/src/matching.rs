//! Which recorded request served each probe request.
//!
//! Each probe request carries its own tag in [`crate::TAG_HEADER`], and
//! the marker records request headers, so the tag names the request
//! exactly. When the app was recorded without request context
//! (`TIMEGLASS_CONTEXT=0`) the tag is not stored; then a recorded request
//! with the same method, path and query that started while the probe
//! request was in flight is taken, if it is the only one.

use std::collections::{HashMap, HashSet};

/// A recorded request, as the store has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub id: i64,
    pub method: String,
    /// Percent-decoded, without the query (ASGI's `scope["path"]`).
    pub path: String,
    /// The raw query string, when request context was recorded.
    pub query: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub start_ms: i64,
    /// The probe tag it carried, when request context was recorded.
    pub tag: Option<String>,
}

/// A probe request, as it was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    pub tag: String,
    pub method: String,
    /// Percent-encoded path and query, as sent.
    pub path_and_query: String,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// Recorded starts are stored to the millisecond; allow that much either
/// side of the probe's own clock readings.
const SLACK_MS: i64 = 2;

/// The recorded id of each sent request, in order; `None` where none
/// matched.
pub fn match_requests(sent: &[Sent], recorded: &[Recorded]) -> Vec<Option<i64>> {
    let by_tag: HashMap<&str, i64> = recorded
        .iter()
        .filter_map(|r| Some((r.tag.as_deref()?, r.id)))
        .collect();
    let mut taken: HashSet<i64> = HashSet::new();
    let mut out: Vec<Option<i64>> = sent
        .iter()
        .map(|s| {
            let id = by_tag.get(s.tag.as_str()).copied();
            taken.extend(id);
            id
        })
        .collect();
    for (s, slot) in sent.iter().zip(out.iter_mut()) {
        if slot.is_some() {
            continue;
        }
        let (path, query) = split(&s.path_and_query);
        let mut candidates = recorded.iter().filter(|r| {
            r.tag.is_none()
                && !taken.contains(&r.id)
                && r.method == s.method
                && r.path == path
                && r.query.as_deref().is_none_or(|q| q == query)
                && (s.start_ms - SLACK_MS..=s.end_ms + SLACK_MS).contains(&r.start_ms)
        });
        if let (Some(only), None) = (candidates.next(), candidates.next()) {
            taken.insert(only.id);
            *slot = Some(only.id);
        }
    }
    out
}

/// The decoded path and the raw query of `/a%20b?x=1`.
fn split(path_and_query: &str) -> (String, &str) {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .into_owned();
    (decoded, query)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(tag: &str, path: &str, start_ms: i64) -> Sent {
        Sent {
            tag: tag.into(),
            method: "GET".into(),
            path_and_query: path.into(),
            start_ms,
            end_ms: start_ms + 10,
        }
    }

    fn recorded(
        id: i64,
        path: &str,
        query: Option<&str>,
        start_ms: i64,
        tag: Option<&str>,
    ) -> Recorded {
        Recorded {
            id,
            method: "GET".into(),
            path: path.into(),
            query: query.map(Into::into),
            start_ms,
            tag: tag.map(Into::into),
        }
    }

    #[test]
    fn tags_name_the_request_whatever_the_timing() {
        let s = [sent("r-0", "/a?x=1", 1000), sent("r-1", "/a?x=1", 1000)];
        let r = [
            recorded(8, "/a", Some("x=1"), 5000, Some("r-1")),
            recorded(7, "/a", Some("x=1"), 5000, Some("r-0")),
        ];
        assert_eq!(match_requests(&s, &r), [Some(7), Some(8)]);
    }

    #[test]
    fn without_tags_a_lone_request_in_the_window_with_the_same_path_matches() {
        let s = [
            sent("r-0", "/items/not%20a", 1000),
            sent("r-1", "/b?q=2", 2000),
            sent("r-2", "/c", 3000),
        ];
        let r = [
            recorded(1, "/items/not a", None, 1004, None),
            recorded(2, "/b", Some("q=3"), 2001, None), // another query
            recorded(3, "/c", None, 3001, None),
            recorded(4, "/c", None, 3002, None), // two candidates: neither
            recorded(5, "/items/not a", None, 1500, None), // outside the window
        ];
        assert_eq!(match_requests(&s, &r), [Some(1), None, None]);
    }
}
