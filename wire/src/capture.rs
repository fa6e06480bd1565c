//! The events of what a request waited on: SQL statements (kind 3) and
//! outgoing HTTP calls (kind 4).
//!
//! Each carries the Python stack that issued it. A stack is sent in full the
//! first time (and again whenever its last copy may have been overwritten in
//! the ring); later events of the same stack carry only its id, which the
//! reader resolves per process. Stacks are listed outermost frame first.

use crate::event::{put_str, Cursor, DecodeError};

/// Longest statement text carried; the full length is sent beside it.
pub const MAX_SQL_BYTES: usize = 8 * 1024;
/// Longest rendering of a statement's parameters carried.
pub const MAX_PARAMS_BYTES: usize = 2 * 1024;
/// Longest error message carried.
pub const MAX_ERROR_BYTES: usize = 1024;
/// Budget for the frames of one stack definition; deeper stacks lose their
/// outermost frames (and then do not merge with sampled stacks).
pub const MAX_STACK_BYTES: usize = 40 * 1024;

const HAS_PARAMS: u32 = 1;
const HAS_ERROR: u32 = 2;
const HAS_FRAMES: u32 = 4;

/// One frame of an issuing stack, as py-spy would name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackFrame {
    /// `co_qualname` (`co_name` before Python 3.11).
    pub name: String,
    pub filename: String,
    /// The filename shortened the way py-spy shortens it (`fastapi/routing.py`).
    pub short: String,
    pub line: u32,
    /// Library code (site-packages, the standard library), not the app's own.
    pub library: bool,
}

/// The stack an event was issued from: an id, with its frames when this
/// event defines it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackRef {
    /// Unique within the process; 0 means "no stack known".
    pub id: u64,
    /// Outermost first; `None` when an earlier event of the process defined it.
    pub frames: Option<Vec<StackFrame>>,
}

/// A SQL statement a request ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub request_id: u64,
    pub start_ns: u64,
    pub end_ns: u64,
    /// Rows returned or affected, when the driver says; -1 otherwise.
    pub rows: i64,
    /// `sqlite3`, `asyncpg`, `sqlalchemy`, ...
    pub driver: String,
    /// The statement, at most [`MAX_SQL_BYTES`].
    pub sql: String,
    /// Length of the whole statement, in characters.
    pub sql_len: u64,
    /// The parameters as Python `repr`s them, at most [`MAX_PARAMS_BYTES`];
    /// `None` when not recorded (`--no-sql-params`) or when there were none.
    pub params: Option<String>,
    /// Length of the whole rendering, in characters.
    pub params_len: u64,
    /// `ExceptionType: message` when the statement raised.
    pub error: Option<String>,
    pub stack: StackRef,
}

/// An outgoing HTTP call a request made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub request_id: u64,
    pub start_ns: u64,
    pub end_ns: u64,
    pub method: String,
    /// With secret-looking query values and passwords already redacted.
    pub url: String,
    /// 0 when no response came.
    pub status: u16,
    pub error: Option<String>,
    /// `httpx`, `requests`.
    pub library: String,
    pub stack: StackRef,
}

