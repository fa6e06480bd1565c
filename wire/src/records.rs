//! The two records of a request's life that carry what used to take five
//! (format version 4): [`RequestBegin`] (kind 8) is the start with the
//! request's headers and query string, [`RequestFinish`] (kind 9) the end
//! with the endpoint call's time and the response's context.
//!
//! Every event costs the app a ring record, so the marker folds what it
//! knows at the same moment into one. [`Event::into_parts`] splits them
//! back into the start, end and context events that the join reads.
//!
//! The marker writes these payloads field by field with [`write`], straight
//! from the Python objects, without building the structs: the structs'
//! `encode` goes through the same functions, so the two cannot disagree.

use crate::event::{put_str, Cursor, DecodeError, MAX_STRING_BYTES};
use crate::{Event, RequestContext, RequestEnd, RequestStart, PHASE_HANDLER};
use crate::{MAX_BODY_BYTES, PHASE_REQUEST, PHASE_RESPONSE};

pub(crate) const KIND_REQUEST_BEGIN: u16 = 8;
pub(crate) const KIND_REQUEST_FINISH: u16 = 9;

/// The optional tail of a record is there.
const HAS_CONTEXT: u16 = 1;

/// What a request carried when it entered the app. Secrets already redacted
/// by the marker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestHeaders {
    /// Names lowercased, in the order sent.
    pub headers: Vec<(String, String)>,
    /// The query string.
    pub query: String,
}

/// What the response started with, and the request body read by then.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseHeaders {
    /// When the app sent `http.response.start` (monotonic ns).
    pub ts_ns: u64,
    pub headers: Vec<(String, String)>,
    /// The first [`MAX_BODY_BYTES`] of the request body.
    pub body: Vec<u8>,
    /// All body bytes the app read, captured or not.
    pub body_bytes: u64,
}

/// A request entered the app (kind 8): its start, and its context unless
/// contexts are off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestBegin {
    pub start: RequestStart,
    pub context: Option<RequestHeaders>,
}

/// A request left the app (kind 9): its end, when FastAPI called its
/// endpoint function, and its response's context unless contexts are off or
/// no response started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestFinish {
    pub end: RequestEnd,
    /// When the endpoint function was called; `None` when it was not, or
    /// when the marker published it as an event of its own.
    pub handler_ns: Option<u64>,
    pub response: Option<ResponseHeaders>,
}

/// Writing the two payloads field by field.
pub mod write {
    use super::*;

