//! Tick scheduling with jitter.
//!
//! A fixed period can lock step with periodic work in the target (a 1 ms
//! asyncio timer, say) and then sample the same phase of it every time; py-spy
//! jitters its own timer for the same reason. A small xorshift is plenty:
//! this is about breaking phase, not about statistics.

use std::time::Duration;

pub(crate) struct Jitter {
    state: u64,
}

impl Jitter {
    pub(crate) fn new(seed: u64) -> Self {
        Jitter { state: seed | 1 }
    }

    fn next(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    /// `period` scaled by a uniform factor in [0.8, 1.2): the mean stays the period.
    pub(crate) fn around(&mut self, period: Duration) -> Duration {
        let factor = 0.8 + (self.next() % 4096) as f64 / 4096.0 * 0.4;
        period.mul_f64(factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_bounds_and_averages_to_the_period() {
        let mut j = Jitter::new(42);
        let period = Duration::from_micros(1000);
        let draws: Vec<Duration> = (0..10_000).map(|_| j.around(period)).collect();
        assert!(draws
            .iter()
            .all(|d| *d >= period.mul_f64(0.8) && *d < period.mul_f64(1.2)));
        let mean = draws.iter().sum::<Duration>() / draws.len() as u32;
        assert!(
            (mean.as_secs_f64() / period.as_secs_f64() - 1.0).abs() < 0.01,
            "{mean:?}"
        );
        assert_ne!(draws[0], draws[1]);
    }
}
