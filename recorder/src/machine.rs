//! How busy the machine was while a session recorded, from two kernel
//! counters read at its start and at its end: CPU pressure ("some" of
//! `/proc/pressure/cpu`: microseconds in which a task ready to run waited
//! for a CPU) and steal time (`/proc/stat`: time the hypervisor gave the
//! CPUs to other guests). A response time measured on a busier machine is
//! longer with no change to the code; `timeglass compare` says so. How much
//! the app itself waited for a CPU comes from the sampler's readings of its
//! request threads ([`app_wait`]).

use std::time::Instant;

use timeglass_store::MachineLoad;

/// The counters at one instant; a counter the kernel does not keep is `None`.
#[derive(Clone, Copy, Debug)]
pub struct Counters {
    at: Instant,
    /// `total=` of the `some` line, µs.
    pressure_us: Option<u64>,
    /// (steal, all) jiffies of the `cpu` line.
    steal: Option<(u64, u64)>,
}

impl Counters {
    pub fn read() -> Counters {
        let text = |path: &str| std::fs::read_to_string(path).ok();
        Counters {
            at: Instant::now(),
            pressure_us: text("/proc/pressure/cpu").and_then(|t| pressure_some_us(&t)),
            steal: text("/proc/stat").and_then(|t| steal_jiffies(&t)),
        }
    }

    /// The load between `self` and `later`.
    pub fn until(&self, later: &Counters) -> MachineLoad {
        let wall_us = later.at.saturating_duration_since(self.at).as_micros() as f64;
        let cpu_wait = match (self.pressure_us, later.pressure_us) {
            (Some(a), Some(b)) if wall_us > 0.0 && b >= a => {
                Some(((b - a) as f64 / wall_us).min(1.0))
            }
            _ => None,
        };
        let steal = match (self.steal, later.steal) {
            (Some((s0, t0)), Some((s1, t1))) if t1 > t0 && s1 >= s0 => {
                Some((s1 - s0) as f64 / (t1 - t0) as f64)
            }
            _ => None,
        };
        MachineLoad {
            cpu_wait,
            steal,
            app_wait: None,
        }
    }
}

/// The request threads' wait for a CPU per unit of CPU time they got, from
/// a recording's summary; `None` when they never ran while read.
pub fn app_wait(summary: &crate::Summary) -> Option<f64> {
    (summary.threads_cpu_ns > 0)
        .then(|| summary.threads_wait_ns as f64 / summary.threads_cpu_ns as f64)
}

/// `total=` of the `some` line of `/proc/pressure/cpu`.
fn pressure_some_us(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    line.split_ascii_whitespace()
        .find_map(|field| field.strip_prefix("total="))?
        .parse()
        .ok()
}

/// (steal, sum of all fields) of the aggregate `cpu` line of `/proc/stat`.
/// Guest time is already counted in user time, so it is left out of the sum.
fn steal_jiffies(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_ascii_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]
    let steal = *fields.get(7)?;
    let all = fields.iter().take(8).sum();
    Some((steal, all))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_kernels_counters_parse() {
        let psi = "some avg10=3.30 avg60=4.77 avg300=1.72 total=11476826\n\
                   full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(pressure_some_us(psi), Some(11_476_826));
        assert_eq!(pressure_some_us("full total=3\n"), None);
        let stat = "cpu  17994 0 4026 1437476 374 0 89 1387 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(
            steal_jiffies(stat),
            Some((1387, 17994 + 4026 + 1437476 + 374 + 89 + 1387))
        );
        assert_eq!(steal_jiffies("cpu  1 2 3\n"), None);
        assert_eq!(steal_jiffies("intr 5\n"), None);
    }

    #[test]
    fn load_is_the_counters_change_over_the_wall_time() {
        let t0 = Instant::now();
        let a = Counters {
            at: t0,
            pressure_us: Some(1_000_000),
            steal: Some((100, 10_000)),
        };
        let b = Counters {
            at: t0 + Duration::from_secs(2),
            pressure_us: Some(1_500_000),
            steal: Some((150, 10_500)),
        };
        let load = a.until(&b);
        assert!((load.cpu_wait.unwrap() - 0.25).abs() < 1e-9, "{load:?}");
        assert!((load.steal.unwrap() - 0.10).abs() < 1e-9, "{load:?}");
        // A counter that is missing, or went back (another boot's), says nothing.
        let c = Counters {
            pressure_us: None,
            steal: Some((10, 50)),
            ..b
        };
        assert_eq!(a.until(&c), MachineLoad::default());
    }

    #[test]
    fn this_machine_is_read() {
        let a = Counters::read();
        std::thread::sleep(Duration::from_millis(20));
        let load = a.until(&Counters::read());
        if std::path::Path::new("/proc/pressure/cpu").exists() {
            assert!(load.cpu_wait.is_some_and(|w| (0.0..=1.0).contains(&w)));
        }
        assert!(load.steal.is_some_and(|s| (0.0..=1.0).contains(&s)));
    }
}
