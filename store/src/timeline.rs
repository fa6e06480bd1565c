//! Samples at their times, as one blob per request (and per process and
//! batch for samples outside any request; schema v13).
//!
//! A row per sample would cost SQLite more than the request's other rows
//! together; a blob of varints costs a few bytes a sample and one insert.
//! The layout, after a format byte (1):
//!
//! * the number of distinct threads, then each thread id;
//! * per sample, in time order: nanoseconds since the previous sample (the
//!   first: since the row's base time), `thread index << 3 | state`, and
//!   the stack id's difference from the previous sample's, zigzag-encoded
//!   (a thread that stays in one stack costs one byte for it).
//!
//! All three are LEB128 varints.

use timeglass_model::State;

const FORMAT: u8 = 1;

/// One sample as stored: its stack is a `stacks` id (0: empty).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stored {
    pub ts_ns: u64,
    pub tid: u32,
    pub state: State,
    pub stack_id: i64,
}

/// Why a blob could not be read: the file is damaged.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Damaged;

const STATES: [State; 6] = [
    State::Python,
    State::Native,
    State::Blocked,
    State::GilWait,
    State::Awaiting,
    State::Queued,
];

fn state_code(state: State) -> u64 {
    STATES.iter().position(|&s| s == state).unwrap_or(0) as u64
}

fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn take(bytes: &[u8], at: &mut usize) -> Result<u64, Damaged> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at).ok_or(Damaged)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(Damaged)
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// `samples` (in time order, none before `base_ns`) as a blob.
pub(crate) fn encode(base_ns: u64, samples: &[Stored]) -> Vec<u8> {
    let mut threads: Vec<u32> = samples.iter().map(|s| s.tid).collect();
    threads.sort_unstable();
    threads.dedup();
    let mut out = Vec::with_capacity(8 + samples.len() * 5);
    out.push(FORMAT);
    put(&mut out, threads.len() as u64);
    for &tid in &threads {
        put(&mut out, u64::from(tid));
    }
    let (mut ts, mut stack) = (base_ns, 0i64);
    for s in samples {
        let thread = threads.binary_search(&s.tid).unwrap_or(0) as u64;
        put(&mut out, s.ts_ns.saturating_sub(ts));
        put(&mut out, thread << 3 | state_code(s.state));
        put(&mut out, zigzag(s.stack_id.wrapping_sub(stack)));
        ts = ts.max(s.ts_ns);
        stack = s.stack_id;
    }
    out
}

/// The samples of a blob [`encode`] wrote with `base_ns`.
pub(crate) fn decode(base_ns: u64, bytes: &[u8]) -> Result<Vec<Stored>, Damaged> {
    if bytes.first() != Some(&FORMAT) {
        return Err(Damaged);
    }
    let mut at = 1;
    let count = take(bytes, &mut at)?;
    let mut threads = Vec::new();
    for _ in 0..count.min(bytes.len() as u64) {
        threads.push(u32::try_from(take(bytes, &mut at)?).map_err(|_| Damaged)?);
    }
    let mut out = Vec::with_capacity(bytes.len() / 4);
    let (mut ts, mut stack) = (base_ns, 0i64);
    while at < bytes.len() {
        ts = ts.checked_add(take(bytes, &mut at)?).ok_or(Damaged)?;
        let tag = take(bytes, &mut at)?;
        stack = stack.wrapping_add(unzigzag(take(bytes, &mut at)?));
        out.push(Stored {
            ts_ns: ts,
            tid: *threads.get((tag >> 3) as usize).ok_or(Damaged)?,
            state: *STATES.get((tag & 7) as usize).ok_or(Damaged)?,
            stack_id: stack,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(ts_ns: u64, tid: u32, state: State, stack_id: i64) -> Stored {
        Stored {
            ts_ns,
            tid,
            state,
            stack_id,
        }
    }

    #[test]
    fn samples_come_back_as_they_went_in_at_a_few_bytes_each() {
        let base = 5_000_000_000;
        let samples: Vec<Stored> = (0..1000u64)
            .map(|i| {
                let state = STATES[(i % 6) as usize];
                let tid = [7, 0, 123_456][(i % 3) as usize];
                stored(
                    base + 1_000_000 * i + i % 7,
                    tid,
                    state,
                    9_000 + (i / 10) as i64,
                )
            })
            .collect();
        let blob = encode(base, &samples);
        assert_eq!(decode(base, &blob), Ok(samples));
        assert!(blob.len() < 6 * 1000, "{} bytes", blob.len());
        assert_eq!(decode(base, &encode(base, &[])), Ok(vec![]));
    }

    #[test]
    fn a_damaged_blob_is_an_error_not_a_panic() {
        let blob = encode(0, &[stored(10, 1, State::Blocked, 4)]);
        // The header is 3 bytes (format, one thread, its id); a cut right
        // after it reads as no samples.
        for cut in (0..3).chain(4..blob.len()) {
            assert_eq!(decode(0, &blob[..cut]), Err(Damaged), "cut at {cut}");
        }
        assert_eq!(
            decode(0, &[1, 0, 5, 0x0f, 0]),
            Err(Damaged),
            "no such thread"
        );
        assert_eq!(decode(0, &[1, 0xff, 0xff]), Err(Damaged));
    }
}
