//! What the app's processes used: CPU and memory summed over its
//! processes, average and peak.

use serde::Serialize;
use timeglass_store::ProcessSamples;

/// Samples of different processes within one slot of this length count as
/// taken together (the recorder samples each process at 10 Hz).
pub const SLOT_NS: u64 = 100_000_000;

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProcessFigures {
    /// Resource samples behind these figures (taken while requests were in
    /// flight); `None` figures without any.
    pub samples: u64,
    /// CPU of all the app's processes together; 100 is one core.
    pub cpu_percent_avg: Option<f64>,
    pub cpu_percent_peak: Option<f64>,
    pub rss_mb_avg: Option<f64>,
    pub rss_mb_peak: Option<f64>,
    pub threads_peak: Option<u32>,
    pub fds_peak: Option<u32>,
}

/// One slot of the app's summed resources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct AppSample {
    pub ts_ns: u64,
    pub cpu_percent: f64,
    pub rss_bytes: u64,
    pub threads: u32,
    pub fds: u32,
}

/// Each slot's figures summed over the processes sampled in it (a
/// process's last sample of the slot), in time order.
pub fn app_samples(processes: &[ProcessSamples]) -> Vec<AppSample> {
    let mut slots: std::collections::BTreeMap<u64, (AppSample, Vec<(i64, AppSample)>)> =
        Default::default();
    for p in processes {
        for s in &p.samples {
            let entry = slots.entry(s.ts_ns / SLOT_NS).or_default();
            let one = AppSample {
                ts_ns: s.ts_ns,
                cpu_percent: s.cpu_percent,
                rss_bytes: s.rss_bytes,
                threads: s.threads,
                fds: s.fds,
            };
            match entry.1.iter_mut().find(|(id, _)| *id == p.process_id) {
                Some((_, last)) => *last = one,
                None => entry.1.push((p.process_id, one)),
            }
        }
    }
    slots
        .into_iter()
        .map(|(slot, (_, per))| {
            per.iter().fold(
                AppSample {
                    ts_ns: slot * SLOT_NS,
                    ..AppSample::default()
                },
                |mut sum, (_, s)| {
                    sum.cpu_percent += s.cpu_percent;
                    sum.rss_bytes += s.rss_bytes;
                    sum.threads += s.threads;
                    sum.fds += s.fds;
                    sum
                },
            )
        })
        .collect()
}

impl ProcessFigures {
    pub fn of(samples: &[AppSample]) -> ProcessFigures {
        let n = samples.len();
        let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
        let avg = |f: &dyn Fn(&AppSample) -> f64| {
            (n > 0).then(|| samples.iter().map(f).sum::<f64>() / n as f64)
        };
        let peak = |f: &dyn Fn(&AppSample) -> f64| samples.iter().map(f).reduce(f64::max);
        ProcessFigures {
            samples: n as u64,
            cpu_percent_avg: avg(&|s| s.cpu_percent),
            cpu_percent_peak: peak(&|s| s.cpu_percent),
            rss_mb_avg: avg(&|s| mb(s.rss_bytes)),
            rss_mb_peak: peak(&|s| mb(s.rss_bytes)),
            threads_peak: samples.iter().map(|s| s.threads).max(),
            fds_peak: samples.iter().map(|s| s.fds).max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use timeglass_store::ProcessSample;

    use super::*;

    fn process(id: i64, samples: &[(u64, f64, u64)]) -> ProcessSamples {
        ProcessSamples {
            process_id: id,
            pid: id as u32,
            samples: samples
                .iter()
                .map(|&(ts_ns, cpu_percent, mb)| ProcessSample {
                    ts_ns,
                    cpu_percent,
                    rss_bytes: mb << 20,
                    threads: 3,
                    fds: 10,
                })
                .collect(),
        }
    }

    #[test]
    fn processes_sampled_together_add_up() {
        let a = process(1, &[(100_000_000, 50.0, 100), (200_000_000, 90.0, 110)]);
        let b = process(2, &[(120_000_000, 30.0, 50), (290_000_000, 40.0, 60)]);
        let app = app_samples(&[a, b]);
        assert_eq!(app.len(), 2);
        assert_eq!((app[0].cpu_percent, app[0].rss_bytes >> 20), (80.0, 150));
        assert_eq!(
            (app[1].cpu_percent, app[1].threads, app[1].fds),
            (130.0, 6, 20)
        );
        let f = ProcessFigures::of(&app);
        assert_eq!(
            (f.cpu_percent_avg, f.cpu_percent_peak),
            (Some(105.0), Some(130.0))
        );
        assert_eq!((f.rss_mb_avg, f.rss_mb_peak), (Some(160.0), Some(170.0)));
        assert_eq!(ProcessFigures::of(&[]).cpu_percent_peak, None);
    }
}
