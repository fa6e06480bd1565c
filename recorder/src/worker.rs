//! One sampling thread per marked process.

use std::sync::atomic::AtomicBool;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use timeglass_sampler::{
    procfs, PySpyOptions, PySpySource, Sample, SampleSink, Sampler, SamplerStats, SourceError,
};
use timeglass_wire::{monotonic_ns, Region, SlotReader};

use crate::whole::{AlwaysBusy, NoSlots};
use crate::RecorderOptions;

/// What a sampling thread tells the writer.
pub(crate) enum Report {
    Attached {
        pid: u32,
        python_version: String,
    },
    Samples(Vec<Sample>),
    /// Readings of the process's resident memory: `(monotonic ns, bytes)`.
    Rss {
        pid: u32,
        readings: Vec<(u64, u64)>,
    },
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
    rss: Rss,
}

impl Batcher<'_> {
    fn send(&mut self) {
        if !self.rss.readings.is_empty() {
            let _ = self.tx.send(Report::Rss {
                pid: self.rss.pid,
                readings: std::mem::take(&mut self.rss.readings),
            });
        }
        if !self.buf.is_empty() {
            let _ = self.tx.send(Report::Samples(std::mem::take(&mut self.buf)));
        }
        self.since = Instant::now();
    }

    fn due(&self) -> bool {
        self.buf.len() >= 256 || self.since.elapsed() >= Duration::from_millis(20)
    }
}

impl SampleSink for Batcher<'_> {
    fn sample(&mut self, sample: Sample) {
        self.buf.push(sample);
        if self.due() {
            self.send();
        }
    }

    fn turn(&mut self, busy: bool) {
        if self.rss.turn(busy) && self.due() {
            self.send();
        }
    }
}

/// RSS is read this often while a request is in flight (200 Hz), whatever
/// `--rate` is: each request's start, end and peak come from these.
pub(crate) const RSS_BUSY_EVERY: Duration = Duration::from_millis(5);
/// And this often while none is, so a request that starts has a reading
/// from before it.
const RSS_IDLE_EVERY: Duration = Duration::from_millis(100);

/// The process's resident memory, read from outside (`/proc/PID/statm`,
/// kept open): no cost inside the app.
struct Rss {
    pid: u32,
    statm: Option<procfs::Statm>,
    last: Option<Instant>,
    was_busy: bool,
    readings: Vec<(u64, u64)>,
}

impl Rss {
    fn new(pid: u32) -> Self {
        Rss {
            pid,
            statm: procfs::Statm::open(pid).ok(),
            last: None,
            was_busy: false,
            readings: Vec::new(),
        }
    }

    /// Reads RSS if one is due; whether it did.
    fn turn(&mut self, busy: bool) -> bool {
        let every = if busy { RSS_BUSY_EVERY } else { RSS_IDLE_EVERY };
        // A change between busy and idle is read at once: the first
        // request's start and the last one's end get a reading right there.
        let changed = std::mem::replace(&mut self.was_busy, busy) != busy;
        let due = changed || self.last.is_none_or(|t| t.elapsed() >= every);
        let Some(statm) = self.statm.as_ref().filter(|_| due) else {
            return false;
        };
        self.last = Some(Instant::now());
        match statm.resident_bytes() {
            Some(bytes) => {
                self.readings.push((monotonic_ns(), bytes));
                true
            }
            None => {
                self.statm = None;
                false
            }
        }
    }
}

/// Attaches to process `pid` and samples it until it exits or `stop`: with
/// its marker's `region` when it has one, as a whole process otherwise.
pub(crate) fn sample_process(
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
        rss: Rss::new(pid),
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
pub(crate) fn attach(pid: u32, options: PySpyOptions) -> Result<PySpySource, SourceError> {
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