impl Query {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let mut flags = 0;
        if self.params.is_some() {
            flags |= HAS_PARAMS;
        }
        if self.error.is_some() {
            flags |= HAS_ERROR;
        }
        if self.stack.frames.is_some() {
            flags |= HAS_FRAMES;
        }
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&self.request_id.to_le_bytes());
        out.extend_from_slice(&self.start_ns.to_le_bytes());
        out.extend_from_slice(&self.end_ns.to_le_bytes());
        out.extend_from_slice(&self.rows.to_le_bytes());
        out.extend_from_slice(&self.sql_len.to_le_bytes());
        out.extend_from_slice(&self.params_len.to_le_bytes());
        out.extend_from_slice(&self.stack.id.to_le_bytes());
        put_str(out, &self.driver);
        put_str(out, &self.sql);
        put_str(out, self.params.as_deref().unwrap_or(""));
        put_str(out, self.error.as_deref().unwrap_or(""));
        put_frames(out, self.stack.frames.as_deref());
    }

    pub(crate) fn decode(r: &mut Cursor<'_>) -> Result<Query, DecodeError> {
        let flags = r.u32()?;
        let request_id = r.u64()?;
        let start_ns = r.u64()?;
        let end_ns = r.u64()?;
        let rows = r.u64()? as i64;
        let sql_len = r.u64()?;
        let params_len = r.u64()?;
        let id = r.u64()?;
        let driver = r.string()?;
        let sql = r.string()?;
        let params = Some(r.string()?).filter(|_| flags & HAS_PARAMS != 0);
        let error = Some(r.string()?).filter(|_| flags & HAS_ERROR != 0);
        let frames = get_frames(r, flags)?;
        Ok(Query {
            request_id,
            start_ns,
            end_ns,
            rows,
            driver,
            sql,
            sql_len,
            params,
            params_len,
            error,
            stack: StackRef { id, frames },
        })
    }
}

impl Call {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let mut flags = 0;
        if self.error.is_some() {
            flags |= HAS_ERROR;
        }
        if self.stack.frames.is_some() {
            flags |= HAS_FRAMES;
        }
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&self.request_id.to_le_bytes());
        out.extend_from_slice(&self.start_ns.to_le_bytes());
        out.extend_from_slice(&self.end_ns.to_le_bytes());
        out.extend_from_slice(&self.status.to_le_bytes());
        out.extend_from_slice(&self.stack.id.to_le_bytes());
        put_str(out, &self.method);
        put_str(out, &self.url);
        put_str(out, self.error.as_deref().unwrap_or(""));
        put_str(out, &self.library);
        put_frames(out, self.stack.frames.as_deref());
    }

    pub(crate) fn decode(r: &mut Cursor<'_>) -> Result<Call, DecodeError> {
        let flags = r.u32()?;
        let request_id = r.u64()?;
        let start_ns = r.u64()?;
        let end_ns = r.u64()?;
        let status = r.u16()?;
        let id = r.u64()?;
        let method = r.string()?;
        let url = r.string()?;
        let error = Some(r.string()?).filter(|_| flags & HAS_ERROR != 0);
        let library = r.string()?;
        let frames = get_frames(r, flags)?;
        Ok(Call {
            request_id,
            start_ns,
            end_ns,
            method,
            url,
            status,
            error,
            library,
            stack: StackRef { id, frames },
        })
    }
}

/// A sampled allocation (kind 7): the bytes the thread allocated since its
/// previous sample, charged to the stack that made the allocation that
/// crossed the sampling point and to the request in the thread's slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alloc {
    pub request_id: u64,
    pub tid: u32,
    pub ts_ns: u64,
    pub bytes: u64,
    pub stack: StackRef,
}

impl Alloc {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let flags = if self.stack.frames.is_some() {
            HAS_FRAMES
        } else {
            0
        };
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&self.request_id.to_le_bytes());
        out.extend_from_slice(&self.tid.to_le_bytes());
        out.extend_from_slice(&self.ts_ns.to_le_bytes());
        out.extend_from_slice(&self.bytes.to_le_bytes());
        out.extend_from_slice(&self.stack.id.to_le_bytes());
        put_frames(out, self.stack.frames.as_deref());
    }

    pub(crate) fn decode(r: &mut Cursor<'_>) -> Result<Alloc, DecodeError> {
        let flags = r.u32()?;
        Ok(Alloc {
            request_id: r.u64()?,
            tid: r.u32()?,
            ts_ns: r.u64()?,
            bytes: r.u64()?,
            stack: StackRef {
                id: r.u64()?,
                frames: get_frames(r, flags)?,
            },
        })
    }
}

fn put_frames(out: &mut Vec<u8>, frames: Option<&[StackFrame]>) {
    let Some(frames) = frames else {
        return;
    };
    out.extend_from_slice(&(frames.len() as u32).to_le_bytes());
    for f in frames {
        put_str(out, &f.name);
        put_str(out, &f.filename);
        put_str(out, &f.short);
        out.extend_from_slice(&f.line.to_le_bytes());
        out.extend_from_slice(&u16::from(f.library).to_le_bytes());
    }
}

