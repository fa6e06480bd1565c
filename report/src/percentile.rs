//! The one percentile definition of TimeGlass: nearest rank.
//!
//! The p-th percentile of n values is the value at rank ⌈p/100 · n⌉ (at
//! least 1) in ascending order: always one of the recorded values, never
//! an interpolation. `timeglass report`, `/api/v1/stats` and every page of
//! the dashboard use this function.

/// A percentile, in thousandths so that p99.9 is exact: `Permille(999)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permille(pub u64);

impl Permille {
    pub const P50: Permille = Permille(500);
    pub const P90: Permille = Permille(900);
    pub const P95: Permille = Permille(950);
    pub const P99: Permille = Permille(990);
    pub const P99_9: Permille = Permille(999);
}

/// The nearest-rank percentile of `sorted` (ascending); `None` when empty.
pub fn nearest_rank<T: Copy>(sorted: &[T], p: Permille) -> Option<T> {
    let n = sorted.len() as u64;
    let rank = (n * p.0.min(1000)).div_ceil(1000).max(1);
    sorted.get(usize::try_from(rank - 1).ok()?).copied()
}

/// [`nearest_rank`] of `values` at each of `ps` (ascending), without
/// sorting them whole: one selection per figure, each in the part above
/// the one before. `values` is reordered.
pub fn nearest_ranks<const N: usize>(values: &mut [u64], ps: [Permille; N]) -> [Option<u64>; N] {
    let n = values.len() as u64;
    let mut out = [None; N];
    let mut from = 0;
    let mut last: Option<(usize, u64)> = None;
    for (slot, p) in out.iter_mut().zip(ps) {
        if n == 0 {
            break;
        }
        let at = usize::try_from((n * p.0.min(1000)).div_ceil(1000).max(1) - 1).unwrap_or(0);
        let value = match last {
            Some((i, v)) if i == at => v,
            _ => {
                let (_, v, _) = values[from..].select_nth_unstable(at - from);
                *v
            }
        };
        *slot = Some(value);
        last = Some((at, value));
        from = at + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_ranks_are_those_of_the_sorted_values() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for n in [0usize, 1, 2, 3, 7, 19, 100, 1000, 1001, 4096] {
            let mut values: Vec<u64> = (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed % 50
                })
                .collect();
            let mut sorted = values.clone();
            sorted.sort_unstable();
            let ps = [Permille::P50, Permille::P95, Permille::P99, Permille(1000)];
            let want = ps.map(|p| nearest_rank(&sorted, p));
            assert_eq!(nearest_ranks(&mut values, ps), want, "{n} values");
        }
    }

    #[test]
    fn nearest_rank_picks_a_recorded_value() {
        let d: Vec<u64> = (1..=100).collect();
        let at = |p| nearest_rank(&d, Permille(p)).unwrap();
        assert_eq!(
            [at(500), at(900), at(950), at(990), at(999), at(1000)],
            [50, 90, 95, 99, 100, 100]
        );
        assert_eq!(nearest_rank(&[7u64], Permille::P99), Some(7));
        assert_eq!(nearest_rank(&[1u64, 2], Permille::P50), Some(1));
        assert_eq!(nearest_rank(&[1u64, 2, 3], Permille::P50), Some(2));
        assert_eq!(nearest_rank::<u64>(&[], Permille::P50), None);
        // 1000 values: p99.9 is the 999th, p99 the 990th.
        let d: Vec<u64> = (1..=1000).collect();
        assert_eq!(nearest_rank(&d, Permille::P99_9), Some(999));
        assert_eq!(nearest_rank(&d, Permille::P99), Some(990));
        assert_eq!(nearest_rank(&d, Permille(0)), Some(1));
    }
}
