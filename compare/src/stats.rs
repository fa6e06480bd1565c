//! The statistical test behind a latency or CPU verdict.
//!
//! A percentile bootstrap of the ratio B/A of a statistic (the p50, the
//! p95 or the mean): both samples are resampled with replacement
//! `resamples` times, the statistic's ratio is taken each time, and the
//! central `confidence` share of those ratios is the confidence interval.
//! B is **slower** only when the whole interval lies above `1 + min_ratio`
//! *and* the point estimates differ by at least `min_abs_us`; **faster**
//! only when the whole interval lies below `1 - min_ratio` and they differ
//! by as much; otherwise the data cannot tell a change that large from
//! noise, and the answer is **same**. A percentile is tested only when
//! each side has at least `min_samples` values beyond it (so the p50 needs
//! 2 × 10 requests, the p95 20 × 10 = 200), the mean when each side has
//! `min_samples`; otherwise the answer is always "same": a bootstrap of a
//! handful of tail values gives intervals far narrower than the truth (a
//! single slow request of 40 moves the p95 by 2x).
//!
//! The generator is seeded, so the same two samples always give the same
//! verdict.

use serde::Serialize;
use timeglass_report::percentile::{nearest_rank, Permille};

/// How sure a verdict must be, and how large a change must be to count.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TestOptions {
    pub resamples: usize,
    /// Of the interval, 0 to 1.
    pub confidence: f64,
    /// The smallest relative change that counts: 0.10 is 10%.
    pub min_ratio: f64,
    /// The smallest absolute change that counts, in microseconds.
    pub min_abs_us: f64,
    pub min_samples: usize,
    pub seed: u64,
}

/// The documented defaults.
pub mod defaults {
    pub const RESAMPLES: usize = 1000;
    pub const CONFIDENCE: f64 = 0.95;
    pub const MIN_RATIO: f64 = 0.10;
    pub const MIN_ABS_US: f64 = 1000.0;
    pub const MIN_SAMPLES: usize = 10;
    pub const SEED: u64 = 0x5449_4d45_474c_4153; // "TIMEGLAS"
}

impl Default for TestOptions {
    fn default() -> TestOptions {
        TestOptions {
            resamples: defaults::RESAMPLES,
            confidence: defaults::CONFIDENCE,
            min_ratio: defaults::MIN_RATIO,
            min_abs_us: defaults::MIN_ABS_US,
            min_samples: defaults::MIN_SAMPLES,
            seed: defaults::SEED,
        }
    }
}

/// Which figure of a sample is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Statistic {
    P50,
    P95,
    Mean,
}

impl Statistic {
    /// Of an ascending sample; `None` when empty.
    fn of_sorted(self, sorted: &[u64]) -> Option<f64> {
        match self {
            Statistic::P50 => nearest_rank(sorted, Permille::P50).map(|v| v as f64),
            Statistic::P95 => nearest_rank(sorted, Permille::P95).map(|v| v as f64),
            Statistic::Mean if sorted.is_empty() => None,
            Statistic::Mean => Some(sorted.iter().sum::<u64>() as f64 / sorted.len() as f64),
        }
    }

    /// Values a side needs for the test: `min_samples` beyond the percentile.
    pub fn needed(self, min_samples: usize) -> usize {
        let min = min_samples.max(1);
        match self {
            Statistic::P50 => min * 2,
            Statistic::P95 => min * 20,
            Statistic::Mean => min,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Statistic::P50 => "p50",
            Statistic::P95 => "p95",
            Statistic::Mean => "mean",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Slower,
    Faster,
    Same,
}

/// The outcome of one test: the point estimates, the ratio's interval and
/// the verdict.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Tested {
    pub statistic: Statistic,
    /// Microseconds; `None` without values.
    pub a: Option<f64>,
    pub b: Option<f64>,
    /// B/A of the point estimates.
    pub ratio: Option<f64>,
    /// The confidence interval of the ratio; `None` with too few values.
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub change: Change,
    /// A change no larger than the one a busier machine alone could cause
    /// (see `compare::LoadShift`): it decides no verdict.
    pub explained_by_load: bool,
}

/// Tests whether `b` differs from `a` in `statistic`.
pub fn test(a: &[u64], b: &[u64], statistic: Statistic, o: &TestOptions) -> Tested {
    let sorted = |v: &[u64]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        v
    };
    let (a, b) = (sorted(a), sorted(b));
    let (pa, pb) = (statistic.of_sorted(&a), statistic.of_sorted(&b));
    let ratio = match (pa, pb) {
        (Some(x), Some(y)) => Some(y / x.max(1.0)),
        _ => None,
    };
    let mut out = Tested {
        statistic,
        a: pa,
        b: pb,
        ratio,
        low: None,
        high: None,
        change: Change::Same,
        explained_by_load: false,
    };
    let needed = statistic.needed(o.min_samples);
    if a.len() < needed || b.len() < needed {
        return out;
    }
    let (low, high) = bootstrap(&a, &b, statistic, o);
    out.low = Some(low);
    out.high = Some(high);
    let diff = pb.unwrap_or(0.0) - pa.unwrap_or(0.0);
    out.change = if low > 1.0 + o.min_ratio && diff >= o.min_abs_us {
        Change::Slower
    } else if high < 1.0 - o.min_ratio && -diff >= o.min_abs_us {
        Change::Faster
    } else {
        Change::Same
    };
    out
}

