//! Time series for the dashboard's charts: per time bucket, requests per
//! second, latency percentiles, requests in flight, and the processes'
//! CPU and memory.

use serde::Serialize;
use timeglass_store::{ProcessSamples, Timing};

use crate::percentile::{nearest_ranks, Permille};
use crate::process::app_samples;
use crate::Selection;

/// Columns of equal length, one entry per bucket; `t` is each bucket's
/// start in Unix seconds (uPlot's x axis). Latencies are `None` in a
/// bucket without requests.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Series {
    pub bucket_seconds: f64,
    pub t: Vec<f64>,
    pub rps: Vec<f64>,
    pub p50_ms: Vec<Option<f64>>,
    pub p95_ms: Vec<Option<f64>>,
    pub p99_ms: Vec<Option<f64>>,
    /// Most requests in flight at once during the bucket.
    pub in_flight: Vec<u64>,
    /// The app's CPU (100 = one core) and resident memory, from its
    /// processes' samples: `t` in Unix seconds per sample slot.
    pub process_t: Vec<f64>,
    pub cpu_percent: Vec<f64>,
    pub rss_mb: Vec<f64>,
}

/// Bucket lengths to choose from, in seconds.
const STEPS: &[u64] = &[
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400,
];

impl Series {
    /// At most about `max_buckets` buckets over the selection's span;
    /// `timeline` is its requests in start order.
    pub fn of(
        sel: &Selection,
        timeline: &[Timing],
        processes: &[ProcessSamples],
        max_buckets: u64,
    ) -> Series {
        let span = sel.span;
        let seconds = span
            .end_ns
            .saturating_sub(span.start_ns)
            .div_ceil(1_000_000_000)
            .max(1);
        let step = STEPS
            .iter()
            .copied()
            .find(|s| seconds.div_ceil(*s) <= max_buckets.max(1))
            .unwrap_or(86400);
        let step_ns = step * 1_000_000_000;
        let n = usize::try_from(seconds.div_ceil(step)).unwrap_or(1).max(1);
        let mut durations: Vec<Vec<u64>> = vec![Vec::new(); n];
        for r in timeline {
            let i = (r.start_ns.saturating_sub(span.start_ns) / step_ns) as usize;
            durations[i.min(n - 1)].push(r.duration_us);
        }
        let unix_s = |mono: u64| sel.session.clock.unix_ns_at(mono) as f64 / 1e9;
        let mut out = Series {
            bucket_seconds: step as f64,
            in_flight: in_flight(timeline, span.start_ns, step_ns, n),
            ..Series::default()
        };
        for (i, mut d) in durations.into_iter().enumerate() {
            // Three ranks of a bucket: selections, not a sort of the bucket.
            let [p50, p95, p99] =
                nearest_ranks(&mut d, [Permille::P50, Permille::P95, Permille::P99])
                    .map(|us| us.map(|us| us as f64 / 1000.0));
            out.t.push(unix_s(span.start_ns + i as u64 * step_ns));
            out.rps.push(d.len() as f64 / step as f64);
            out.p50_ms.push(p50);
            out.p95_ms.push(p95);
            out.p99_ms.push(p99);
        }
        for s in app_samples(processes) {
            out.process_t.push(unix_s(s.ts_ns));
            out.cpu_percent.push(s.cpu_percent);
            out.rss_mb.push(s.rss_bytes as f64 / (1024.0 * 1024.0));
        }
        out
    }
}

/// Per bucket, the most requests in flight at once (a request counts in
/// every bucket it spans). `requests` are in start order.
fn in_flight(requests: &[Timing], start: u64, step: u64, n: usize) -> Vec<u64> {
    let mut ends: Vec<u64> = requests.iter().map(|r| r.end_ns).collect();
    // Nearly in order already: the stable sort merges the runs it finds.
    ends.sort();
    // Starts and ends merged in time order; an end before a start at the
    // same time.
    let mut events = Events {
        starts: requests.iter().map(|r| r.start_ns).peekable(),
        ends: ends.into_iter().peekable(),
    }
    .peekable();
    let mut peak = vec![0u64; n];
    let mut now: i64 = 0;
    for (i, p) in peak.iter_mut().enumerate() {
        // Carried in from the previous bucket.
        *p = now.max(0) as u64;
        let end = start + (i as u64 + 1) * step;
        while let Some((_, delta)) = events.next_if(|(t, _)| *t < end || i == n - 1) {
            now += delta;
            *p = (*p).max(now.max(0) as u64);
        }
    }
    peak
}

/// Two ascending lists of times as one stream of `(time, +1 | -1)`.
struct Events<S: Iterator<Item = u64>, E: Iterator<Item = u64>> {
    starts: std::iter::Peekable<S>,
    ends: std::iter::Peekable<E>,
}

impl<S: Iterator<Item = u64>, E: Iterator<Item = u64>> Iterator for Events<S, E> {
    type Item = (u64, i64);

    fn next(&mut self) -> Option<(u64, i64)> {
        match (self.starts.peek(), self.ends.peek()) {
            (Some(s), Some(e)) if e <= s => self.ends.next().map(|t| (t, -1)),
            (Some(_), _) => self.starts.next().map(|t| (t, 1)),
            (None, _) => self.ends.next().map(|t| (t, -1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start_ms: u64, duration_ms: u64) -> Timing {
        Timing {
            start_ns: start_ms * 1_000_000,
            end_ns: (start_ms + duration_ms) * 1_000_000,
            duration_us: duration_ms * 1000,
        }
    }

    #[test]
    fn in_flight_carries_long_requests_across_buckets() {
        // One request spans seconds 0-2; two overlap in second 1.
        let rs = [at(100, 2500), at(1200, 100), at(1250, 100)];
        assert_eq!(in_flight(&rs, 0, 1_000_000_000, 4), [1, 3, 1, 0]);
    }
}
