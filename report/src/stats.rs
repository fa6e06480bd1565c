//! `<stats>`: the figures of a set of requests, overall or of one endpoint.

use serde::{Deserialize, Serialize};
use timeglass_store::Totals;

use crate::percentile::{nearest_rank, Permille};

/// Response times in milliseconds; nearest-rank percentiles.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub avg: f64,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub requests: u64,
    /// Requests per second over the window.
    pub rps: f64,
    /// `None` without requests.
    pub latency_ms: Option<Latency>,
    /// Share of requests answered 5xx, or not at all because the app
    /// raised, 0 to 1.
    pub error_rate_5xx: f64,
    /// Share answered 4xx, 0 to 1.
    pub rate_4xx: f64,
    /// CPU time per request, over the requests with a measured CPU time
    /// (`None` when none has one).
    pub cpu_ms_avg: Option<f64>,
    /// Time waiting on SQL per request, and statements per request.
    pub db_ms_avg: f64,
    pub queries_avg: f64,
    /// Share of the summed response time spent waiting on SQL, 0 to 1.
    pub db_time_share: f64,
    /// Requests flagged as likely N+1s.
    pub n_plus_one: u64,
    /// Requests that blocked the event loop.
    pub loop_blocks: u64,
}

/// One endpoint's row: its method and route beside its `<stats>`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EndpointStats {
    pub method: String,
    /// `None` for requests no route matched.
    pub route: Option<String>,
    #[serde(flatten)]
    pub stats: Stats,
}

impl Stats {
    /// The figures of requests summed in `t`, whose response times are
    /// `sorted_us` (ascending), over a window of `seconds`.
    pub fn of(t: &Totals, sorted_us: &[u64], seconds: f64) -> Stats {
        let n = t.requests;
        let per = |x: u64| if n == 0 { 0.0 } else { x as f64 / n as f64 };
        Stats {
            requests: n,
            rps: if seconds > 0.0 {
                n as f64 / seconds
            } else {
                0.0
            },
            latency_ms: latency(t, sorted_us),
            error_rate_5xx: per(t.errors_5xx),
            rate_4xx: per(t.answered_4xx),
            cpu_ms_avg: (t.cpu_measured > 0)
                .then(|| t.cpu_us as f64 / 1000.0 / t.cpu_measured as f64),
            db_ms_avg: per(t.db_us) / 1000.0,
            queries_avg: per(t.queries),
            db_time_share: match t.duration_us {
                0 => 0.0,
                total => (t.db_us as f64 / total as f64).min(1.0),
            },
            n_plus_one: t.n_plus_one,
            loop_blocks: t.loop_blocks,
        }
    }
}

fn latency(t: &Totals, sorted_us: &[u64]) -> Option<Latency> {
    if t.requests == 0 {
        return None;
    }
    let ms = |p: Permille| nearest_rank(sorted_us, p).map(|us| us as f64 / 1000.0);
    Some(Latency {
        avg: t.duration_us as f64 / 1000.0 / t.requests as f64,
        min: t.min_us as f64 / 1000.0,
        p50: ms(Permille::P50)?,
        p90: ms(Permille::P90)?,
        p95: ms(Permille::P95)?,
        p99: ms(Permille::P99)?,
        p99_9: ms(Permille::P99_9)?,
        max: t.max_us as f64 / 1000.0,
    })
}

/// Ascending runs, one after another, merged into one ascending list: the
/// stable sort finds the runs and merges them, without comparing within one.
pub fn merge_sorted(runs: Vec<Vec<u64>>) -> Vec<u64> {
    let mut all: Vec<u64> = runs.into_iter().flatten().collect();
    all.sort();
    all
}

/// One row per endpoint, most requests first, then by route and method.
pub fn sort_endpoints(rows: &mut [EndpointStats]) {
    rows.sort_by(|a, b| {
        (b.stats.requests, &a.route, &a.method).cmp(&(a.stats.requests, &b.route, &b.method))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_divide_the_sums_and_use_nearest_rank() {
        let sorted: Vec<u64> = (1..=10).map(|i| i * 1000).collect();
        let t = Totals {
            requests: 10,
            duration_us: 55_000,
            min_us: 1000,
            max_us: 10_000,
            last_end_ns: 0,
            errors_5xx: 2,
            answered_4xx: 1,
            db_us: 13_750,
            queries: 20,
            n_plus_one: 1,
            loop_blocks: 0,
            cpu_us: 25_000,
            cpu_measured: 9,
        };
        let s = Stats::of(&t, &sorted, 5.0);
        assert_eq!((s.requests, s.rps), (10, 2.0));
        assert_eq!((s.error_rate_5xx, s.rate_4xx), (0.2, 0.1));
        let l = s.latency_ms.unwrap();
        assert_eq!(
            (l.min, l.p50, l.p90, l.p99, l.p99_9, l.max),
            (1.0, 5.0, 9.0, 10.0, 10.0, 10.0)
        );
        assert_eq!(l.avg, 5.5);
        assert_eq!((s.queries_avg, s.n_plus_one), (2.0, 1));
        // CPU over the 9 measured requests.
        assert!((s.cpu_ms_avg.unwrap() - 25.0 / 9.0).abs() < 1e-9);
        assert!((s.db_time_share - 0.25).abs() < 1e-9);
    }

    #[test]
    fn no_requests_have_no_latency() {
        let s = Stats::of(&Totals::default(), &[], 10.0);
        assert_eq!((s.requests, s.rps, s.latency_ms), (0, 0.0, None));
        assert_eq!(s.cpu_ms_avg, None);
    }

    #[test]
    fn runs_merge_into_one_ascending_list() {
        let merged = merge_sorted(vec![vec![1, 5, 9], vec![], vec![2, 3, 10], vec![4]]);
        assert_eq!(merged, [1, 2, 3, 4, 5, 9, 10]);
    }
}
