//! The endpoint view's leak hint: does the process's resident memory at the
//! end of an endpoint's requests keep climbing?
//!
//! A Mann-Kendall trend test over the RSS at the end of the endpoint's
//! requests in its busiest process, in the order they started (at least
//! [`MIN_REQUESTS`]), plus a minimum climb, so that a process that settles
//! after warming up, or wobbles by a few pages, is not flagged. RSS is the
//! whole process's: another endpoint leaking while this one is called
//! climbs here too, which is why the hint comes with this endpoint's own
//! top allocation sites.

use std::collections::HashMap;

use serde::Serialize;
use timeglass_model::StackCount;

/// Fewer requests than this are not tested.
pub(crate) const MIN_REQUESTS: usize = 50;
/// The most recent requests tested at most (the test is quadratic).
const MAX_REQUESTS: usize = 2_000;
/// One-sided z of the trend statistic: about 1 in 700 by chance.
const MIN_Z: f64 = 3.0;
/// The last fifth's median must be this far above the first fifth's.
const MIN_RISE_BYTES: i64 = 1 << 20;
/// Allocation sites shown with the hint.
const SITES: usize = 5;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct LeakHint {
    /// Requests tested (of the busiest process).
    pub requests: u64,
    /// Median RSS at the end of the last fifth of them minus that of the first fifth.
    pub rise_bytes: i64,
    /// The trend statistic's z score.
    pub z: f64,
    /// Where the endpoint allocates most (empty when allocations were not sampled).
    pub sites: Vec<Site>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Site {
    /// `function (file:line)` of the innermost frame.
    pub frame: String,
    pub bytes: u64,
}

/// The hint for an endpoint whose requests ended at `ends` (`(process, RSS)`
/// in start order), with its allocation stacks; `None` when RSS does not climb.
pub(crate) fn hint(ends: &[(i64, u64)], alloc_stacks: &[StackCount]) -> Option<LeakHint> {
    let busiest = busiest_process(ends)?;
    let series: Vec<u64> = ends
        .iter()
        .filter(|(p, _)| *p == busiest)
        .map(|&(_, rss)| rss)
        .collect();
    let series = &series[series.len().saturating_sub(MAX_REQUESTS)..];
    if series.len() < MIN_REQUESTS {
        return None;
    }
    let z = mann_kendall_z(series);
    let fifth = series.len() / 5;
    let rise = median(&series[series.len() - fifth..]) as i64 - median(&series[..fifth]) as i64;
    (z >= MIN_Z && rise >= MIN_RISE_BYTES).then(|| LeakHint {
        requests: series.len() as u64,
        rise_bytes: rise,
        z,
        sites: top_sites(alloc_stacks),
    })
}

fn busiest_process(ends: &[(i64, u64)]) -> Option<i64> {
    let mut counts: HashMap<i64, usize> = HashMap::new();
    for (p, _) in ends {
        *counts.entry(*p).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|&(p, n)| (n, -p))
        .map(|(p, _)| p)
}

/// Mann-Kendall's S over `x`, as a z score (continuity-corrected; ties
/// count as neither up nor down, and the variance is not corrected for
/// them, which only makes the test stricter).
fn mann_kendall_z(x: &[u64]) -> f64 {
    let n = x.len() as f64;
    let mut s: i64 = 0;
    for (i, a) in x.iter().enumerate() {
        for b in &x[i + 1..] {
            s += (b > a) as i64 - (b < a) as i64;
        }
    }
    let var = n * (n - 1.0) * (2.0 * n + 5.0) / 18.0;
    match s {
        0 => 0.0,
        s if s > 0 => (s as f64 - 1.0) / var.sqrt(),
        s => (s as f64 + 1.0) / var.sqrt(),
    }
}

fn median(x: &[u64]) -> u64 {
    let mut v = x.to_vec();
    v.sort_unstable();
    v[v.len() / 2]
}

/// Bytes by innermost frame, most first.
fn top_sites(stacks: &[StackCount]) -> Vec<Site> {
    let mut by_frame: HashMap<String, u64> = HashMap::new();
    for s in stacks {
        let Some(leaf) = s.stack.iter().rev().find(|f| !f.is_synthetic()) else {
            continue;
        };
        let frame = format!("{} ({}:{})", leaf.name, leaf.short, leaf.line);
        *by_frame.entry(frame).or_default() += s.samples;
    }
    let mut sites: Vec<Site> = by_frame
        .into_iter()
        .map(|(frame, bytes)| Site { frame, bytes })
        .collect();
    sites.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.frame.cmp(&b.frame)));
    sites.truncate(SITES);
    sites
}

#[cfg(test)]
mod tests {
    use super::*;
    use timeglass_model::Frame;

    const MIB: u64 = 1 << 20;

    /// A deterministic wobble of ±2 MiB.
    fn wobble(i: u64) -> u64 {
        (i * 7_919 % 17) * MIB / 4
    }

    #[test]
    fn a_climbing_rss_is_a_leak_and_a_wobbling_one_is_not() {
        let climbing: Vec<(i64, u64)> = (0..60)
            .map(|i| (1, 100 * MIB + i * MIB / 4 + wobble(i)))
            .collect();
        let leak = hint(&climbing, &[]).unwrap();
        assert_eq!(leak.requests, 60);
        assert!(
            leak.z > 5.0 && leak.rise_bytes > 10 * MIB as i64,
            "{leak:?}"
        );
        let flat: Vec<(i64, u64)> = (0..60).map(|i| (1, 100 * MIB + wobble(i))).collect();
        assert_eq!(hint(&flat, &[]), None);
        assert_eq!(hint(&climbing[..49], &[]), None, "too few requests");
    }

    #[test]
    fn a_small_climb_is_not_flagged_and_only_the_busiest_process_counts() {
        let pages: Vec<(i64, u64)> = (0..80).map(|i| (1, 100 * MIB + i * 4096)).collect();
        assert_eq!(hint(&pages, &[]), None, "320 KiB over 80 requests");
        let mut two: Vec<(i64, u64)> = (0..60).map(|i| (1, 100 * MIB + wobble(i))).collect();
        two.extend((0..40).map(|i| (2, 50 * MIB + i * MIB)));
        assert_eq!(hint(&two, &[]), None, "process 2 climbs, but served fewer");
    }

    #[test]
    fn sites_are_the_innermost_frames_by_bytes() {
        let frame = |name: &str, line| Frame {
            name: name.into(),
            filename: format!("/srv/{name}.py").into(),
            short: format!("{name}.py").into(),
            line,
        };
        let stacks = vec![
            StackCount {
                stack: vec![frame("handler", 3), frame("leak_some", 9)].into(),
                samples: 5 * MIB,
            },
            StackCount {
                stack: vec![frame("handler", 4)].into(),
                samples: MIB,
            },
            StackCount {
                stack: vec![frame("other", 1), frame("leak_some", 9)].into(),
                samples: MIB,
            },
        ];
        let sites = top_sites(&stacks);
        assert_eq!(sites[0].frame, "leak_some (leak_some.py:9)");
        assert_eq!(sites[0].bytes, 6 * MIB);
        assert_eq!(sites.len(), 2);
    }
}
