//! One sampling thread per marked process.

use std::sync::atomic::AtomicBool;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use timeglass_sampler::{
    PySpyOptions, PySpySource, Sample, SampleSink, Sampler, SamplerStats, SourceError,
};
use timeglass_wire::{Region, SlotReader};

use crate::whole::{AlwaysBusy, NoSlots};
use crate::RecorderOptions;

/// What a sampling thread tells the writer.
pub enum Report {
    Attached {
        pid: u32,
        python_version: String,
    },
    Samples(Vec<Sample>),
    Done {
        pid: u32,
        stats: SamplerStats,
        error: Option<SourceError>,
    },
}

/// Batches samples so the channel sees a message every few milliseconds,
/// not one per sample.
struct Batcher<'a> {
    tx: &'a Sender<Report>,
    buf: Vec<Sample>,
    since: Instant,
}

impl Batcher<'_> {
    fn send(&mut self) {
        if !self.buf.is_empty() {
            let _ = self.tx.send(Report::Samples(std::mem::take(&mut self.buf)));
        }
        self.since = Instant::now();
    }
}

impl SampleSink for Batcher<'_> {
    fn sample(&mut self, sample: Sample) {
        self.buf.push(sample);
        if self.buf.len() >= 256 || self.since.elapsed() >= Duration::from_millis(20) {
            self.send();
        }
    }
}

/// Attaches to process `pid` and samples it until it exits or `stop`: with
/// its marker's `region` when it has one, as a whole process otherwise.
pub fn sample_process(
    pid: u32,
    region: Option<Arc<Region>>,
    options: RecorderOptions,
    stop: Arc<AtomicBool>,
    tx: Sender<Report>,
) {
    let mut source = match attach(pid, options.pyspy) {
        Ok(source) => source,
        Err(error) => {
            let _ = tx.send(Report::Done {
                pid,
                stats: SamplerStats::default(),
                error: Some(error),
            });
            return;
        }
    };
    let _ = tx.send(Report::Attached {
        pid,
        python_version: source.python_version(),
    });
    let mut sampler = Sampler::new(options.sampler);
    let mut batcher = Batcher {
        tx: &tx,
        buf: Vec::new(),
        since: Instant::now(),
    };
    let result = match &region {
        Some(region) => sampler.run(
            &mut source,
            &mut SlotReader::new(region),
            region.as_ref(),
            &mut batcher,
            &stop,
        ),
        None => sampler.run(&mut source, &mut NoSlots, &AlwaysBusy, &mut batcher, &stop),
    };
    batcher.send();
    let _ = tx.send(Report::Done {
        pid,
        stats: sampler.stats(),
        error: result.err(),
    });
}

/// The ring file appears while the interpreter is still importing the app;
/// py-spy may not find the interpreter state yet: retry briefly.
pub fn attach(pid: u32, options: PySpyOptions) -> Result<PySpySource, SourceError> {
    let mut tries = 0;
    loop {
        match PySpySource::attach(pid, options) {
            Ok(source) => return Ok(source),
            Err(
                e @ (SourceError::NoSuchProcess { .. }
                | SourceError::PermissionDenied { .. }
                | SourceError::UnsupportedPython { .. }),
            ) => return Err(e),
            Err(e) if tries >= 20 => return Err(e),
            Err(_) => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}
