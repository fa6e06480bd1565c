//! Sampling a process that has no marker: a whole-process profile.
//!
//! Without the marker nothing says when a request runs or which thread runs
//! it, so every walk is at the full rate and every sample is charged to no
//! request: they all land in the session's outside-of-request stacks.

use std::time::Duration;

use timeglass_sampler::{Activity, RequestSlots};
use timeglass_wire::SlotSnapshot;

/// Always worth sampling at the full rate.
pub(crate) struct AlwaysBusy;

impl Activity for AlwaysBusy {
    fn busy(&self) -> bool {
        true
    }

    fn wait_busy(&self, _timeout: Duration) -> bool {
        true
    }
}

/// Knows no thread's request.
pub(crate) struct NoSlots;

impl RequestSlots for NoSlots {
    fn read(&mut self, _tid: u32) -> Option<SlotSnapshot> {
        None
    }

    fn tid_of_pthread(&mut self, _pthread_id: u64) -> Option<u32> {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use timeglass_model::Frame;
    use timeglass_sampler::{
        Sample, Sampler, SamplerOptions, SourceError, StackSource, ThreadStack,
    };

    use super::*;

    /// Three busy walks, then the process is gone.
    struct Walks(u32);

    impl StackSource for Walks {
        fn pid(&self) -> u32 {
            7
        }

        fn stacks(&mut self) -> Result<Vec<ThreadStack>, SourceError> {
            self.0 += 1;
            Ok(vec![ThreadStack {
                tid: Some(70),
                pthread_id: 1,
                active: true,
                owns_gil: true,
                on_cpu: None,
                frames: vec![Frame {
                    name: "<module>".into(),
                    filename: "app.py".into(),
                    short: "app.py".into(),
                    line: 1,
                }],
            }])
        }

        fn alive(&self) -> bool {
            self.0 < 3
        }
    }

    #[test]
    fn every_sample_is_outside_any_request_at_the_full_rate() {
        let mut sampler = Sampler::new(SamplerOptions {
            rate_hz: 1000,
            idle_hz: 1,
            wall_clock: true,
        });
        let mut samples: Vec<Sample> = Vec::new();
        let started = std::time::Instant::now();
        sampler
            .run(
                &mut Walks(0),
                &mut NoSlots,
                &AlwaysBusy,
                &mut samples,
                &AtomicBool::new(false),
            )
            .unwrap();
        // At the idle rate (1 Hz) three walks would take two seconds.
        assert!(started.elapsed() < Duration::from_millis(500));
        assert_eq!(samples.len(), 3);
        assert!(samples.iter().all(|s| s.request_id == 0 && s.pid == 7));
    }
}