fn get_frames(r: &mut Cursor<'_>, flags: u32) -> Result<Option<Vec<StackFrame>>, DecodeError> {
    if flags & HAS_FRAMES == 0 {
        return Ok(None);
    }
    let n = r.u32()? as usize;
    // Each frame takes at least 18 bytes: a corrupt count cannot make us allocate much.
    let mut frames = Vec::with_capacity(n.min(r.remaining() / 18));
    for _ in 0..n {
        frames.push(StackFrame {
            name: r.string()?,
            filename: r.string()?,
            short: r.string()?,
            line: r.u32()?,
            library: r.u16()? != 0,
        });
    }
    Ok(Some(frames))
}

/// Encoded size of one frame, to keep a definition within [`MAX_STACK_BYTES`].
pub fn frame_bytes(name: &str, filename: &str, short: &str) -> usize {
    3 * 4 + name.len() + filename.len() + short.len() + 4 + 2
}

#[cfg(test)]
mod tests {
    use crate::Event;

    use super::*;

    fn frames() -> Vec<StackFrame> {
        vec![
            StackFrame {
                name: "<module>".into(),
                filename: "/venv/bin/uvicorn".into(),
                short: "uvicorn".into(),
                line: 8,
                library: true,
            },
            StackFrame {
                name: "list_items".into(),
                filename: "/app/main.py".into(),
                short: "main.py".into(),
                line: 42,
                library: false,
            },
        ]
    }

    fn query(params: Option<&str>, error: Option<&str>, frames: Option<Vec<StackFrame>>) -> Query {
        Query {
            request_id: 3,
            start_ns: 10,
            end_ns: 25,
            rows: -1,
            driver: "sqlite3".into(),
            sql: "SELECT 1".into(),
            sql_len: 8,
            params: params.map(Into::into),
            params_len: params.map_or(0, |p| p.len() as u64),
            error: error.map(Into::into),
            stack: StackRef { id: 9, frames },
        }
    }

    fn round_trip(e: Event) {
        let mut buf = Vec::new();
        let kind = e.encode(&mut buf);
        assert_eq!(Event::decode(kind, &buf).unwrap(), e);
        for cut in 0..buf.len() {
            assert_eq!(
                Event::decode(kind, &buf[..cut]),
                Err(DecodeError::Truncated { kind })
            );
        }
    }

    #[test]
    fn queries_round_trip_with_and_without_optional_parts() {
        round_trip(Event::Query(query(None, None, None)));
        round_trip(Event::Query(query(Some("(1, 'a')"), None, Some(frames()))));
        round_trip(Event::Query(query(
            Some(""),
            Some("OperationalError: no such table: x"),
            Some(vec![]),
        )));
    }

    #[test]
    fn calls_round_trip() {
        for (status, error, frames) in [
            (200, None, Some(frames())),
            (0, Some("ConnectError: refused"), None),
        ] {
            round_trip(Event::Call(Call {
                request_id: 1,
                start_ns: 5,
                end_ns: 7,
                method: "GET".into(),
                url: "http://api.example.com/x?token=REDACTED".into(),
                status,
                error: error.map(Into::into),
                library: "httpx".into(),
                stack: StackRef { id: 2, frames },
            }));
        }
    }

    #[test]
    fn allocations_round_trip_with_and_without_frames() {
        for frames in [Some(frames()), None] {
            round_trip(Event::Alloc(Alloc {
                request_id: 4,
                tid: 99,
                ts_ns: 1234,
                bytes: 600_000,
                stack: StackRef { id: 7, frames },
            }));
        }
    }

    #[test]
    fn a_huge_frame_count_does_not_allocate_it() {
        let mut buf = Vec::new();
        let kind = Event::Query(query(None, None, Some(vec![]))).encode(&mut buf);
        let at = buf.len() - 4;
        buf[at..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            Event::decode(kind, &buf),
            Err(DecodeError::Truncated { kind })
        );
    }
}
