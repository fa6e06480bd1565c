//! `<stats>`: the figures of a set of requests, overall or of one endpoint.

use serde::Serialize;
use timeglass_store::{Endpoint, WindowRequest};

use crate::percentile::{nearest_rank, Permille};

/// Response times in milliseconds; nearest-rank percentiles.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
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

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
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

/// A request that counts as a server error.
pub fn is_5xx(r: &WindowRequest) -> bool {
    match r.status {
        Some(s) => s >= 500,
        None => r.errored,
    }
}

impl Stats {
    /// The figures of `requests` over a window of `seconds`.
    pub fn of<'a>(requests: impl IntoIterator<Item = &'a WindowRequest>, seconds: f64) -> Stats {
        let mut durations = Vec::new();
        let (mut e5, mut e4, mut db_us, mut queries, mut n1, mut blocks) = (0, 0, 0, 0, 0, 0);
        let (mut cpu_us, mut measured) = (0u64, 0u64);
        for r in requests {
            durations.push(r.duration_us);
            e5 += u64::from(is_5xx(r));
            e4 += u64::from(matches!(r.status, Some(400..=499)));
            db_us += r.db_us;
            queries += r.queries;
            n1 += u64::from(r.n_plus_one);
            blocks += u64::from(r.loop_blocked);
            if let Some(cpu) = r.cpu_us {
                cpu_us += cpu;
                measured += 1;
            }
        }
        durations.sort_unstable();
        let n = durations.len() as u64;
        let total_us: u64 = durations.iter().sum();
        let per = |x: u64| if n == 0 { 0.0 } else { x as f64 / n as f64 };
        Stats {
            requests: n,
            rps: if seconds > 0.0 {
                n as f64 / seconds
            } else {
                0.0
            },
            latency_ms: latency(&durations, total_us),
            error_rate_5xx: per(e5),
            rate_4xx: per(e4),
            cpu_ms_avg: (measured > 0).then(|| cpu_us as f64 / 1000.0 / measured as f64),
            db_ms_avg: per(db_us) / 1000.0,
            queries_avg: per(queries),
            db_time_share: match total_us {
                0 => 0.0,
                t => (db_us as f64 / t as f64).min(1.0),
            },
            n_plus_one: n1,
            loop_blocks: blocks,
        }
    }
}

fn latency(sorted_us: &[u64], total_us: u64) -> Option<Latency> {
    let ms = |p: Permille| nearest_rank(sorted_us, p).map(|us| us as f64 / 1000.0);
    Some(Latency {
        avg: total_us as f64 / 1000.0 / sorted_us.len().max(1) as f64,
        min: *sorted_us.first()? as f64 / 1000.0,
        p50: ms(Permille::P50)?,
        p90: ms(Permille::P90)?,
        p95: ms(Permille::P95)?,
        p99: ms(Permille::P99)?,
        p99_9: ms(Permille::P99_9)?,
        max: *sorted_us.last()? as f64 / 1000.0,
    })
}

/// One row per endpoint, most requests first, then by route and method.
pub fn per_endpoint(
    endpoints: &[Endpoint],
    requests: &[WindowRequest],
    seconds: f64,
) -> Vec<EndpointStats> {
    let mut groups: Vec<Vec<WindowRequest>> = vec![Vec::new(); endpoints.len()];
    for r in requests {
        groups[r.endpoint as usize].push(*r);
    }
    let mut rows: Vec<EndpointStats> = endpoints
        .iter()
        .zip(groups)
        .filter(|(_, g)| !g.is_empty())
        .map(|(e, g)| EndpointStats {
            method: e.method.clone(),
            route: e.route.clone(),
            stats: Stats::of(&g, seconds),
        })
        .collect();
    rows.sort_by(|a, b| {
        (b.stats.requests, &a.route, &a.method).cmp(&(a.stats.requests, &b.route, &b.method))
    });
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(duration_us: u64, status: Option<u16>) -> WindowRequest {
        WindowRequest {
            endpoint: 0,
            start_ns: 0,
            end_ns: duration_us * 1000,
            duration_us,
            status,
            errored: status.is_none(),
            cpu_us: Some(duration_us / 2),
            db_us: duration_us / 4,
            queries: 2,
            n_plus_one: false,
            loop_blocked: false,
        }
    }

    #[test]
    fn stats_count_statuses_and_use_nearest_rank() {
        let mut rs: Vec<WindowRequest> = (1..=10).map(|i| request(i * 1000, Some(200))).collect();
        rs[0].status = Some(404);
        rs[1].status = Some(503);
        rs[2] = request(3000, None);
        rs[3].n_plus_one = true;
        rs[4].cpu_us = None;
        let s = Stats::of(&rs, 5.0);
        assert_eq!((s.requests, s.rps), (10, 2.0));
        assert_eq!((s.error_rate_5xx, s.rate_4xx), (0.2, 0.1));
        let l = s.latency_ms.unwrap();
        assert_eq!(
            (l.min, l.p50, l.p90, l.p99, l.p99_9, l.max),
            (1.0, 5.0, 9.0, 10.0, 10.0, 10.0)
        );
        assert_eq!(l.avg, 5.5);
        assert_eq!((s.queries_avg, s.n_plus_one), (2.0, 1));
        // CPU over the 9 measured requests: (55 - 5) / 2 ms / 9.
        assert!((s.cpu_ms_avg.unwrap() - 25.0 / 9.0).abs() < 1e-9);
        assert!((s.db_time_share - 0.25).abs() < 0.01);
    }

    #[test]
    fn no_requests_have_no_latency() {
        let s = Stats::of(&[], 10.0);
        assert_eq!((s.requests, s.rps, s.latency_ms), (0, 0.0, None));
        assert_eq!(s.cpu_ms_avg, None);
    }
}
