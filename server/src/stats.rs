//! The numbers of one endpoint: latency percentiles and a histogram.

use serde::Serialize;
use timeglass_report::percentile::{nearest_rank, Permille};
use timeglass_store::{Breakdown, RouteSample};

/// Bars in a latency histogram.
const BUCKETS: usize = 24;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct RouteStats {
    pub count: u64,
    pub errors: u64,
    /// Share of requests that failed (5xx or no response), 0 to 1.
    pub error_rate: f64,
    pub avg_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub histogram: Vec<Bucket>,
    /// SQL statements per request, on average.
    pub avg_queries: f64,
    /// Share of the summed response time spent waiting on SQL, 0 to 1.
    pub db_share: f64,
    /// Requests flagged as likely N+1s.
    pub n_plus_one: u64,
    /// CPU time per request, over the requests with a time breakdown;
    /// `None` when none has one (recorded before TimeGlass kept it).
    pub avg_cpu_ms: Option<f64>,
    /// Where a request's time went, on average, over the same requests.
    pub avg_breakdown: Option<Breakdown>,
    /// Requests that blocked the event loop.
    pub loop_blocks: u64,
    /// The process's peak RSS during its requests: average and p95 over
    /// those with a reading; `None` when none has one.
    pub rss_peak: Option<Spread>,
    /// Bytes allocated per request, over those whose allocations were
    /// sampled; `None` when none was.
    pub alloc: Option<Spread>,
}

/// The average and nearest-rank p95 of a figure over requests.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub(crate) struct Spread {
    pub requests: u64,
    pub avg: f64,
    pub p95: u64,
}

impl Spread {
    /// `None` for no values; `sorted` ascending.
    pub(crate) fn of(sorted: &[u64]) -> Option<Spread> {
        let p95 = nearest_rank(sorted, Permille(950))?;
        Some(Spread {
            requests: sorted.len() as u64,
            avg: sorted.iter().map(|&v| v as f64).sum::<f64>() / sorted.len() as f64,
            p95,
        })
    }
}

/// Requests whose response time is in `[from_ms, to_ms)` (the last bucket
/// includes its upper bound).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Bucket {
    pub from_ms: f64,
    pub to_ms: f64,
    pub count: u64,
}

impl RouteStats {
    /// `None` for a route without requests.
    pub(crate) fn new(sample: &RouteSample) -> Option<RouteStats> {
        // Zeros throughout mean nothing was sampled in any state, not no CPU.
        let measured = match sample.breakdown.total_ns() > 0 || sample.cpu_ns > 0 {
            true => sample.measured,
            false => 0,
        };
        let d = &sample.durations_us;
        let (&min, &max) = (d.first()?, d.last()?);
        let count = d.len() as u64;
        let ms = |us: u64| us as f64 / 1000.0;
        Some(RouteStats {
            count,
            errors: sample.errors,
            error_rate: sample.errors as f64 / count as f64,
            avg_ms: ms(d.iter().sum::<u64>()) / count as f64,
            p50_ms: ms(percentile(d, 50)),
            p90_ms: ms(percentile(d, 90)),
            p95_ms: ms(percentile(d, 95)),
            p99_ms: ms(percentile(d, 99)),
            max_ms: ms(max),
            histogram: histogram(d, min, max),
            avg_queries: sample.queries as f64 / count as f64,
            db_share: match d.iter().sum::<u64>() {
                0 => 0.0,
                total => (sample.db_us as f64 / total as f64).min(1.0),
            },
            n_plus_one: sample.n_plus_one,
            avg_cpu_ms: (measured > 0).then(|| sample.cpu_ns as f64 / 1e6 / measured as f64),
            avg_breakdown: (measured > 0).then(|| {
                let sum = Breakdown::from_model(&sample.breakdown);
                let per = |ms: f64| ms / measured as f64;
                Breakdown {
                    python_ms: per(sum.python_ms),
                    native_ms: per(sum.native_ms),
                    blocked_ms: per(sum.blocked_ms),
                    gil_wait_ms: per(sum.gil_wait_ms),
                    sql_ms: per(sum.sql_ms),
                    http_ms: per(sum.http_ms),
                    await_ms: per(sum.await_ms),
                    queued_ms: per(sum.queued_ms),
                    gc_ms: per(sum.gc_ms),
                }
            }),
            loop_blocks: sample.loop_blocks,
            rss_peak: Spread::of(&sample.rss_peak_bytes),
            alloc: Spread::of(&sample.alloc_bytes),
        })
    }
}

