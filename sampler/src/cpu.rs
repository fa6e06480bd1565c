//! Whether a thread has run since it was last looked at: its CPU time as
//! the kernel counts it (the first field of `/proc/PID/task/TID/schedstat`,
//! nanoseconds on a CPU; the second is its time runnable but waiting for a
//! CPU) and its run state (`/proc/PID/task/TID/stat`).
//! Each file is opened once and re-read with one `pread` per reading.
//!
//! The kernel brings a thread's count up to date when the thread leaves
//! the CPU, so the count of a sleeping thread is exact, but that of a
//! running one can lag by a scheduler tick: only a thread that is not
//! running and whose count did not move can be known to have stood still.

use crate::procfs::{run_state, TaskFiles};

/// Open `schedstat` and `stat` files of one process's threads.
pub(crate) struct ThreadCpu {
    schedstat: TaskFiles,
    stat: TaskFiles,
}

impl Default for ThreadCpu {
    fn default() -> Self {
        ThreadCpu {
            schedstat: TaskFiles::new("schedstat"),
            stat: TaskFiles::new("stat"),
        }
    }
}

/// One reading of a thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reading {
    /// Nanoseconds on a CPU so far.
    pub cpu_ns: u64,
    /// Nanoseconds runnable, waiting on a run queue for a CPU, so far.
    pub wait_ns: u64,
    /// Running or runnable (`R`) right now.
    pub running: bool,
}

impl ThreadCpu {
    /// Thread `tid` of `pid` now; `None` when the kernel does not say (the
    /// thread is gone, or it keeps no schedstats).
    pub(crate) fn read(&mut self, pid: u32, tid: u32) -> Option<Reading> {
        let mut buf = [0u8; 512];
        let n = self.schedstat.read(pid, tid, &mut buf[..64])?;
        let counts = std::str::from_utf8(&buf[..n]).ok().and_then(|t| {
            let mut fields = t.split_ascii_whitespace().map(str::parse::<u64>);
            Some((fields.next()?.ok()?, fields.next()?.ok()?))
        });
        let n = self.stat.read(pid, tid, &mut buf)?;
        let running = run_state(&buf[..n]).map(|state| state == b'R');
        match (counts, running) {
            (Some((cpu_ns, wait_ns)), Some(running)) => Some(Reading {
                cpu_ns,
                wait_ns,
                running,
            }),
            _ => {
                self.schedstat.forget(tid);
                self.stat.forget(tid);
                None
            }
        }
    }

    /// Closes the files of threads `keep` says no to.
    pub(crate) fn retain(&mut self, keep: impl Fn(u32) -> bool) {
        self.schedstat.retain(&keep);
        self.stat.retain(&keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spinning_thread_gains_cpu_time_and_a_missing_one_has_none() {
        let pid = std::process::id();
        let tid = nix::unistd::gettid().as_raw() as u32;
        let mut cpu = ThreadCpu::default();
        let Some(before) = cpu.read(pid, tid) else {
            panic!("no /proc/{pid}/task/{tid}/schedstat: the kernel keeps no schedstats");
        };
        assert!(before.running, "the calling thread is on a CPU");
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(30) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        std::hint::black_box(x);
        // Going to sleep brings the count up to date.
        std::thread::sleep(std::time::Duration::from_millis(5));
        let after = cpu.read(pid, tid).unwrap();
        // 30 ms of wall time; on a loaded machine the thread may get a
        // fraction of it, but not nothing.
        assert!(
            after.cpu_ns - before.cpu_ns >= 2_000_000,
            "{before:?} -> {after:?}"
        );
        assert!(!after.running || after.cpu_ns > before.cpu_ns);
        assert_eq!(cpu.read(pid, u32::MAX - 3), None);
    }
}
