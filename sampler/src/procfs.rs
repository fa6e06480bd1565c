//! What the kernel says of a process's threads, from `/proc`.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// The state letter of a `/proc/.../stat` line (`R`, `S`, `D`, `Z`, ...):
/// the field after the parenthesised command name, which may itself hold
/// spaces and parentheses.
pub fn run_state(stat: &[u8]) -> Option<u8> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    stat.get(close + 2).copied()
}

/// Whether the OS has thread `tid` of `pid` running or runnable (`R`);
/// `None` when it cannot tell. Opens the file each time: for one-off
/// questions; [`TaskFiles`] keeps it open.
pub fn running_on_cpu(pid: u32, tid: u32) -> Option<bool> {
    let stat = std::fs::read(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    run_state(&stat).map(|state| state == b'R')
}

/// Whether process `pid` is gone or a zombie.
pub fn is_zombie(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| run_state(&stat))
        .is_none_or(|state| state == b'Z')
}

/// The futex word a thread is asleep on, from its `/proc/.../syscall`
/// (`NR arg0 arg1 ...`, numbers in decimal then hex); `None` when it is not
/// in `futex` (running, in another call, or not in one at all).
pub fn futex_word(syscall: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(syscall).ok()?;
    let mut fields = text.split_ascii_whitespace();
    let number: i64 = fields.next()?.parse().ok()?;
    if number != nix::libc::SYS_futex {
        return None;
    }
    let word = fields.next()?.strip_prefix("0x")?;
    u64::from_str_radix(word, 16).ok()
}

/// Process `pid`'s `stat`, kept open: whether it is alive is one `pread`
/// (and a process that is gone, even if its pid was reused, fails it).
pub struct ProcessStat {
    pid: u32,
    file: Option<File>,
}

impl ProcessStat {
    pub fn open(pid: u32) -> Self {
        ProcessStat {
            pid,
            file: File::open(format!("/proc/{pid}/stat")).ok(),
        }
    }

    /// Whether the process is there and not a zombie.
    pub fn alive(&self) -> bool {
        let Some(file) = &self.file else {
            return !is_zombie(self.pid);
        };
        let mut stat = [0u8; 512];
        file.read_at(&mut stat, 0)
            .ok()
            .and_then(|n| run_state(&stat[..n]))
            .is_some_and(|state| state != b'Z')
    }
}

/// One file of each thread (`stat`, `schedstat`), opened once and re-read
/// with one `pread` per reading.
pub struct TaskFiles {
    name: &'static str,
    files: HashMap<u32, Option<File>>,
}

/// More open files than this are closed all at once (threads come and go).
const MAX_FILES: usize = 512;

impl TaskFiles {
    pub fn new(name: &'static str) -> Self {
        TaskFiles {
            name,
            files: HashMap::new(),
        }
    }

    /// Reads thread `tid`'s file into `buf`; the bytes read, or `None` when
    /// it cannot be read (the thread is gone). A failed file is opened
    /// afresh next time.
    pub fn read(&mut self, pid: u32, tid: u32, buf: &mut [u8]) -> Option<usize> {
        if self.files.len() >= MAX_FILES && !self.files.contains_key(&tid) {
            self.files.clear();
        }
        let name = self.name;
        let n = self
            .files
            .entry(tid)
            .or_insert_with(|| File::open(format!("/proc/{pid}/task/{tid}/{name}")).ok())
            .as_ref()
            .and_then(|file| file.read_at(buf, 0).ok());
        if n.is_none() {
            self.forget(tid);
        }
        n
    }

    /// Closes thread `tid`'s file.
    pub fn forget(&mut self, tid: u32) {
        self.files.remove(&tid);
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
    fn a_futex_wait_names_its_word() {
        let futex = nix::libc::SYS_futex;
        let line = format!("{futex} 0x7f9adc54e7a8 0x189 0x0 0x0 0x0 0xffffffff 0x7ffd9 0x7f9a\n");
        assert_eq!(futex_word(line.as_bytes()), Some(0x7f9a_dc54_e7a8));
        assert_eq!(futex_word(b"running\n"), None);
        assert_eq!(
            futex_word(b"-1 0x7ffd9 0x7f9a\n"),
            None,
            "not in a system call"
        );
        assert_eq!(futex_word(b"0 0x3 0x7f 0x10\n"), None, "read(2)");
        assert_eq!(futex_word(b""), None);
    }

    #[test]
    fn the_state_follows_the_last_parenthesis_of_the_command_name() {
        assert_eq!(run_state(b"42 (python3) S 1 42"), Some(b'S'));
        assert_eq!(run_state(b"42 (a) b (c)) R 1 42"), Some(b'R'));
        assert_eq!(run_state(b"42 (cut"), None);
        let me = std::process::id();
        assert!(!is_zombie(me));
        assert!(is_zombie(u32::MAX - 5), "a missing process counts as gone");
        assert!(ProcessStat::open(me).alive());
        assert!(!ProcessStat::open(u32::MAX - 5).alive());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let stat = ProcessStat::open(child.id());
        child.wait().unwrap();
        assert!(!stat.alive(), "a reaped child is gone");
    }
}
