//! The records carried by the ring, and their byte encoding.
//!
//! Little-endian fixed-width fields, then strings as `u32` length + UTF-8
//! bytes. New kinds get new numbers; a reader skips kinds it does not know.
//! The SQL and HTTP-call events are in `capture.rs`.

use crate::capture::{Alloc, Call, Query};
use crate::records::{RequestBegin, RequestFinish, KIND_REQUEST_BEGIN, KIND_REQUEST_FINISH};

/// Longest string stored in an event; longer ones are cut at a char boundary.
pub(crate) const MAX_STRING_BYTES: usize = 8 * 1024;

/// The request raised an exception out of the app.
pub const END_ERROR: u32 = 1;
/// The request's task was cancelled (typically: the client went away).
pub const END_CANCELLED: u32 = 2;
/// The app finished without sending `http.response.start`.
pub const END_NO_RESPONSE: u32 = 4;

/// Most body bytes a [`RequestContext`] carries; the rest is only counted.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Most header bytes (names and values) a [`RequestContext`] carries; headers
/// past it are left out, so one event stays far below the ring's record limit.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// [`RequestContext::phase`]: published when the request enters the app.
pub const PHASE_REQUEST: u16 = 1;
/// [`RequestContext::phase`]: published when the app starts its response.
pub const PHASE_RESPONSE: u16 = 2;
/// [`RequestContext::phase`]: published when FastAPI calls the endpoint
/// function, after middleware, routing and dependencies (no headers, no body).
pub const PHASE_HANDLER: u16 = 3;

const KIND_REQUEST_START: u16 = 1;
const KIND_REQUEST_END: u16 = 2;
const KIND_QUERY: u16 = 3;
const KIND_CALL: u16 = 4;
const KIND_REQUEST_CONTEXT: u16 = 5;
const KIND_GC: u16 = 6;
const KIND_ALLOC: u16 = 7;

/// One garbage collection that ran on a thread while it ran a request
/// (the marker's `gc.callbacks` entry: from `start` to `stop`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gc {
    pub request_id: u64,
    /// Native thread id of the thread that collected.
    pub tid: u32,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// A request entered the app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestStart {
    pub request_id: u64,
    pub ts_ns: u64,
    /// Native thread id of the thread that received the request.
    pub tid: u32,
    pub method: String,
    pub path: String,
}

/// A request left the app (its last body chunk was sent, or it failed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestEnd {
    pub request_id: u64,
    pub ts_ns: u64,
    /// When the last body chunk was sent (monotonic ns), 0 if it never was.
    /// Work after it (BackgroundTasks) is the request's background stage.
    pub response_ns: u64,
    /// HTTP status sent, 0 if none was.
    pub status: u16,
    /// `END_*` bits.
    pub flags: u32,
    /// Matched route template (`/items/{item_id}`), empty if none matched.
    pub route: String,
}

/// What a request carried (at [`PHASE_REQUEST`]: its headers and query
/// string) or what its response started with (at [`PHASE_RESPONSE`]: the
/// response headers and the request body read so far). Secrets are already
/// redacted by the marker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestContext {
    pub request_id: u64,
    pub ts_ns: u64,
    pub phase: u16,
    /// Names lowercased, in the order sent.
    pub headers: Vec<(String, String)>,
    /// The raw query string (request phase).
    pub query: String,
    /// The first [`MAX_BODY_BYTES`] of the request body (response phase).
    pub body: Vec<u8>,
    /// All body bytes the app read, captured or not.
    pub body_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    RequestStart(RequestStart),
    RequestEnd(RequestEnd),
    /// A SQL statement a request ran.
    Query(Query),
    /// An outgoing HTTP call a request made.
    Call(Call),
    RequestContext(RequestContext),
    /// A garbage collection a request paid for.
    Gc(Gc),
    /// A sampled allocation.
    Alloc(Alloc),
    /// A request's start and request context in one record (format 4).
    RequestBegin(RequestBegin),
    /// A request's end, handler mark and response context in one record (format 4).
    RequestFinish(RequestFinish),
    /// A kind this reader does not know (written by a newer marker).
    Unknown(u16),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("event of kind {kind} is truncated")]
    Truncated { kind: u16 },
}

impl RequestStart {
    /// Its fields, as its own event and the begin record both carry them.
    pub(crate) fn read(r: &mut Cursor<'_>) -> Result<RequestStart, DecodeError> {
        Ok(RequestStart {
            request_id: r.u64()?,
            ts_ns: r.u64()?,
            tid: r.u32()?,
            method: r.string()?,
            path: r.string()?,
        })
    }
}

