//! Native thread ids for CPython 3.10, whose thread states record only
//! `pthread_self()`.
//!
//! On glibc a `pthread_t` is the address of the thread's `struct pthread`,
//! which holds the kernel tid. Where in it differs between glibc builds, so
//! the offset is not assumed but observed: it is the one (within the first
//! KiB) at which the `struct pthread` of every Python thread seen so far
//! holds a distinct tid of the process's tasks (`/proc/PID/task`). Each scan
//! of the thread list narrows the candidates; while several remain, they
//! agree on every thread seen. When none remains (another C library, torn
//! memory), tids stay unknown, as with py-spy.

use std::collections::HashSet;

use super::memory::{int, Memory};

/// How much of a `struct pthread` is searched.
const SEARCHED: usize = 1024;

/// What is known of where `struct pthread` keeps the tid.
#[derive(Default)]
pub(super) struct PthreadTids {
    /// Offsets consistent with every observation; `None` before the first.
    offsets: Option<Vec<usize>>,
}

impl PthreadTids {
    /// Narrows the candidates with the threads `pthreads` (all the
    /// interpreter's threads, read at one scan).
    pub(super) fn observe(&mut self, memory: &Memory, pthreads: &[usize]) {
        if pthreads.is_empty() || self.offsets.as_ref().is_some_and(|o| o.len() <= 1) {
            return;
        }
        let Some(tasks) = tasks(memory.pid().as_raw()) else {
            return;
        };
        let mut structs = Vec::new();
        for &pthread in pthreads {
            let mut bytes = vec![0u8; SEARCHED];
            if memory.read(&mut [(pthread, &mut bytes[..])]).is_err() {
                return;
            }
            structs.push(bytes);
        }
        let offsets = self
            .offsets
            .take()
            .unwrap_or_else(|| (0..=SEARCHED - 4).step_by(4).collect());
        self.offsets = Some(narrow(offsets, &structs, &tasks));
    }

    /// Whether the threads were observed at least once.
    pub(super) fn observed(&self) -> bool {
        self.offsets.is_some()
    }

    /// The tid of the thread whose `pthread_self()` is `pthread`, when every
    /// remaining candidate offset says the same.
    pub(super) fn tid(&self, memory: &Memory, pthread: usize) -> Option<u32> {
        let offsets = self.offsets.as_ref()?;
        let (&first, &last) = (offsets.first()?, offsets.last()?);
        let mut bytes = vec![0u8; last + 4 - first];
        memory
            .read(&mut [(pthread.wrapping_add(first), &mut bytes[..])])
            .ok()?;
        let tid = int(&bytes, 0);
        if offsets.iter().any(|&o| int(&bytes, o - first) != tid) {
            return None;
        }
        u32::try_from(tid).ok().filter(|&t| t > 0)
    }
}

/// The offsets at which every struct holds a distinct one of `tasks`.
fn narrow(offsets: Vec<usize>, structs: &[Vec<u8>], tasks: &HashSet<i32>) -> Vec<usize> {
    offsets
        .into_iter()
        .filter(|&offset| {
            let values: HashSet<i32> = structs.iter().map(|s| int(s, offset)).collect();
            values.len() == structs.len() && values.iter().all(|v| tasks.contains(v))
        })
        .collect()
}

fn tasks(pid: i32) -> Option<HashSet<i32>> {
    let entries = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    Some(
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(values: &[(usize, i32)]) -> Vec<u8> {
        let mut bytes = vec![0u8; SEARCHED];
        for &(at, v) in values {
            bytes[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        }
        bytes
    }

    #[test]
    fn the_offset_holding_every_threads_tid_survives() {
        let tasks: HashSet<i32> = [100, 101, 102].into();
        let all: Vec<usize> = (0..=SEARCHED - 4).step_by(4).collect();
        // The main thread alone: both places holding its tid remain.
        let main = with(&[(720, 100), (40, 100)]);
        let left = narrow(all, std::slice::from_ref(&main), &tasks);
        assert_eq!(left, [40, 720]);
        // A second thread has its tid only at 720; a coincidence at 40 of
        // the same value is not distinct.
        let second = with(&[(720, 101), (40, 100), (8, 102)]);
        assert_eq!(narrow(left, &[main, second], &tasks), [720]);
    }

    #[test]
    fn no_offset_survives_memory_that_holds_no_tids() {
        let tasks: HashSet<i32> = [100, 101].into();
        let all: Vec<usize> = (0..=SEARCHED - 4).step_by(4).collect();
        assert!(narrow(all, &[with(&[]), with(&[(8, 7)])], &tasks).is_empty());
    }

    #[test]
    fn the_tids_of_two_threads_of_this_process_are_found() {
        let memory = Memory::new(std::process::id());
        let me = (nix::unistd::gettid().as_raw(), unsafe {
            nix::libc::pthread_self()
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || {
            let ids = (nix::unistd::gettid().as_raw(), unsafe {
                nix::libc::pthread_self()
            });
            tx.send(ids).unwrap();
            let _ = stopped.recv();
        });
        let them = rx.recv().unwrap();
        let mut tids = PthreadTids::default();
        tids.observe(&memory, &[me.1 as usize, them.1 as usize]);
        assert_eq!(tids.tid(&memory, me.1 as usize), Some(me.0 as u32));
        assert_eq!(tids.tid(&memory, them.1 as usize), Some(them.0 as u32));
        stop.send(()).unwrap();
        other.join().unwrap();
    }
}
