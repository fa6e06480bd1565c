//! The writer thread: discovery, ring draining, the join, and the store.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use timeglass_join::{Join, JoinOptions};
use timeglass_model::{ProfiledRequest, StackCount, Timeline};
use timeglass_store::{Batch, NewProcess, ProcessExit, ProcessId, ProcessSample, SessionId, Store};
use timeglass_wire::{monotonic_ns, Event, Reader, Region, RegionError, RING_SUFFIX};

use crate::resources::{self, Resources};
use crate::worker::{sample_process, Report};
use crate::{procfs, Follow, Notice, NoticeFn, Progress, RecorderError, RecorderOptions, Summary};

const DISCOVER_EVERY: Duration = Duration::from_millis(100);
const WRITE_EVERY: Duration = Duration::from_millis(100);
/// How far back `attach` takes requests the marker wrote before anyone read
/// its ring: what just happened is why the user attached; a ring of an app
/// that ran for days holds far older requests, of no use without stacks.
pub const HISTORY: Duration = Duration::from_secs(60);

struct Proc {
    /// `None` while the process is sampled as a whole (it has no marker).
    region: Option<Arc<Region>>,
    reader: Reader,
    process_id: Option<ProcessId>,
    sampler: Option<JoinHandle<()>>,
    /// Stops this process's sampler alone.
    stop: Arc<AtomicBool>,
    sampler_done: bool,
    python_version: String,
    requests: u64,
    /// Exited and settled; kept for the final summary.
    reaped: bool,
    /// Its `/proc` files; `None` once they cannot be read (it exited).
    resources: Option<Resources>,
}

pub(crate) struct Writer {
    store: Store,
    session: SessionId,
    options: RecorderOptions,
    notify: NoticeFn,
    stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
    join: Join,
    procs: HashMap<u32, Proc>,
    /// Ring files of processes outside the followed tree.
    ignored: HashSet<u32>,
    /// Processes of the followed tree that are not sampled as a whole
    /// (not Python, or one of `multiprocessing`'s helpers).
    not_sampled: HashSet<u32>,
    /// Events older than this (monotonic ns) are history from before the
    /// recording and are skipped.
    history_from_ns: u64,
    /// The user whose ring files are read: ours under `run`, the attached
    /// app's owner under `attach`. Any other owner's ring is refused.
    ring_owner: u32,
    /// Ring files refused (and said so once each).
    refused: HashSet<u32>,
    tx: Sender<Report>,
    rx: Receiver<Report>,
    /// Finished requests not yet in the store (their process row is not
    /// written yet, or a write failed and will be retried).
    held: Vec<ProfiledRequest>,
    outside: Vec<(u32, StackCount)>,
    /// The same samples at their times, per process.
    outside_timeline: Vec<(u32, Timeline)>,
    /// Resource samples not yet in the store, by pid.
    samples: Vec<(u32, ProcessSample)>,
    summary: Summary,
    /// The request starts last noted in the session, and when.
    noted: (u64, Instant),
    /// The last write failed (said once, until one succeeds).
    store_failing: bool,
}

/// How often the recorder notes it is alive when nothing new arrived.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

impl Writer {
    pub(crate) fn new(
        store: Store,
        session: SessionId,
        options: RecorderOptions,
        notify: NoticeFn,
        stop: Arc<AtomicBool>,
        progress: Arc<Progress>,
    ) -> Writer {
        let (tx, rx) = channel();
        let history_from_ns = match options.follow {
            Follow::Directory => 0,
            Follow::Tree { .. } => monotonic_ns().saturating_sub(HISTORY.as_nanos() as u64),
        };
        let me = timeglass_wire::private::current_uid();
        let ring_owner = match options.follow {
            Follow::Directory => me,
            Follow::Tree { root } => procfs::uid(root).unwrap_or(me),
        };
        let join = Join::with_options(JoinOptions {
            rate_hz: options.sampler.rate_hz,
            n_plus_one: options.n_plus_one,
            loop_block_ns: options.loop_block_ms.saturating_mul(1_000_000),
        });
        Writer {
            store,
            session,
            options,
            notify,
            stop,
            progress,
            join,
            procs: HashMap::new(),
            ignored: HashSet::new(),
            not_sampled: HashSet::new(),
            history_from_ns,
            ring_owner,
            refused: HashSet::new(),
            tx,
            rx,
            held: Vec::new(),
            outside: Vec::new(),
            outside_timeline: vec![],
            samples: Vec::new(),
            summary: Summary::default(),
            noted: (0, Instant::now()),
            store_failing: false,
        }
    }