impl RequestEnd {
    /// Its fields, as its own event and the finish record both carry them.
    pub(crate) fn read(r: &mut Cursor<'_>) -> Result<RequestEnd, DecodeError> {
        Ok(RequestEnd {
            request_id: r.u64()?,
            ts_ns: r.u64()?,
            response_ns: r.u64()?,
            status: r.u16()?,
            flags: r.u32()?,
            route: r.string()?,
        })
    }

    /// Its fields before the route, which either record writes next.
    pub(crate) fn put_head(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.request_id.to_le_bytes());
        out.extend_from_slice(&self.ts_ns.to_le_bytes());
        out.extend_from_slice(&self.response_ns.to_le_bytes());
        out.extend_from_slice(&self.status.to_le_bytes());
        out.extend_from_slice(&self.flags.to_le_bytes());
    }
}

impl Event {
    /// The ring record kind and payload bytes of this event.
    pub fn encode(&self, out: &mut Vec<u8>) -> u16 {
        out.clear();
        match self {
            Event::RequestStart(e) => {
                out.extend_from_slice(&e.request_id.to_le_bytes());
                out.extend_from_slice(&e.ts_ns.to_le_bytes());
                out.extend_from_slice(&e.tid.to_le_bytes());
                put_str(out, &e.method);
                put_str(out, &e.path);
                KIND_REQUEST_START
            }
            Event::RequestEnd(e) => {
                e.put_head(out);
                put_str(out, &e.route);
                KIND_REQUEST_END
            }
            Event::RequestContext(e) => {
                out.extend_from_slice(&e.request_id.to_le_bytes());
                out.extend_from_slice(&e.ts_ns.to_le_bytes());
                out.extend_from_slice(&e.phase.to_le_bytes());
                put_headers(out, &e.headers);
                put_str(out, &e.query);
                let body = &e.body[..e.body.len().min(MAX_BODY_BYTES)];
                out.extend_from_slice(&(body.len() as u32).to_le_bytes());
                out.extend_from_slice(body);
                out.extend_from_slice(&e.body_bytes.to_le_bytes());
                KIND_REQUEST_CONTEXT
            }
            Event::Query(q) => {
                q.encode(out);
                KIND_QUERY
            }
            Event::Call(c) => {
                c.encode(out);
                KIND_CALL
            }
            Event::Gc(g) => {
                out.extend_from_slice(&g.request_id.to_le_bytes());
                out.extend_from_slice(&g.tid.to_le_bytes());
                out.extend_from_slice(&g.start_ns.to_le_bytes());
                out.extend_from_slice(&g.end_ns.to_le_bytes());
                KIND_GC
            }
            Event::Alloc(a) => {
                a.encode(out);
                KIND_ALLOC
            }
            Event::RequestBegin(b) => b.encode(out),
            Event::RequestFinish(f) => f.encode(out),
            Event::Unknown(kind) => *kind,
        }
    }

    pub fn decode(kind: u16, bytes: &[u8]) -> Result<Event, DecodeError> {
        let mut r = Cursor { bytes, kind };
        Ok(match kind {
            KIND_REQUEST_START => Event::RequestStart(RequestStart::read(&mut r)?),
            KIND_REQUEST_END => Event::RequestEnd(RequestEnd::read(&mut r)?),
            KIND_REQUEST_CONTEXT => Event::RequestContext(RequestContext {
                request_id: r.u64()?,
                ts_ns: r.u64()?,
                phase: r.u16()?,
                headers: r.headers()?,
                query: r.string()?,
                body: r.body()?,
                body_bytes: r.u64()?,
            }),
            KIND_REQUEST_BEGIN => Event::RequestBegin(RequestBegin::decode(&mut r)?),
            KIND_REQUEST_FINISH => Event::RequestFinish(RequestFinish::decode(&mut r)?),
            KIND_QUERY => Event::Query(Query::decode(&mut r)?),
            KIND_CALL => Event::Call(Call::decode(&mut r)?),
            KIND_ALLOC => Event::Alloc(Alloc::decode(&mut r)?),
            KIND_GC => Event::Gc(Gc {
                request_id: r.u64()?,
                tid: r.u32()?,
                start_ns: r.u64()?,
                end_ns: r.u64()?,
            }),
            other => Event::Unknown(other),
        })
    }
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    let s = truncate_str(s, MAX_STRING_BYTES);
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A count, then name and value of each header until [`MAX_HEADER_BYTES`].
fn put_headers(out: &mut Vec<u8>, headers: &[(String, String)]) {
    let mut budget = MAX_HEADER_BYTES;
    let fits: Vec<&(String, String)> = headers
        .iter()
        .take_while(|(name, value)| {
            let size = name.len() + value.len();
            let fits = size <= budget;
            budget = budget.saturating_sub(size);
            fits
        })
        .collect();
    out.extend_from_slice(&(fits.len() as u32).to_le_bytes());
    for (name, value) in fits {
        put_str(out, name);
        put_str(out, value);
    }
}

/// `s` cut to at most `max` bytes without splitting a character.
pub fn truncate_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    kind: u16,
}

