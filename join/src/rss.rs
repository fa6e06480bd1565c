//! Each request's resident memory, from the recorder's readings of the
//! process's RSS: the reading nearest its start, the one nearest its end,
//! and the highest in between.
//!
//! The start is the last reading before it, unless that one is old and a
//! lower one follows within a reading interval of the start: after an idle
//! spell, the last reading can still hold what the request before freed
//! once it had answered.
//!
//! Readings arrive in time order per process (one reader per process), a
//! little ahead of or behind the marker's events; they are kept until no
//! pending request of the process can need them.
//!
//! A reading taken after another request of the process started tells of
//! that request too: the end of a request is the first reading after it
//! when no request started in between, else the lower of the readings just
//! before and just after its end (a request shorter than the reading
//! interval, followed at once by a big one, must not be charged the big
//! one's memory, and one that frees a big buffer as it ends must not be
//! shown holding it).

use std::collections::{BTreeSet, HashMap, VecDeque};

use timeglass_model::Memory;

/// Readings are kept this long before the oldest pending request's start,
/// so a request whose start event comes late still finds one before it.
const KEEP_BEFORE_NS: u64 = 1_000_000_000;

/// A reading this close to a request's start (a little over the
/// recorder's 5 ms between readings while requests run) tells its start.
const FRESH_NS: u64 = 6_000_000;

/// At most this many readings (about 80 minutes at 200 Hz), and as many
/// starts, per process: a request that never ends must not make the join
/// grow without bound.
const MAX_READINGS: usize = 1 << 20;

#[derive(Default)]
pub(crate) struct Readings {
    by_pid: HashMap<u32, VecDeque<(u64, u64)>>,
    /// When the process's requests started, for as long as its readings are kept.
    starts: HashMap<u32, BTreeSet<u64>>,
}

impl Readings {
    /// One reading: process `pid` had `bytes` resident at `ts_ns`.
    pub(crate) fn push(&mut self, pid: u32, ts_ns: u64, bytes: u64) {
        let readings = self.by_pid.entry(pid).or_default();
        if readings.back().is_some_and(|&(last, _)| ts_ns < last) {
            return;
        }
        if readings.len() >= MAX_READINGS {
            readings.pop_front();
        }
        readings.push_back((ts_ns, bytes));
    }

    /// A request of process `pid` started at `ts_ns`.
    pub(crate) fn started(&mut self, pid: u32, ts_ns: u64) {
        let starts = self.starts.entry(pid).or_default();
        if starts.len() >= MAX_READINGS {
            starts.pop_first();
        }
        starts.insert(ts_ns);
    }

    /// The memory of a request of `pid` that ran over `[start_ns, end_ns]`.
    pub(crate) fn of(&self, pid: u32, start_ns: u64, end_ns: u64) -> Memory {
        let Some(readings) = self.by_pid.get(&pid).filter(|r| !r.is_empty()) else {
            return Memory::default();
        };
        // Index of the first reading after `t`.
        let after = |t: u64| readings.partition_point(|&(ts, _)| ts <= t);
        let first_after_start = after(start_ns);
        let start = match first_after_start.checked_sub(1) {
            // The reading before is old (the process was idle, read at
            // 10 Hz, or went idle at the end of the request before, whose
            // memory Python may free only after its response): memory may
            // have moved since. The lower of it and a reading taken right
            // after the start, before the request can have allocated much.
            Some(i)
                if start_ns - readings[i].0 > FRESH_NS
                    && readings
                        .get(first_after_start)
                        .is_some_and(|&(ts, b)| ts - start_ns <= FRESH_NS && b < readings[i].1) =>
            {
                first_after_start
            }
            Some(i) => i,
            None => 0,
        };
        let first_after_end = after(end_ns);
        let last_before_end = first_after_end.checked_sub(1);
        let next_start = self
            .starts
            .get(&pid)
            .and_then(|s| s.range(end_ns.saturating_add(1)..).next().copied());
        let end = match last_before_end {
            Some(i) if first_after_end == readings.len() => i,
            // Another request started before the next reading: of the two
            // readings around the end, the lower. What the request freed
            // as it ended shows in the one after; what the next request
            // allocated does not show in the one before.
            Some(i) if next_start.is_some_and(|n| n < readings[first_after_end].0) => {
                match readings[i].1 <= readings[first_after_end].1 {
                    true => i,
                    false => first_after_end,
                }
            }
            _ => first_after_end.min(readings.len() - 1),
        };
        let (from, to) = (start.min(end), start.max(end));
        let peak = readings.range(from..=to).map(|&(_, b)| b).max();
        Memory {
            rss_start_bytes: Some(readings[start].1),
            rss_end_bytes: Some(readings[end].1),
            rss_peak_bytes: peak,
            ..Memory::default()
        }
    }

    /// Drops the readings of `pid` older than [`KEEP_BEFORE_NS`] before
    /// `oldest_ns` (the oldest start a pending request of it still has, or
    /// now when none is pending), keeping the last one before it.
    pub(crate) fn trim(&mut self, pid: u32, oldest_ns: u64) {
        let Some(readings) = self.by_pid.get_mut(&pid) else {
            return;
        };
        let keep_from = oldest_ns.saturating_sub(KEEP_BEFORE_NS);
        while readings.len() > 1 && readings[1].0 <= keep_from {
            readings.pop_front();
        }
        if let Some(starts) = self.starts.get_mut(&pid) {
            *starts = starts.split_off(&keep_from);
        }
    }

    pub(crate) fn pids(&self) -> Vec<u32> {
        self.by_pid.keys().copied().collect()
    }