/// The central `confidence` interval of B/A over resamples.
fn bootstrap(a: &[u64], b: &[u64], statistic: Statistic, o: &TestOptions) -> (f64, f64) {
    let mut rng = SplitMix64(o.seed);
    let mut ratios = Vec::with_capacity(o.resamples.max(1));
    let (mut ra, mut rb) = (Vec::with_capacity(a.len()), Vec::with_capacity(b.len()));
    for _ in 0..o.resamples.max(1) {
        resample(a, &mut ra, &mut rng);
        resample(b, &mut rb, &mut rng);
        let x = statistic.of_sorted(&ra).unwrap_or(0.0).max(1.0);
        let y = statistic.of_sorted(&rb).unwrap_or(0.0);
        ratios.push(y / x);
    }
    ratios.sort_by(f64::total_cmp);
    let tail = (1.0 - o.confidence.clamp(0.0, 1.0)) / 2.0;
    let at = |q: f64| {
        let i = ((ratios.len() - 1) as f64 * q).round() as usize;
        ratios[i.min(ratios.len() - 1)]
    };
    (at(tail), at(1.0 - tail))
}

/// `out` becomes a sorted resample of `from`, with replacement.
fn resample(from: &[u64], out: &mut Vec<u64>, rng: &mut SplitMix64) {
    out.clear();
    out.extend((0..from.len()).map(|_| from[rng.below(from.len())]));
    out.sort_unstable();
}

/// Up to `cap` of `values`, evenly spread over their order: the baseline's
/// sample of an endpoint's requests (in request order, so a slow start or
/// end of a session is represented in proportion).
pub fn spread_sample<T: Copy>(values: &[T], cap: usize) -> Vec<T> {
    if values.len() <= cap {
        return values.to_vec();
    }
    (0..cap).map(|i| values[i * values.len() / cap]).collect()
}

/// SplitMix64 (Steele, Lea and Flood, 2014): a few lines, and its sequence
/// for a seed is fixed here forever, which a generator crate does not
/// promise across versions (`rand`'s `StdRng` says so); a verdict must not
/// change with a dependency update.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by Lemire's multiply-shift.
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` values of a known, skewed distribution: `base` plus a
    /// deterministic spread of up to 40% (a latency-like tail).
    fn sample(n: usize, base: u64, seed: u64) -> Vec<u64> {
        let mut rng = SplitMix64(seed);
        (0..n)
            .map(|_| {
                let u = rng.next() as f64 / u64::MAX as f64;
                base + (base as f64 * 0.4 * u * u) as u64
            })
            .collect()
    }

    #[test]
    fn the_generator_sequence_is_pinned() {
        // The reference values of SplitMix64 seeded with 0.
        let mut rng = SplitMix64(0);
        assert_eq!(rng.next(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(rng.next(), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn identical_distributions_are_the_same() {
        let o = TestOptions::default();
        for seed in 1..=20 {
            let a = sample(200, 20_000, seed);
            let b = sample(200, 20_000, seed + 100);
            for stat in [Statistic::P50, Statistic::P95, Statistic::Mean] {
                let t = test(&a, &b, stat, &o);
                assert_eq!(t.change, Change::Same, "seed {seed} {stat:?}: {t:?}");
                assert!(t.low.unwrap() <= 1.1 && t.high.unwrap() >= 0.9, "{t:?}");
            }
        }
    }

    #[test]
    fn a_distribution_shifted_2x_is_slower_and_back_is_faster() {
        let o = TestOptions::default();
        let a = sample(300, 10_000, 1);
        let b: Vec<u64> = sample(300, 10_000, 2).iter().map(|v| v * 2).collect();
        for stat in [Statistic::P50, Statistic::P95, Statistic::Mean] {
            let t = test(&a, &b, stat, &o);
            assert_eq!(t.change, Change::Slower, "{stat:?}: {t:?}");
            assert!(t.low.unwrap() > 1.5 && t.high.unwrap() < 2.6, "{t:?}");
            assert_eq!(test(&b, &a, stat, &o).change, Change::Faster);
        }
    }

    #[test]
    fn tiny_samples_and_tiny_changes_are_the_same() {
        let o = TestOptions::default();
        // 2x slower, but 5 values a side cannot tell.
        let t = test(&[10_000; 5], &[20_000; 5], Statistic::P50, &o);
        assert_eq!((t.change, t.low), (Change::Same, None));
        assert_eq!(t.ratio, Some(2.0));
        // 2x, but 40 values leave 2 beyond the p95: too few to tell.
        let b: Vec<u64> = sample(40, 10_000, 2).iter().map(|v| v * 2).collect();
        let t = test(&sample(40, 10_000, 1), &b, Statistic::P95, &o);
        assert_eq!((t.change, t.low), (Change::Same, None));
        // Certainly 3x, but 0.2 ms is below the minimum effect.
        let t = test(&[100; 50], &[300; 50], Statistic::P50, &o);
        assert_eq!(t.change, Change::Same);
        // Certainly 5% slower: below the 10% that counts.
        let a = sample(500, 50_000, 3);
        let b: Vec<u64> = a.iter().map(|v| v + v / 20).collect();
        assert_eq!(test(&a, &b, Statistic::P50, &o).change, Change::Same);
    }

    #[test]
    fn the_same_input_gives_the_same_interval() {
        let (a, b) = (sample(80, 5_000, 7), sample(80, 6_000, 8));
        let o = TestOptions::default();
        assert_eq!(
            test(&a, &b, Statistic::P95, &o),
            test(&a, &b, Statistic::P95, &o)
        );
    }

    #[test]
    fn spread_samples_keep_order_and_cap() {
        let v: Vec<u32> = (0..10).collect();
        assert_eq!(spread_sample(&v, 20), v);
        assert_eq!(spread_sample(&v, 5), [0, 2, 4, 6, 8]);
        assert_eq!(
            spread_sample(&(0..5000).collect::<Vec<u32>>(), 2000).len(),
            2000
        );
    }
}
