//! Which recorded request served each probe request.
//!
//! Each probe request carries its own tag in [`crate::TAG_HEADER`], and
//! the marker records request headers, so the tag names the request
//! exactly. When the app was recorded without request context
//! (`TIMEGLASS_CONTEXT=0`) the tag is not stored; then, taking the sent
//! requests in order (the probe sends one at a time), each takes the
//! earliest recorded request not yet taken with the same method, path,
//! query (when recorded) and status that started while it was in flight.

use std::collections::{HashMap, HashSet};

pub use timeglass_model::ProbeCandidate as Recorded;

/// A probe request, as it was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    pub tag: String,
    pub method: String,
    /// Percent-encoded path and query, as sent.
    pub path_and_query: String,
    pub start_ms: i64,
    pub end_ms: i64,
    /// The status it was answered with; `None` when it got no answer.
    pub status: Option<u16>,
}

/// Recorded starts are stored to the millisecond, on the session's
/// mapping of the monotonic clock to wall time: allow a few either side of
/// the probe's own readings.
const SLACK_MS: i64 = 5;

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
        let earliest = recorded
            .iter()
            .filter(|r| {
                r.tag.is_none()
                    && !taken.contains(&r.id)
                    && r.method == s.method
                    && r.path == path
                    && r.query.as_deref().is_none_or(|q| q == query)
                    && (s.status.is_none() || r.status == s.status)
                    && (s.start_ms - SLACK_MS..=s.end_ms + SLACK_MS).contains(&r.start_ms)
            })
            .min_by_key(|r| (r.start_ms, r.id));
        if let Some(r) = earliest {
            taken.insert(r.id);
            *slot = Some(r.id);
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
            status: Some(422),
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
            status: Some(422),
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
    fn without_tags_requests_sent_one_after_another_take_recordings_in_order() {
        let s = [
            sent("r-0", "/items/not%20a", 1000),
            sent("r-1", "/b?q=2", 2000),
            sent("r-2", "/c", 3000),
            sent("r-3", "/c", 3011),
            Sent {
                status: Some(500),
                ..sent("r-4", "/d", 4000)
            },
        ];
        let r = [
            recorded(1, "/items/not a", None, 1004, None),
            recorded(2, "/b", Some("q=3"), 2001, None), // another query
            recorded(4, "/c", None, 3012, None),
            recorded(3, "/c", None, 3001, None),
            recorded(5, "/items/not a", None, 1500, None), // outside the window
            recorded(6, "/d", None, 4001, None),           // answered 422, not 500
        ];
        assert_eq!(
            match_requests(&s, &r),
            [Some(1), None, Some(3), Some(4), None]
        );
    }
}
