//! What the kernel says of a process and its threads, from `/proc`: the
//! one place TimeGlass reads it (the recorder and the CLI use this module).

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

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

/// Whether process `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| run_state(&stat))
        .is_some_and(|state| state != b'Z')
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
            return alive(self.pid);
        };
        let mut stat = [0u8; 512];
        file.read_at(&mut stat, 0)
            .ok()
            .and_then(|n| run_state(&stat[..n]))
            .is_some_and(|state| state != b'Z')
    }
}

/// Process `pid`'s `statm`, kept open: its resident memory is one `pread`.
pub struct Statm {
    file: File,
    page_size: u64,
}

impl Statm {
    pub fn open(pid: u32) -> std::io::Result<Self> {
        // SAFETY: sysconf has no preconditions; it returns -1 for unknown names.
        let page = unsafe { nix::libc::sysconf(nix::libc::_SC_PAGESIZE) };
        Ok(Statm {
            file: File::open(format!("/proc/{pid}/statm"))?,
            page_size: u64::try_from(page).ok().filter(|p| *p > 0).unwrap_or(4096),
        })
    }

    /// Resident memory (RSS) in bytes; `None` once the process is gone.
    pub fn resident_bytes(&self) -> Option<u64> {
        let mut buf = [0u8; 128];
        let n = self.file.read_at(&mut buf, 0).ok()?;
        resident_pages(&buf[..n]).map(|pages| pages * self.page_size)
    }
}

/// The second field of a `statm` line: resident pages.
pub fn resident_pages(statm: &[u8]) -> Option<u64> {
    std::str::from_utf8(statm)
        .ok()?
        .split_ascii_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The command line of `pid`, one string per argument.
pub fn cmdline(pid: u32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The parent of `pid`, from `/proc/PID/stat`.
pub fn parent(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// `root` and all its descendants.
pub fn tree(root: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return vec![root];
    };
    let all: Vec<(u32, u32)> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, parent(pid)?)))
        .collect();
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(all.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}

/// Whether `pid` runs a Python interpreter (the executable or a loaded
/// `libpython`).
pub fn is_python(pid: u32) -> bool {
    let exe_is_python = fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().starts_with("python"))
        })
        .unwrap_or(false);
    exe_is_python
        || fs::read_to_string(format!("/proc/{pid}/maps"))
            .is_ok_and(|maps| maps.contains("libpython"))
}

/// Whether `pid` is one of `multiprocessing`'s helper processes (resource
/// tracker, fork server): Python, but it never runs the app.
pub fn is_helper(pid: u32) -> bool {
    cmdline(pid).iter().any(|arg| {
        arg.contains("multiprocessing.resource_tracker")
            || arg.contains("multiprocessing.semaphore_tracker")
            || arg.contains("multiprocessing.forkserver")
    })
}

/// The value of environment variable `name` in `pid`'s initial environment.
pub fn environ_var(pid: u32, name: &str) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/environ")).ok()?;
    raw.split(|b| *b == 0).find_map(|entry| {
        let value = entry.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
        Some(String::from_utf8_lossy(value).into_owned())
    })
}

/// The user `pid` runs as (the owner of its `/proc` entry).
pub fn uid(pid: u32) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(format!("/proc/{pid}")).ok().map(|m| m.uid())
}

/// Why `pid` cannot be looked at.
#[derive(Debug, PartialEq, Eq)]
pub enum Inspect {
    /// No such process (or a zombie).
    Gone,
    /// It exists, but this user may not read which program it runs.
    Denied,
}

/// The executable `pid` runs, which also tells whether we may inspect it:
/// `/proc/<pid>/exe` needs the same ptrace read access as its memory maps.
pub fn exe(pid: u32) -> Result<PathBuf, Inspect> {
    if !alive(pid) {
        return Err(Inspect::Gone);
    }
    fs::read_link(format!("/proc/{pid}/exe")).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => Inspect::Denied,
        _ if !alive(pid) => Inspect::Gone,
        // A kernel thread has no executable: nothing to read there either.
        _ => Inspect::Denied,
    })
}

/// The working directory of `pid`, when this user may read it.
pub fn cwd(pid: u32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

/// The Yama `ptrace_scope` setting (`0` to `3`), when the kernel has Yama.
pub fn ptrace_scope() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()
        .map(|s| s.trim().to_string())
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
        assert!(alive(me));
        assert!(!alive(u32::MAX - 5), "a missing process counts as gone");
        assert!(ProcessStat::open(me).alive());
        assert!(!ProcessStat::open(u32::MAX - 5).alive());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let stat = ProcessStat::open(child.id());
        child.wait().unwrap();
        assert!(!stat.alive(), "a reaped child is gone");
    }

    #[test]
    fn statm_reads_resident_memory_and_follows_it() {
        assert_eq!(resident_pages(b"5000 1200 300 10 0 900 0\n"), Some(1200));
        assert_eq!(resident_pages(b"5000"), None);
        let statm = Statm::open(std::process::id()).unwrap();
        let before = statm.resident_bytes().unwrap();
        assert!(before > 1 << 20, "{before}");
        let block = vec![1u8; 64 << 20];
        std::hint::black_box(&block);
        let after = statm.resident_bytes().unwrap();
        assert!(after >= before + (60 << 20), "{before} -> {after}");
        drop(block);
        assert!(Statm::open(u32::MAX - 5).is_err());
    }

    #[test]
    fn this_process_is_alive_and_in_its_own_tree() {
        let me = std::process::id();
        assert!(alive(me));
        assert!(tree(me).contains(&me));
        assert!(!is_python(me));
        assert!(cmdline(me)[0].contains("timeglass_sampler"));
        assert!(!alive(u32::MAX - 1));
        assert!(!is_helper(me));
        assert_eq!(environ_var(me, "PATH"), std::env::var("PATH").ok());
        assert_eq!(environ_var(me, "TIMEGLASS_NO_SUCH_VARIABLE"), None);
        let own = std::os::unix::fs::MetadataExt::uid(&fs::metadata("/proc/self").unwrap());
        assert_eq!(uid(me), Some(own));
        assert!(exe(me).is_ok());
        assert_eq!(cwd(me), std::env::current_dir().ok());
        assert_eq!(exe(u32::MAX - 1), Err(Inspect::Gone));
    }
}
