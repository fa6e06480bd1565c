//! CPU time per thread, as the kernel counts it: the first field of
//! `/proc/PID/task/TID/schedstat` (nanoseconds on a CPU). Each file is
//! opened once and re-read with one `pread` per reading.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Open `schedstat` files of one process's threads.
#[derive(Default)]
pub struct ThreadCpu {
    files: HashMap<u32, Option<File>>,
}

/// More open files than this are closed all at once (threads come and go).
const MAX_FILES: usize = 512;

impl ThreadCpu {
    /// Nanoseconds thread `tid` of `pid` has spent on a CPU; `None` when
    /// the kernel does not say (the thread is gone, or no schedstats).
    pub fn read(&mut self, pid: u32, tid: u32) -> Option<u64> {
        if self.files.len() >= MAX_FILES && !self.files.contains_key(&tid) {
            self.files.clear();
        }
        let file = self
            .files
            .entry(tid)
            .or_insert_with(|| File::open(format!("/proc/{pid}/task/{tid}/schedstat")).ok())
            .as_ref()?;
        let mut buf = [0u8; 64];
        let n = file.read_at(&mut buf, 0).ok()?;
        let text = std::str::from_utf8(&buf[..n]).ok()?;
        let ns = text.split_ascii_whitespace().next()?.parse().ok();
        if ns.is_none() {
            self.files.remove(&tid);
        }
        ns
    }

    /// Closes the files of threads `keep` says no to.
    pub fn retain(&mut self, keep: impl Fn(u32) -> bool) {
        self.files.retain(|tid, _| keep(*tid));
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
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(30) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        std::hint::black_box(x);
        let after = cpu.read(pid, tid).unwrap();
        assert!(after - before >= 15_000_000, "{before} -> {after}");
        assert_eq!(cpu.read(pid, u32::MAX - 3), None);
    }
}
