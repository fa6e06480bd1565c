//! The shared-memory format spoken between the marker (inside the profiled
//! Python process) and the recorder (the `timeglass` process).
//!
//! One file per marked process, named `<pid>.ring` in the runtime directory.
//! It holds three regions, all made of 8-byte atomics so either side may read
//! while the other writes:
//!
//! * a [`Header`](layout) with the pid, the in-flight request count and the
//!   ring's write cursor;
//! * a table of **thread slots**: for each native thread id, the id of the
//!   request that thread is executing right now, plus a change counter. The
//!   marker rewrites a slot whenever a request's coroutine is resumed or
//!   suspended; the sampler reads it just before each stack walk;
//! * an overwriting multi-producer **event ring** carrying request begin/finish
//!   events (with the request's context), SQL statements and outgoing HTTP calls. Producers never wait: when
//!   nobody reads, old events are overwritten and the reader counts the gap;
//! * a **scope table**: the coroutine of each in-flight request (and of its
//!   child tasks), and whether it is running or suspended, so the sampler
//!   can read a suspended request's await chain.
//!
//! Nothing here makes a system call on the hot path.
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod capture;
mod clock;
pub mod env;
mod event;
mod filename;
mod futex;
mod layout;
pub mod private;
mod records;
mod region;
mod ring;
mod scopes;
mod slots;

pub use capture::{
    frame_bytes, Alloc, Call, Query, StackFrame, StackRef, MAX_ERROR_BYTES, MAX_PARAMS_BYTES,
    MAX_SQL_BYTES, MAX_STACK_BYTES,
};
pub use clock::monotonic_ns;
pub use event::{
    truncate_str, DecodeError, Event, Gc, RequestContext, RequestEnd, RequestStart, END_CANCELLED,
    END_ERROR, END_NO_RESPONSE, MAX_BODY_BYTES, MAX_HEADER_BYTES, PHASE_HANDLER, PHASE_REQUEST,
    PHASE_RESPONSE,
};
pub use filename::{is_library_file, short_filename};
pub use layout::{Geometry, FORMAT_VERSION, MAGIC};
pub use records::{write, RequestBegin, RequestFinish, RequestHeaders, ResponseHeaders};
pub use region::{ring_path, runtime_dir, user_runtime_dir, Region, RegionError, RING_SUFFIX};
pub use ring::{ReadStats, Reader, MAX_RECORD_BYTES};
pub use scopes::{ScopeEntry, ScopeSnapshot};
pub use slots::{SlotReader, SlotSnapshot, ThreadSlot};