/// Nearest rank of `sorted` (ascending, not empty): TimeGlass's one
/// percentile definition (`timeglass_report::percentile`), which the
/// store's `route_p95_us` follows too.
pub(crate) fn percentile(sorted: &[u64], p: u64) -> u64 {
    nearest_rank(sorted, Permille(p * 10)).expect("a route's durations are not empty")
}

/// Equal-width buckets, or logarithmic ones when the slowest request is more
/// than 20 times the fastest: latencies have long tails.
fn histogram(sorted: &[u64], min: u64, max: u64) -> Vec<Bucket> {
    let (lo, hi) = (min.max(1) as f64, max.max(1) as f64);
    let log = hi / lo > 20.0;
    let edge = |i: usize| -> f64 {
        let t = i as f64 / BUCKETS as f64;
        match log {
            true => lo * (hi / lo).powf(t),
            false => min as f64 + (max - min) as f64 * t,
        }
    };
    let edges: Vec<f64> = (0..=BUCKETS).map(edge).collect();
    let mut counts = vec![0u64; BUCKETS];
    for &d in sorted {
        let at = edges[1..BUCKETS].partition_point(|&e| e <= d as f64);
        counts[at] += 1;
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(i, count)| Bucket {
            from_ms: edges[i] / 1000.0,
            to_ms: edges[i + 1] / 1000.0,
            count,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let d: Vec<u64> = (1..=100).collect();
        assert_eq!(
            [50, 90, 95, 99, 100].map(|p| percentile(&d, p)),
            [50, 90, 95, 99, 100]
        );
        assert_eq!(percentile(&[7], 95), 7);
        assert_eq!(percentile(&[1, 2], 50), 1);
    }

    #[test]
    fn stats_and_histogram_count_every_request() {
        let sample = RouteSample {
            durations_us: vec![1_000, 2_000, 2_000, 3_000, 100_000],
            rss_peak_bytes: (1..=20).map(|mib| mib << 20).collect(),
            alloc_bytes: vec![],
            errors: 1,
            queries: 12,
            db_us: 54_000,
            n_plus_one: 1,
            measured: 4,
            breakdown: timeglass_model::TimeBreakdown {
                python_ns: 8_000_000,
                sql_ns: 2_000_000,
                ..Default::default()
            },
            cpu_ns: 10_000_000,
            measured_duration_us: 8_000,
            loop_blocks: 1,
            rss_ends: vec![],
        };
        let s = RouteStats::new(&sample).unwrap();
        assert_eq!((s.count, s.errors), (5, 1));
        assert!((s.error_rate - 0.2).abs() < 1e-9);
        assert!((s.avg_ms - 21.6).abs() < 1e-9);
        assert!((s.avg_queries - 2.4).abs() < 1e-9);
        assert!((s.db_share - 0.5).abs() < 1e-9);
        assert_eq!(s.n_plus_one, 1);
        assert_eq!((s.avg_cpu_ms, s.loop_blocks), (Some(2.5), 1));
        let rss = s.rss_peak.unwrap();
        assert_eq!(
            (rss.requests, rss.p95, rss.avg),
            (20, 19 << 20, 10.5 * (1 << 20) as f64)
        );
        let avg = s.avg_breakdown.unwrap();
        assert_eq!((avg.python_ms, avg.sql_ms, avg.blocked_ms), (2.0, 0.5, 0.0));
        for measured in [0, 3] {
            let unmeasured = RouteStats::new(&RouteSample {
                durations_us: vec![1],
                measured,
                ..RouteSample::default()
            })
            .unwrap();
            assert_eq!(
                (unmeasured.avg_cpu_ms, unmeasured.avg_breakdown),
                (None, None)
            );
        }
        assert_eq!((s.p50_ms, s.p99_ms, s.max_ms), (2.0, 100.0, 100.0));
        assert_eq!(s.histogram.len(), BUCKETS);
        assert_eq!(s.histogram.iter().map(|b| b.count).sum::<u64>(), 5);
        assert_eq!(s.histogram.last().unwrap().count, 1);
        assert!(RouteStats::new(&RouteSample::default()).is_none());
        let same = RouteSample {
            durations_us: vec![5_000; 3],
            ..RouteSample::default()
        };
        let s = RouteStats::new(&same).unwrap();
        assert_eq!(s.histogram.iter().map(|b| b.count).sum::<u64>(), 3);
    }
}
