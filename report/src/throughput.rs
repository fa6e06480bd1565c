//! Requests per second over trailing windows and one-second buckets, and
//! requests in flight.

use serde::Serialize;
use timeglass_store::Timing;

const SECOND: u64 = 1_000_000_000;

/// The time span judged, on the session's monotonic clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start_ns: u64,
    pub end_ns: u64,
}

impl Span {
    pub fn seconds(&self) -> f64 {
        self.end_ns.saturating_sub(self.start_ns) as f64 / 1e9
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Throughput {
    /// Requests that started in the last 1, 5 and 15 minutes of the window,
    /// per second of that part (the whole window when it is shorter).
    pub rps_1m: f64,
    pub rps_5m: f64,
    pub rps_15m: f64,
    /// Most and fewest requests started in one second, over the window's
    /// whole seconds from its start (`None` when it is under a second).
    pub peak_rps_1s: Option<u64>,
    pub min_rps_1s: Option<u64>,
    /// Most requests in flight at once.
    pub peak_concurrency: u64,
}

impl Throughput {
    /// `requests` in start order.
    pub fn of(requests: &[Timing], span: Span) -> Throughput {
        let trailing = |minutes: u64| {
            let len = (minutes * 60 * SECOND).min(span.end_ns.saturating_sub(span.start_ns));
            if len == 0 {
                return 0.0;
            }
            let from = span.end_ns - len;
            let at = requests.partition_point(|r| r.start_ns < from);
            let n = requests[at..]
                .iter()
                .filter(|r| r.start_ns < span.end_ns)
                .count();
            n as f64 / (len as f64 / 1e9)
        };
        let (peak, min) = per_second(requests, span);
        Throughput {
            rps_1m: trailing(1),
            rps_5m: trailing(5),
            rps_15m: trailing(15),
            peak_rps_1s: peak,
            min_rps_1s: min,
            peak_concurrency: peak_in_flight(requests),
        }
    }
}

/// Most and fewest requests started in one of the span's whole seconds,
/// counted from the (sorted) requests alone: a long session of sparse
/// traffic has more seconds than requests.
fn per_second(requests: &[Timing], span: Span) -> (Option<u64>, Option<u64>) {
    let whole = span.end_ns.saturating_sub(span.start_ns) / SECOND;
    if whole == 0 {
        return (None, None);
    }
    let (mut peak, mut min, mut busy) = (0u64, u64::MAX, 0u64);
    let mut current: Option<(u64, u64)> = None;
    let mut close = |count: u64| {
        peak = peak.max(count);
        min = min.min(count);
        busy += 1;
    };
    for r in requests {
        let second = r.start_ns.saturating_sub(span.start_ns) / SECOND;
        if second >= whole {
            break;
        }
        match &mut current {
            Some((s, n)) if *s == second => *n += 1,
            _ => {
                if let Some((_, n)) = current {
                    close(n);
                }
                current = Some((second, 1));
            }
        }
    }
    if let Some((_, n)) = current {
        close(n);
    }
    // A second without any request is the quietest.
    let min = if busy < whole { 0 } else { min };
    (Some(peak), Some(min))
}

/// Most requests in flight at once: a request is in flight from its start
/// to its end (background work included); one ending when another starts
/// does not overlap it.
pub fn peak_in_flight(requests: &[Timing]) -> u64 {
    let mut ends: Vec<u64> = requests.iter().map(|r| r.end_ns).collect();
    // Nearly in order already (requests start in order and most are short):
    // the stable sort finds the runs and merges them.
    ends.sort();
    let (mut peak, mut in_flight, mut ended) = (0u64, 0u64, 0usize);
    // Starts are sorted already (the window's order).
    for r in requests {
        while ended < ends.len() && ends[ended] <= r.start_ns {
            ended += 1;
            in_flight -= 1;
        }
        in_flight += 1;
        peak = peak.max(in_flight);
    }
    peak
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start_s: f64, duration_s: f64) -> Timing {
        Timing {
            start_ns: (start_s * 1e9) as u64,
            end_ns: ((start_s + duration_s) * 1e9) as u64,
            duration_us: (duration_s * 1e6) as u64,
        }
    }

    #[test]
    fn buckets_windows_and_concurrency() {
        // Second 0: 3 requests, second 1: none, second 2: 1; 3.5 s window.
        let rs = [at(0.1, 0.5), at(0.2, 0.1), at(0.6, 0.1), at(2.5, 0.2)];
        let t = Throughput::of(
            &rs,
            Span {
                start_ns: 0,
                end_ns: 3_500_000_000,
            },
        );
        assert_eq!((t.peak_rps_1s, t.min_rps_1s), (Some(3), Some(0)));
        assert!((t.rps_1m - 4.0 / 3.5).abs() < 1e-9);
        assert_eq!(t.rps_1m, t.rps_15m);
        // 0.1-0.6 overlaps 0.2-0.3; 0.6 starts as the first ends.
        assert_eq!(t.peak_concurrency, 2);
        let short = Throughput::of(
            &rs[..1],
            Span {
                start_ns: 0,
                end_ns: 900_000_000,
            },
        );
        assert_eq!((short.peak_rps_1s, short.min_rps_1s), (None, None));
    }

    #[test]
    fn trailing_windows_count_the_end_of_a_long_window() {
        // One request a second for 10 minutes, then 60 in the last minute.
        let mut rs: Vec<Timing> = (0..540).map(|s| at(s as f64, 0.01)).collect();
        rs.extend((0..120).map(|i| at(540.0 + i as f64 / 2.0, 0.01)));
        let t = Throughput::of(
            &rs,
            Span {
                start_ns: 0,
                end_ns: 600 * SECOND,
            },
        );
        assert_eq!(t.rps_1m, 2.0);
        assert!((t.rps_5m - (240.0 + 120.0) / 300.0).abs() < 1e-9);
        assert_eq!(t.rps_15m, 660.0 / 600.0);
        assert_eq!(t.peak_concurrency, 1);
    }
}