    /// A string field from bytes, cut to the longest string an event
    /// carries (bytes that are not UTF-8 are replaced when read).
    pub fn bytes(out: &mut Vec<u8>, s: &[u8]) {
        let s = &s[..s.len().min(MAX_STRING_BYTES)];
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s);
    }

    /// A string field made of `parts`, one after the other.
    pub fn joined(out: &mut Vec<u8>, parts: &[&[u8]]) {
        string_with(out, |out| {
            for part in parts {
                out.extend_from_slice(part);
            }
        });
    }

    /// A string field of what `f` appends to `out`, cut like [`bytes`].
    pub fn string_with(out: &mut Vec<u8>, f: impl FnOnce(&mut Vec<u8>)) {
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        f(out);
        out.truncate(at + 4 + MAX_STRING_BYTES);
        let len = (out.len() - at - 4) as u32;
        out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }

    /// The fields of [`RequestBegin`] up to its context, which follows
    /// (`headers`, then `bytes` for the query) when `context` is set.
    /// Returns the record's kind.
    pub fn begin(
        out: &mut Vec<u8>,
        request_id: u64,
        ts_ns: u64,
        tid: u32,
        method: &[u8],
        path: &[u8],
        context: bool,
    ) -> u16 {
        out.clear();
        out.extend_from_slice(&request_id.to_le_bytes());
        out.extend_from_slice(&ts_ns.to_le_bytes());
        out.extend_from_slice(&tid.to_le_bytes());
        bytes(out, method);
        bytes(out, path);
        out.extend_from_slice(&flag(context).to_le_bytes());
        KIND_REQUEST_BEGIN
    }

    /// The fixed fields of [`RequestFinish`]; its route (`joined`) follows,
    /// then [`finish_tail`].
    pub fn finish(out: &mut Vec<u8>, end: &RequestEnd) -> u16 {
        out.clear();
        end.put_head(out);
        KIND_REQUEST_FINISH
    }

    /// After the route: the endpoint call's time (0: none) and, when
    /// `response_ns` is `Some`, the response's start time, which its
    /// `headers` and then [`body`] follow.
    pub fn finish_tail(out: &mut Vec<u8>, handler_ns: u64, response_ns: Option<u64>) {
        out.extend_from_slice(&handler_ns.to_le_bytes());
        out.extend_from_slice(&flag(response_ns.is_some()).to_le_bytes());
        if let Some(ts) = response_ns {
            out.extend_from_slice(&ts.to_le_bytes());
        }
    }

    /// The request body captured (cut to [`MAX_BODY_BYTES`]) and its full length.
    pub fn body(out: &mut Vec<u8>, body: &[u8], body_bytes: u64) {
        let body = &body[..body.len().min(MAX_BODY_BYTES)];
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(&body_bytes.to_le_bytes());
    }

    pub(crate) fn flag(on: bool) -> u16 {
        if on {
            HAS_CONTEXT
        } else {
            0
        }
    }

    /// A header list being written: its count goes before the headers and
    /// is filled in by [`Headers::end`].
    pub struct Headers {
        at: usize,
        count: u32,
    }

    impl Headers {
        pub fn start(out: &mut Vec<u8>) -> Headers {
            let at = out.len();
            out.extend_from_slice(&[0; 4]);
            Headers { at, count: 0 }
        }

        /// One header, its name lowercased (ASCII).
        pub fn push(&mut self, out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
            let name = &name[..name.len().min(MAX_STRING_BYTES)];
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            let at = out.len();
            out.extend_from_slice(name);
            out[at..].make_ascii_lowercase();
            bytes(out, value);
            self.count += 1;
        }

        pub fn end(self, out: &mut [u8]) {
            out[self.at..self.at + 4].copy_from_slice(&self.count.to_le_bytes());
        }
    }

    /// `headers` as they are (a decoded record's are lowercased already),
    /// each string cut on a character boundary.
    pub(crate) fn all_headers(out: &mut Vec<u8>, headers: &[(String, String)]) {
        out.extend_from_slice(&(headers.len() as u32).to_le_bytes());
        for (name, value) in headers {
            put_str(out, name);
            put_str(out, value);
        }
    }
}

impl RequestBegin {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> u16 {
        // Strings are cut on a character boundary here (`put_str`), so that a
        // decoded record encodes to itself; `write` cuts the marker's bytes.
        let s = &self.start;
        out.clear();
        out.extend_from_slice(&s.request_id.to_le_bytes());
        out.extend_from_slice(&s.ts_ns.to_le_bytes());
        out.extend_from_slice(&s.tid.to_le_bytes());
        put_str(out, &s.method);
        put_str(out, &s.path);
        out.extend_from_slice(&write::flag(self.context.is_some()).to_le_bytes());
        if let Some(c) = &self.context {
            write::all_headers(out, &c.headers);
            put_str(out, &c.query);
        }
        KIND_REQUEST_BEGIN
    }

    pub(crate) fn decode(r: &mut Cursor<'_>) -> Result<RequestBegin, DecodeError> {
        let start = RequestStart::read(r)?;
        let context = match r.u16()? & HAS_CONTEXT {
            0 => None,
            _ => Some(RequestHeaders {
                headers: r.headers()?,
                query: r.string()?,
            }),
        };
        Ok(RequestBegin { start, context })
    }

    /// The start event, then the request-phase context.
    fn into_parts(self) -> [Option<Event>; 2] {
        let context = self.context.map(|c| {
            Event::RequestContext(RequestContext {
                request_id: self.start.request_id,
                ts_ns: self.start.ts_ns,
                phase: PHASE_REQUEST,
                headers: c.headers,
                query: c.query,
                ..RequestContext::default()
            })
        });
        [Some(Event::RequestStart(self.start)), context]
    }
}