    pub(crate) fn forget(&mut self, pid: u32) {
        self.by_pid.remove(&pid);
        self.starts.remove(&pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const MIB: u64 = 1 << 20;

    fn readings(points: &[(u64, u64)]) -> Readings {
        let mut r = Readings::default();
        for &(ms, mib) in points {
            r.push(1, ms * MS, mib * MIB);
        }
        r
    }

    #[test]
    fn start_end_and_peak_come_from_the_readings_around_the_request() {
        let r = readings(&[(0, 10), (5, 12), (10, 30), (15, 20), (20, 21), (25, 5)]);
        let m = r.of(1, 7 * MS, 17 * MS);
        assert_eq!(
            m.rss_start_bytes,
            Some(12 * MIB),
            "last reading before the start"
        );
        assert_eq!(
            m.rss_end_bytes,
            Some(21 * MIB),
            "first reading after the end"
        );
        assert_eq!(m.rss_peak_bytes, Some(30 * MIB));
        assert_eq!(
            r.of(2, 7 * MS, 17 * MS),
            Memory::default(),
            "another process"
        );
    }

    #[test]
    fn a_request_at_the_edges_of_the_readings_takes_the_nearest() {
        let r = readings(&[(10, 10), (15, 12)]);
        let before = r.of(1, 2 * MS, 4 * MS);
        assert_eq!(
            (
                before.rss_start_bytes,
                before.rss_end_bytes,
                before.rss_peak_bytes
            ),
            (Some(10 * MIB), Some(10 * MIB), Some(10 * MIB))
        );
        let after = r.of(1, 20 * MS, 30 * MS);
        assert_eq!(
            (
                after.rss_start_bytes,
                after.rss_end_bytes,
                after.rss_peak_bytes
            ),
            (Some(12 * MIB), Some(12 * MIB), Some(12 * MIB))
        );
    }

    #[test]
    fn a_request_followed_at_once_by_another_ends_at_the_lower_reading_around_its_end() {
        // A short request over 7-17 ms; the next one starts at 18 ms and
        // allocates 64 MiB before the 20 ms reading.
        let mut r = readings(&[(0, 10), (5, 12), (10, 13), (15, 14), (20, 78)]);
        r.started(1, 7 * MS);
        assert_eq!(
            r.of(1, 7 * MS, 17 * MS).rss_end_bytes,
            Some(78 * MIB),
            "nobody else yet"
        );
        r.started(1, 18 * MS);
        let m = r.of(1, 7 * MS, 17 * MS);
        assert_eq!(m.rss_end_bytes, Some(14 * MIB), "its last reading");
        assert_eq!(m.rss_peak_bytes, Some(14 * MIB));
        // Shorter than the interval, with no reading of its own: the one before it.
        let m = r.of(1, 16 * MS, 17 * MS);
        assert_eq!(m.rss_end_bytes, Some(14 * MIB));
        assert_eq!(m.rss_peak_bytes, Some(14 * MIB));
        // A request that held 64 MiB until just before its end, followed at
        // once by a small one: the reading after its end, taken inside the
        // next one, is its end, and the peak is its own.
        let mut r = readings(&[(0, 10), (5, 74), (10, 74), (15, 74), (20, 12)]);
        r.started(1, 2 * MS);
        r.started(1, 18 * MS);
        let m = r.of(1, 2 * MS, 17 * MS);
        assert_eq!(m.rss_end_bytes, Some(12 * MIB));
        assert_eq!(m.rss_peak_bytes, Some(74 * MIB));
    }

    #[test]
    fn after_an_idle_spell_a_lower_reading_right_after_the_start_is_the_start() {
        // Read at 91 MiB as the request before ended (its 64 MiB buffer not
        // yet freed), then nothing until this request starts at 60 ms; read
        // at once at 61 ms (52 MiB), it then allocates 64 MiB.
        let r = readings(&[(0, 91), (61, 52), (66, 116), (71, 117)]);
        let m = r.of(1, 60 * MS, 70 * MS);
        assert_eq!(m.rss_start_bytes, Some(52 * MIB));
        assert_eq!(m.rss_peak_bytes, Some(117 * MIB));
        // The same, read busy right before the start: that reading stands.
        let r = readings(&[(0, 91), (57, 91), (61, 52), (66, 116), (71, 117)]);
        assert_eq!(r.of(1, 60 * MS, 70 * MS).rss_start_bytes, Some(91 * MIB));
        // An old reading that is lower stands: what came after is the request's.
        let r = readings(&[(0, 40), (61, 52), (66, 116)]);
        assert_eq!(r.of(1, 60 * MS, 70 * MS).rss_start_bytes, Some(40 * MIB));
        // A lower reading too long after the start is not its start.
        let r = readings(&[(0, 91), (68, 52), (73, 116)]);
        assert_eq!(r.of(1, 60 * MS, 70 * MS).rss_start_bytes, Some(91 * MIB));
    }

    #[test]
    fn trimming_keeps_the_last_reading_before_what_is_still_needed() {
        let mut r = readings(&[(0, 1), (500, 2), (1500, 3), (2500, 4)]);
        r.trim(1, 2000 * MS);
        let m = r.of(1, 2000 * MS, 2600 * MS);
        assert_eq!(m.rss_start_bytes, Some(3 * MIB));
        assert_eq!(r.by_pid[&1].len(), 3, "{:?}", r.by_pid[&1]);
        r.push(1, 100 * MS, 9 * MIB);
        assert_eq!(r.by_pid[&1].len(), 3, "a reading out of order is dropped");
    }
}