impl Cursor<'_> {
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len()
    }

    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError::Truncated { kind: self.kind });
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }

    pub(crate) fn body(&mut self) -> Result<Vec<u8>, DecodeError> {
        let len = self.u32()? as usize;
        Ok(self.take(len)?.to_vec())
    }

    pub(crate) fn headers(&mut self) -> Result<Vec<(String, String)>, DecodeError> {
        let count = self.u32()? as usize;
        // Each header takes at least 8 bytes: a corrupt count cannot make us allocate much.
        let mut headers = Vec::with_capacity(count.min(self.bytes.len() / 8));
        for _ in 0..count {
            headers.push((self.string()?, self.string()?));
        }
        Ok(headers)
    }

    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        let len = self.u32()? as usize;
        // Lossy: a marker bug must never make the recorder fail on bad UTF-8.
        Ok(String::from_utf8_lossy(self.take(len)?).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_both_kinds() {
        let events = [
            Event::RequestStart(RequestStart {
                request_id: 7,
                ts_ns: 123_456_789,
                tid: 4242,
                method: "GET".into(),
                path: "/items/3".into(),
            }),
            Event::RequestEnd(RequestEnd {
                request_id: 7,
                ts_ns: 223_456_789,
                response_ns: 200_000_000,
                status: 404,
                flags: END_ERROR,
                route: "/items/{item_id}".into(),
            }),
        ];
        let mut buf = Vec::new();
        for e in events {
            let kind = e.encode(&mut buf);
            assert_eq!(Event::decode(kind, &buf).unwrap(), e);
        }
    }

    #[test]
    fn round_trips_context_and_caps_body_and_headers() {
        let event = Event::RequestContext(RequestContext {
            request_id: 9,
            ts_ns: 5,
            phase: PHASE_RESPONSE,
            headers: vec![("content-type".into(), "application/json".into())],
            query: "a=1".into(),
            body: b"{\"x\": 1}".to_vec(),
            body_bytes: 8,
        });
        let mut buf = Vec::new();
        let kind = event.encode(&mut buf);
        assert_eq!(kind, 5);
        assert_eq!(Event::decode(kind, &buf).unwrap(), event);
        for cut in 0..buf.len() {
            assert!(Event::decode(kind, &buf[..cut]).is_err());
        }

        let big = Event::RequestContext(RequestContext {
            headers: (0..100)
                .map(|i| (format!("x-{i}"), "v".repeat(1000)))
                .collect(),
            body: vec![b'a'; MAX_BODY_BYTES * 2],
            body_bytes: (MAX_BODY_BYTES * 2) as u64,
            ..RequestContext::default()
        });
        big.encode(&mut buf);
        let Event::RequestContext(back) = Event::decode(kind, &buf).unwrap() else {
            panic!("not a context");
        };
        assert_eq!(back.body.len(), MAX_BODY_BYTES);
        assert_eq!(back.body_bytes, (MAX_BODY_BYTES * 2) as u64);
        assert!(back.headers.len() < 17 && back.headers.len() > 10);
        assert!(buf.len() < crate::MAX_RECORD_BYTES);
    }

    #[test]
    fn round_trips_a_collection() {
        let event = Event::Gc(Gc {
            request_id: 3,
            tid: 77,
            start_ns: 1_000,
            end_ns: 1_450,
        });
        let mut buf = Vec::new();
        let kind = event.encode(&mut buf);
        assert_eq!(buf.len(), 28, "fits one ring slot's payload");
        assert_eq!(Event::decode(kind, &buf).unwrap(), event);
        assert!(Event::decode(kind, &buf[..20]).is_err());
    }

    #[test]
    fn truncated_payload_is_an_error_not_a_panic() {
        let mut buf = Vec::new();
        let kind = Event::RequestEnd(RequestEnd {
            request_id: 1,
            ts_ns: 2,
            response_ns: 1,
            status: 200,
            flags: 0,
            route: "/x".into(),
        })
        .encode(&mut buf);
        for cut in 0..buf.len() {
            assert_eq!(
                Event::decode(kind, &buf[..cut]),
                Err(DecodeError::Truncated { kind })
            );
        }
    }

    #[test]
    fn long_strings_are_cut_on_a_char_boundary() {
        let s = "é".repeat(MAX_STRING_BYTES);
        let cut = truncate_str(&s, MAX_STRING_BYTES + 1);
        assert!(cut.len() <= MAX_STRING_BYTES + 1);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn unknown_kinds_are_skipped() {
        assert_eq!(Event::decode(999, b"whatever"), Ok(Event::Unknown(999)));
    }
}