impl RequestFinish {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> u16 {
        let kind = write::finish(out, &self.end);
        put_str(out, &self.end.route);
        let handler = self.handler_ns.unwrap_or(0);
        write::finish_tail(out, handler, self.response.as_ref().map(|r| r.ts_ns));
        if let Some(r) = &self.response {
            write::all_headers(out, &r.headers);
            write::body(out, &r.body, r.body_bytes);
        }
        kind
    }

    pub(crate) fn decode(r: &mut Cursor<'_>) -> Result<RequestFinish, DecodeError> {
        let end = RequestEnd::read(r)?;
        let handler_ns = Some(r.u64()?).filter(|&ns| ns != 0);
        let response = match r.u16()? & HAS_CONTEXT {
            0 => None,
            _ => Some(ResponseHeaders {
                ts_ns: r.u64()?,
                headers: r.headers()?,
                body: r.body()?,
                body_bytes: r.u64()?,
            }),
        };
        Ok(RequestFinish {
            end,
            handler_ns,
            response,
        })
    }

    /// The endpoint call's context, the response's, then the end event:
    /// the order in which the marker of format 3 published them.
    fn into_parts(self) -> [Option<Event>; 3] {
        let rid = self.end.request_id;
        let handler = self.handler_ns.map(|ts_ns| {
            Event::RequestContext(RequestContext {
                request_id: rid,
                ts_ns,
                phase: PHASE_HANDLER,
                ..RequestContext::default()
            })
        });
        let response = self.response.map(|r| {
            Event::RequestContext(RequestContext {
                request_id: rid,
                ts_ns: r.ts_ns,
                phase: PHASE_RESPONSE,
                headers: r.headers,
                query: String::new(),
                body: r.body,
                body_bytes: r.body_bytes,
            })
        });
        [handler, response, Some(Event::RequestEnd(self.end))]
    }
}

