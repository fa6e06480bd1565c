//! The lock that says "a recorder reads this process tree": the file
//! `recorder-ROOT.lock` in the markers' runtime directory, flock-ed by the
//! recorder for as long as it lives and holding its pid. The middleware's
//! recorder inherits it from the marker that started it
//! (`marker/python/timeglass/_record.py`, which names it the same);
//! `timeglass attach` takes it itself.
//!
//! A lock file outlives nobody: its recorder unlinks it before it lets go,
//! and a recorder starting up removes those nobody holds (left by a
//! recorder that was killed). Whoever takes a lock checks afterwards that
//! the path still names the file it locked, so a file unlinked meanwhile is
//! never mistaken for the lock.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use timeglass_recorder::procfs;

/// The lock of the tree rooted at `root`, in the runtime directory of the
/// user the root runs as.
pub(crate) fn path(root: u32) -> PathBuf {
    timeglass_wire::user_runtime_dir(procfs::uid(root).unwrap_or(0))
        .join(format!("recorder-{root}.lock"))
}

/// What taking a lock found.
pub(crate) enum Taken {
    /// Ours until dropped.
    Held(Held),
    /// A live recorder holds it; its pid as the file says it.
    Busy(String),
    /// No runtime directory to put it in: there is no marker to race.
    Unavailable,
}

/// A lock this process holds. Dropping it unlinks the file, then lets go.
pub(crate) struct Held {
    path: PathBuf,
    /// Keeps the lock (flock locks belong to the open file); `None` when the
    /// lock is an inherited descriptor.
    _file: Option<Flock<File>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Takes the lock at `path`, creating it, and writes this process's pid in it.
pub(crate) fn take(path: &Path) -> Taken {
    if let Some(dir) = path.parent() {
        if std::fs::create_dir_all(dir).is_err() {
            return Taken::Unavailable;
        }
    }
    // A file unlinked between our open and our flock is retried: at most a
    // few times, since each retry means a recorder let go meanwhile.
    for _ in 0..5 {
        let Ok(file) = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
        else {
            return Taken::Unavailable;
        };
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                if !names(path, &lock) {
                    continue;
                }
                let _ = lock.set_len(0);
                let _ = write!(lock, "{}", std::process::id());
                return Taken::Held(Held {
                    path: path.to_owned(),
                    _file: Some(lock),
                });
            }
            Err((file, _)) => return Taken::Busy(named(&file)),
        }
    }
    Taken::Unavailable
}

/// Whether a live recorder holds the lock at `path` (a file nobody holds is
/// a leftover: no).
pub(crate) fn holder(path: &Path) -> Option<String> {
    let file = OpenOptions::new().read(true).write(true).open(path).ok()?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(_) => None,
        Err((file, _)) => Some(named(&file)),
    }
}

/// The pid a held lock names (as its recorder, or the marker that started
/// it, wrote it).
fn named(file: &File) -> String {
    std::io::read_to_string(file)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// The lock at `path` that this process inherited from the marker that
/// started it, found among its open files; dropping it unlinks the file.
pub(crate) fn inherited(path: &Path) -> Option<Held> {
    let wanted = std::fs::metadata(path).ok()?;
    let fds = std::fs::read_dir("/proc/self/fd").ok()?;
    for entry in fds.flatten() {
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        if meta.dev() != wanted.dev() || meta.ino() != wanted.ino() {
            continue;
        }
        // The inherited descriptor keeps the lock until this process exits
        // (a second open file of it could not take it: flock locks of two
        // open files conflict, even in one process).
        return Some(Held {
            path: path.to_owned(),
            _file: None,
        });
    }
    None
}

/// Removes the lock files in `dir` that nobody holds: those of recorders
/// that were killed. Errors are ignored: a leftover costs 5 bytes.
pub(crate) fn sweep(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !(name.starts_with("recorder-") && name.ends_with(".lock")) {
            continue;
        }
        let path = entry.path();
        let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else {
            continue;
        };
        if let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            if names(&path, &lock) && std::fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

/// Whether `path` still names the file `file` is open on.
fn names(path: &Path, file: &File) -> bool {
    match (std::fs::metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_names_its_holder_and_is_gone_once_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recorder-1.lock");
        let Taken::Held(held) = take(&path) else {
            panic!("a fresh lock is taken");
        };
        assert_eq!(holder(&path), Some(std::process::id().to_string()));
        assert!(matches!(take(&path), Taken::Busy(pid) if pid == std::process::id().to_string()));
        drop(held);
        assert!(!path.exists());
        assert_eq!(holder(&path), None);
    }

    #[test]
    fn sweeping_removes_the_locks_nobody_holds_and_keeps_the_held_ones() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join("recorder-2.lock");
        std::fs::write(&stale, "12345").unwrap();
        let other = dir.path().join("ring-2.bin");
        std::fs::write(&other, "").unwrap();
        let live = dir.path().join("recorder-3.lock");
        let Taken::Held(_held) = take(&live) else {
            panic!("a fresh lock is taken");
        };
        assert_eq!(sweep(dir.path()), 1);
        assert!(!stale.exists());
        assert!(live.exists());
        assert!(other.exists(), "only lock files are swept");
    }

    #[test]
    fn an_inherited_lock_is_found_among_the_open_files_and_unlinked_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recorder-4.lock");
        // What the marker hands its recorder: an open, locked file.
        let file = File::create(&path).unwrap();
        let _lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).unwrap();
        let held = inherited(&path).expect("the open lock is found");
        drop(held);
        assert!(!path.exists());
        let not_open = inherited(&dir.path().join("recorder-6.lock"));
        assert!(
            not_open.is_none(),
            "a lock this process has not open is not its own"
        );
    }
}