    pub(crate) fn run(mut self) -> Result<(Summary, Store), RecorderError> {
        let mut last_discover = Instant::now() - DISCOVER_EVERY;
        let mut last_write = Instant::now();
        let mut next_resources = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            if last_discover.elapsed() >= DISCOVER_EVERY {
                self.discover();
                last_discover = Instant::now();
            }
            if Instant::now() >= next_resources {
                self.sample_resources();
                next_resources += resources::EVERY;
                // Behind by more than a tick (a slow write): start afresh.
                next_resources = next_resources.max(Instant::now());
            }
            // Samplers send a batch every 20 ms while busy; when idle this wakes
            // only a few times a second, and for the next resources tick.
            let wait = next_resources.saturating_duration_since(Instant::now());
            self.receive(Some(wait.min(Duration::from_millis(50))));
            self.poll_rings();
            self.reap();
            if last_write.elapsed() >= WRITE_EVERY {
                let done = self.join.finished(monotonic_ns());
                self.held.extend(done);
                self.write();
                last_write = Instant::now();
            }
        }
        self.finish()
    }

    /// Final pass: stop the samplers, read everything left, store it all.
    fn finish(mut self) -> Result<(Summary, Store), RecorderError> {
        self.discover();
        for proc in self.procs.values() {
            proc.stop.store(true, Ordering::Relaxed);
        }
        for proc in self.procs.values_mut() {
            if let Some(handle) = proc.sampler.take() {
                let _ = handle.join();
            }
        }
        self.receive(None);
        self.poll_rings();
        let rest = self.join.flush(None);
        self.held.extend(rest);
        let pids: Vec<u32> = self.procs.keys().copied().collect();
        for pid in pids {
            self.register(pid);
        }
        self.try_write()?;
        for (&pid, proc) in &self.procs {
            if let Some(region) = &proc.region {
                self.summary.lost_events += proc.reader.stats().lost_slots + region.dropped();
            }
            if proc.reaped {
                continue;
            }
            let exit = if procfs::alive(pid) {
                ProcessExit::Running
            } else {
                exit_of(proc)
            };
            if exit == ProcessExit::Crashed {
                self.summary.crashed.push(pid);
            }
            if let Some(id) = proc.process_id {
                self.store.end_process(id)?;
                self.store.set_process_exit(id, exit)?;
            }
        }
        let stats = self.join.stats();
        self.summary.request_samples = stats.request_samples;
        self.summary.outside_samples = stats.outside_samples;
        self.summary.torn_samples = stats.torn_samples;
        self.summary.out_of_window = stats.out_of_window;
        Ok((self.summary, self.store))
    }

    /// Opens ring files that appeared since the last look; when following
    /// a tree none of whose processes has a marker, samples its Python
    /// processes as a whole.
    fn discover(&mut self) {
        let tree = match self.options.follow {
            Follow::Directory => None,
            Follow::Tree { root } => Some(procfs::tree(root)),
        };
        for (pid, path) in ring_files(&self.options.runtime_dir) {
            let known = self.procs.get(&pid).map(|p| p.region.is_some());
            if known == Some(true) || self.ignored.contains(&pid) || self.refused.contains(&pid) {
                continue;
            }
            if let Some(tree) = &tree {
                // A process never joins a tree after it started, so a ring
                // outside it can be ignored for good.
                if !tree.contains(&pid) {
                    self.ignored.insert(pid);
                    continue;
                }
            }
            match Region::open_owned(&path, self.ring_owner) {
                Ok(region) => self.adopt(pid, Some(Arc::new(region))),
                Err(e @ RegionError::Unsafe { .. }) => {
                    self.refused.insert(pid);
                    (self.notify)(Notice::Refused {
                        pid,
                        error: e.to_string(),
                    });
                }
                // Half-written or gone: looked at again next time.
                Err(_) => {}
            }
        }
        if let Some(tree) = tree {
            if !self.procs.values().any(|p| p.region.is_some()) {
                self.sample_unmarked(&tree);
            }
        }
    }

    /// Samples every Python process of `tree` not sampled yet as a whole: a
    /// supervisor (uvicorn `--reload`, gunicorn) and each of its workers.
    fn sample_unmarked(&mut self, tree: &[u32]) {
        for &pid in tree {
            if self.procs.contains_key(&pid) || self.not_sampled.contains(&pid) {
                continue;
            }
            if !procfs::is_python(pid) || procfs::is_helper(pid) {
                self.not_sampled.insert(pid);
                continue;
            }
            self.adopt(pid, None);
            (self.notify)(Notice::Unmarked { pid });
        }
    }

    /// Starts sampling `pid`, with its marker's ring or as a whole process.
    /// A process sampled as a whole whose marker has now started switches
    /// to its ring.
    fn adopt(&mut self, pid: u32, region: Option<Arc<Region>>) {
        let replaced = match self.procs.remove(&pid) {
            Some(mut old) => {
                old.stop.store(true, Ordering::Relaxed);
                if let Some(handle) = old.sampler.take() {
                    let _ = handle.join();
                }
                // Its last reports, the process out of the map: its `Done`
                // must not end the sampler that replaces it.
                self.receive(None);
                Some(old)
            }
            None => {
                self.progress.processes.fetch_add(1, Ordering::Relaxed);
                self.summary.processes += 1;
                None
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = if procfs::alive(pid) {
            let (region, options, stop, tx) = (
                region.clone(),
                self.options.clone(),
                stop.clone(),
                self.tx.clone(),
            );
            std::thread::Builder::new()
                .name(format!("timeglass-sampler-{pid}"))
                .spawn(move || sample_process(pid, region, options, stop, tx))
                .ok()
        } else {
            None
        };
        let sampler_done = sampler.is_none();
        let (process_id, python_version, requests) = match &replaced {
            Some(old) => (old.process_id, old.python_version.clone(), old.requests),
            None => (None, String::new(), 0),
        };
        self.procs.insert(
            pid,
            Proc {
                reader: region
                    .as_deref()
                    .map(Reader::from_oldest)
                    .unwrap_or_default(),
                region,
                process_id,
                sampler,
                stop,
                sampler_done,
                python_version,
                requests,
                reaped: false,
                resources: Resources::open(pid).ok(),
            },
        );
        if replaced.is_some() {
            (self.notify)(Notice::Marked { pid });
        }
    }

    fn receive(&mut self, wait: Option<Duration>) {
        if let Some(wait) = wait {
            match self.rx.recv_timeout(wait) {
                Ok(report) => self.handle(report),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return,
            }
        }
        while let Ok(report) = self.rx.try_recv() {
            self.handle(report);
        }
    }

    fn handle(&mut self, report: Report) {
        match report {
            Report::Samples(samples) => {
                for sample in samples {
                    self.join.sample(sample);
                }
            }
            Report::Rss { pid, readings } => {
                for (ts_ns, bytes) in readings {
                    self.join.rss(pid, ts_ns, bytes);
                }
            }
            Report::Attached {
                pid,
                python_version,
            } => {
                if let Some(proc) = self.procs.get_mut(&pid) {
                    proc.python_version = python_version.clone();
                }
                self.register(pid);
                (self.notify)(Notice::Attached {
                    pid,
                    python_version,
                });
            }
            Report::Done { pid, stats, error } => {
                self.summary.failed_walks += stats.failed_walks;
                self.summary.threads_cpu_ns += stats.threads_cpu_ns;
                self.summary.threads_wait_ns += stats.threads_wait_ns;
                if let Some(proc) = self.procs.get_mut(&pid) {
                    proc.sampler_done = true;
                }
                if let Some(error) = error {
                    if procfs::alive(pid) {
                        (self.notify)(Notice::AttachFailed {
                            pid,
                            error: error.to_string(),
                        });
                    }
                }
            }
        }
    }

    fn poll_rings(&mut self) {
        for (&pid, proc) in &mut self.procs {
            let Some(region) = &proc.region else {
                continue;
            };
            let join = &mut self.join;
            let from = self.history_from_ns;
            proc.reader.poll(region, |kind, bytes| {
                let Ok(event) = Event::decode(kind, bytes) else {
                    return;
                };
                for part in event.into_parts() {
                    match part {
                        Event::RequestStart(s) if s.ts_ns < from => {}
                        Event::RequestEnd(e) if e.ts_ns < from => {}
                        part => join.event(pid, part),
                    }
                }
            });
        }
    }

    /// Processes that exited: read their last events and settle their requests.
    fn reap(&mut self) {
        let gone: Vec<u32> = self
            .procs
            .iter()
            .filter(|(pid, p)| !p.reaped && p.sampler_done && !procfs::alive(**pid))
            .map(|(pid, _)| *pid)
            .collect();
        for pid in gone {
            let Some(proc) = self.procs.get_mut(&pid) else {
                continue;
            };
            proc.reaped = true;
            if let Some(handle) = proc.sampler.take() {
                let _ = handle.join();
            }
            self.receive(None);
            self.poll_rings();
            let done = self.join.flush(Some(pid));
            self.held.extend(done);
            self.register(pid);
            self.write();
            let Some(proc) = self.procs.get_mut(&pid) else {
                continue;
            };
            let exit = exit_of(proc);
            if let Some(region) = &proc.region {
                // The marker removes its file at exit; after a crash we do.
                let _ = std::fs::remove_file(region.path());
            }
            if let Some(id) = proc.process_id {
                let _ = self.store.end_process(id);
                let _ = self.store.set_process_exit(id, exit);
            }
            let requests = proc.requests;
            if exit == ProcessExit::Crashed {
                self.summary.crashed.push(pid);
                (self.notify)(Notice::Crashed { pid, requests });
            } else {
                (self.notify)(Notice::Exited { pid, requests });
            }
        }
    }

    /// Writes the process row of `pid` if it is not written yet.
    fn register(&mut self, pid: u32) {
        let Some(proc) = self.procs.get_mut(&pid) else {
            return;
        };
        if proc.process_id.is_some() {
            return;
        }
        let new = NewProcess {
            pid,
            command_line: procfs::cmdline(pid),
            python_version: Some(proc.python_version.clone()).filter(|v| !v.is_empty()),
        };
        match self.store.add_process(self.session, &new) {
            Ok(id) => proc.process_id = Some(id),
            Err(e) => (self.notify)(Notice::StoreFailed {
                error: e.to_string(),
            }),
        }
    }

    /// Like [`Self::try_write`]; on failure says so and keeps everything
    /// to retry at the next write.
    /// One resources tick of every live process (see `resources.rs`).
    fn sample_resources(&mut self) {
        let ts_ns = monotonic_ns();
        for (&pid, proc) in &mut self.procs {
            if proc.reaped {
                continue;
            }
            let Some(resources) = proc.resources.as_mut() else {
                continue;
            };
            // A process without a marker is sampled all the time anyway.
            let (busy, request_id) = match &proc.region {
                Some(region) => (region.inflight() > 0, region.records_written()),
                None => (true, 0),
            };
            match resources.tick(busy, request_id, ts_ns) {
                Ok(Some(sample)) => self.samples.push((pid, sample)),
                Ok(None) => {}
                // Gone: its /proc files went with it.
                Err(_) => proc.resources = None,
            }
        }
    }

    /// Writes what is ready; says once when the store starts failing and
    /// once when it works again, not every 100 ms in between.
    fn write(&mut self) {
        match self.try_write().and_then(|()| self.note_progress()) {
            Ok(()) if self.store_failing => {
                self.store_failing = false;
                (self.notify)(Notice::StoreRecovered {
                    unstored: self.summary.unstored_requests,
                });
            }
            Ok(()) => {}
            Err(e) if !self.store_failing => {
                self.store_failing = true;
                (self.notify)(Notice::StoreFailed {
                    error: e.to_string(),
                });
            }
            Err(_) => {}
        }
    }

    /// After a write: how many request starts were read, so that a
    /// recorder killed now leaves a count of what it had not stored yet.
    fn note_progress(&mut self) -> Result<(), RecorderError> {
        let seen = self.join.stats().requests_started;
        let (noted, at) = self.noted;
        if seen == noted && at.elapsed() < PROGRESS_EVERY {
            return Ok(());
        }
        self.store.record_progress(self.session, seen)?;
        self.noted = (seen, Instant::now());
        Ok(())
    }

    /// Stores held requests whose process row exists, and outside samples.
    /// What cannot be written stays held.
    fn try_write(&mut self) -> Result<(), RecorderError> {
        self.outside.extend(self.join.take_outside());
        self.outside_timeline
            .extend(self.join.take_outside_timeline());
        let ids: HashMap<u32, ProcessId> = self
            .procs
            .iter()
            .filter_map(|(pid, p)| Some((*pid, p.process_id?)))
            .collect();
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|r| ids.contains_key(&r.request.pid));
        let (outside_ready, outside_waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.outside)
            .into_iter()
            .partition(|(pid, _)| ids.contains_key(pid));
        let (samples_ready, samples_waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.samples)
            .into_iter()
            .partition(|(pid, _)| ids.contains_key(pid));
        let (timeline_ready, timeline_waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.outside_timeline)
                .into_iter()
                .partition(|(pid, _)| ids.contains_key(pid));
        self.held = waiting;
        self.outside = outside_waiting;
        self.outside_timeline = timeline_waiting;
        self.samples = samples_waiting;
        if ready.is_empty()
            && outside_ready.is_empty()
            && samples_ready.is_empty()
            && timeline_ready.is_empty()
        {
            return Ok(());
        }
        // Requests move into the batch (and back if it fails): each holds
        // every statement of its request, too much to copy.
        let batch = Batch {
            session: self.session,
            requests: ready
                .into_iter()
                .map(|r| (ids[&r.request.pid], r))
                .collect(),
            outside: outside_ready
                .iter()
                .map(|(pid, s)| (ids[pid], s.clone()))
                .collect(),
            outside_timeline: timeline_ready
                .into_iter()
                .map(|(pid, t)| (ids[&pid], t))
                .collect(),
            process_samples: samples_ready
                .iter()
                .map(|(pid, s)| (ids[pid], *s))
                .collect(),
        };
        match self.store.write(&batch) {
            Ok(()) => {
                for (_, r) in &batch.requests {
                    if let Some(proc) = self.procs.get_mut(&r.request.pid) {
                        proc.requests += 1;
                    }
                }
                let written = batch.requests.len() as u64;
                self.summary.requests += written;
                self.progress.requests.fetch_add(written, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.held.extend(batch.requests.into_iter().map(|(_, r)| r));
                self.outside.extend(outside_ready);
                let pids: HashMap<ProcessId, u32> = ids.iter().map(|(p, id)| (*id, *p)).collect();
                self.outside_timeline.extend(
                    batch
                        .outside_timeline
                        .into_iter()
                        .map(|(id, t)| (pids[&id], t)),
                );
                self.samples.extend(samples_ready);
                self.bound_held();
                Err(e.into())
            }
        }
    }
}

/// Requests kept in memory while the store cannot be written (a full disk,
/// a lock held too long): minutes of a busy app, some hundreds of MB at
/// most. Beyond it the oldest are dropped and counted, so the recorder's
/// memory stays bounded however long the store fails.
const MAX_HELD: usize = 50_000;
/// The same for outside-request stacks and resource samples.
const MAX_HELD_SAMPLES: usize = 200_000;

impl Writer {
    fn bound_held(&mut self) {
        if self.held.len() > MAX_HELD {
            let excess = self.held.len() - MAX_HELD;
            self.held.drain(..excess);
            self.summary.unstored_requests += excess as u64;
        }
        if self.outside.len() > MAX_HELD_SAMPLES {
            let excess = self.outside.len() - MAX_HELD_SAMPLES;
            self.outside.drain(..excess);
        }
        // Each entry is one process's samples of one write (~100 ms).
        let mut ticks: usize = self.outside_timeline.iter().map(|t| t.1.ticks.len()).sum();
        while ticks > MAX_HELD_SAMPLES && !self.outside_timeline.is_empty() {
            ticks -= self.outside_timeline.remove(0).1.ticks.len();
        }
        if self.samples.len() > MAX_HELD_SAMPLES {
            let excess = self.samples.len() - MAX_HELD_SAMPLES;
            self.samples.drain(..excess);
        }
    }
}

/// How a process that is gone ended. The marker removes its ring file when
/// the server finishes its lifespan shutdown and when the interpreter exits
/// normally: a file still there means it got to neither, and a request still
/// counted in flight was cut off.
fn exit_of(proc: &Proc) -> ProcessExit {
    match &proc.region {
        Some(region) if region.path().exists() || region.inflight() > 0 => ProcessExit::Crashed,
        Some(_) => ProcessExit::Clean,
        None => ProcessExit::Unknown,
    }
}

/// `(pid, path)` of every ring file in `dir`.
fn ring_files(dir: &std::path::Path) -> Vec<(u32, std::path::PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry
                .file_name()
                .to_str()?
                .strip_suffix(RING_SUFFIX)?
                .parse::<u32>()
                .ok()?;
            Some((pid, entry.path()))
        })
        .collect()
}