impl Event {
    /// This event as the events of format 3 that it folds: a
    /// [`RequestBegin`] as its start and request context, a
    /// [`RequestFinish`] as its handler and response contexts and its end;
    /// any other event as itself.
    pub fn into_parts(self) -> impl Iterator<Item = Event> {
        let parts: [Option<Event>; 3] = match self {
            Event::RequestBegin(b) => {
                let [a, b] = b.into_parts();
                [a, b, None]
            }
            Event::RequestFinish(f) => f.into_parts(),
            other => [Some(other), None, None],
        };
        parts.into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn begin(context: Option<RequestHeaders>) -> Event {
        Event::RequestBegin(RequestBegin {
            start: RequestStart {
                request_id: 7,
                ts_ns: 100,
                tid: 42,
                method: "GET".into(),
                path: "/items".into(),
            },
            context,
        })
    }

    fn finish(handler_ns: Option<u64>, response: Option<ResponseHeaders>) -> Event {
        Event::RequestFinish(RequestFinish {
            end: RequestEnd {
                request_id: 7,
                ts_ns: 300,
                response_ns: 290,
                status: 200,
                flags: 0,
                route: "/items".into(),
            },
            handler_ns,
            response,
        })
    }

    fn round_trip(e: &Event) {
        let mut buf = Vec::new();
        let kind = e.encode(&mut buf);
        assert_eq!(&Event::decode(kind, &buf).unwrap(), e);
        for cut in 0..buf.len() {
            assert_eq!(
                Event::decode(kind, &buf[..cut]),
                Err(DecodeError::Truncated { kind })
            );
        }
    }

    fn headers() -> Vec<(String, String)> {
        vec![
            ("host".into(), "h".into()),
            ("authorization".into(), "[redacted]".into()),
        ]
    }

    #[test]
    fn both_kinds_round_trip_with_and_without_their_context() {
        round_trip(&begin(None));
        round_trip(&begin(Some(RequestHeaders::default())));
        round_trip(&begin(Some(RequestHeaders {
            headers: headers(),
            query: "page=2".into(),
        })));
        round_trip(&finish(None, None));
        round_trip(&finish(Some(150), None));
        round_trip(&finish(
            Some(150),
            Some(ResponseHeaders {
                ts_ns: 200,
                headers: headers(),
                body: b"{}".to_vec(),
                body_bytes: 2,
            }),
        ));
    }

    #[test]
    fn they_split_into_the_events_of_format_3_in_their_order() {
        let parts: Vec<Event> = begin(Some(RequestHeaders {
            headers: headers(),
            query: "q".into(),
        }))
        .into_parts()
        .collect();
        assert!(matches!(parts[0], Event::RequestStart(_)));
        let Event::RequestContext(c) = &parts[1] else {
            panic!("{parts:?}");
        };
        assert_eq!((c.request_id, c.ts_ns, c.phase), (7, 100, PHASE_REQUEST));
        assert_eq!((c.headers.clone(), c.query.as_str()), (headers(), "q"));

        let response = ResponseHeaders {
            ts_ns: 200,
            body: b"x".to_vec(),
            body_bytes: 9,
            ..Default::default()
        };
        let parts: Vec<Event> = finish(Some(150), Some(response)).into_parts().collect();
        let phases: Vec<_> = parts
            .iter()
            .map(|e| match e {
                Event::RequestContext(c) => (c.phase, c.ts_ns),
                Event::RequestEnd(e) => (0, e.ts_ns),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            phases,
            [(PHASE_HANDLER, 150), (PHASE_RESPONSE, 200), (0, 300)]
        );
        assert_eq!(finish(None, None).into_parts().count(), 1);
    }

    #[test]
    fn raw_header_bytes_are_lowercased_and_cut_and_read_back_lossily() {
        let mut buf = Vec::new();
        let kind = write::begin(&mut buf, 1, 2, 3, b"GET", b"/", true);
        let mut list = write::Headers::start(&mut buf);
        list.push(&mut buf, b"X-Caf\xe9", b"\xff\xfe");
        list.push(&mut buf, b"Big", &vec![b'v'; MAX_STRING_BYTES + 10]);
        list.end(&mut buf);
        write::bytes(&mut buf, b"a=1");
        let Ok(Event::RequestBegin(b)) = Event::decode(kind, &buf) else {
            panic!("not a begin");
        };
        let c = b.context.unwrap();
        assert_eq!(
            c.headers[0],
            ("x-caf\u{fffd}".into(), "\u{fffd}\u{fffd}".into())
        );
        assert_eq!(c.headers[1].0, "big");
        assert_eq!(c.headers[1].1.len(), MAX_STRING_BYTES);
        assert_eq!(c.query, "a=1");
    }

    #[test]
    fn a_decoded_record_encodes_to_itself_whatever_its_strings() {
        // Found by the event_decode fuzz target: a header name that is not
        // lowercase is encoded as it came, and bytes that are not UTF-8 as
        // they were replaced.
        let mut buf = Vec::new();
        let kind = write::begin(&mut buf, 1, 2, 3, b"G\xffT", b"/", true);
        buf.extend_from_slice(&1u32.to_le_bytes());
        write::bytes(&mut buf, b"Host");
        write::bytes(&mut buf, b"v\xff\xfe");
        write::bytes(&mut buf, b"");
        let event = Event::decode(kind, &buf).unwrap();
        let mut again = Vec::new();
        let kind = event.encode(&mut again);
        assert_eq!(Event::decode(kind, &again).unwrap(), event);
    }

    #[test]
    fn a_route_is_joined_from_its_parts() {
        let mut buf = Vec::new();
        let end = RequestEnd {
            request_id: 1,
            ts_ns: 2,
            response_ns: 0,
            status: 0,
            flags: 0,
            route: String::new(),
        };
        let kind = write::finish(&mut buf, &end);
        write::joined(&mut buf, &[b"/api", b"/items/{id}"]);
        write::finish_tail(&mut buf, 0, None);
        let Ok(Event::RequestFinish(f)) = Event::decode(kind, &buf) else {
            panic!("not a finish");
        };
        assert_eq!(f.end.route, "/api/items/{id}");
        assert_eq!((f.handler_ns, f.response), (None, None));
    }
}
