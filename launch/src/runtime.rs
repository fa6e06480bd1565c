//! The private runtime directory of one `timeglass run`, and the removal of
//! those that killed runs left behind.
//!
//! Each run owns `run-<pid>/` under the user's runtime directory (`0700`,
//! like the directory above it) and holds an exclusive `flock` on its
//! `lock` file for as long as it lives. The kernel drops the lock however
//! the run ends, `kill -9` included, so the next run can tell a leftover
//! directory (no one holds its lock) from a live run's without trusting
//! pids, which are reused.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use timeglass_wire::private;

use crate::LaunchError;

const PREFIX: &str = "run-";
const LOCK: &str = "lock";

/// A live run's directory: locked while this value lives, removed on drop.
pub struct Runtime {
    path: PathBuf,
    _lock: Flock<File>,
}

impl Runtime {
    /// Creates this run's directory, after removing what killed runs left.
    pub fn create() -> Result<Runtime, LaunchError> {
        let base = timeglass_wire::runtime_dir();
        private::ensure_dir(&base)?;
        remove_leftovers(&base);
        let path = base.join(format!("{PREFIX}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        private::ensure_dir(&path)?;
        let lock = lock(&path).ok_or_else(|| LaunchError::Locked(path.clone()))?;
        Ok(Runtime { path, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Takes the directory's lock without waiting; `None` when a live run has it.
fn lock(dir: &Path) -> Option<Flock<File>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(private::FILE_MODE)
        .custom_flags(libc_nofollow())
        .open(dir.join(LOCK))
        .ok()?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).ok()
}

fn libc_nofollow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

/// Removes every `run-*` directory of `base` whose lock no one holds. A
/// directory without a lock file is from a TimeGlass before locks, or from
/// a run killed while creating it: only its pid tells, so it goes when no
/// process has that pid.
pub fn remove_leftovers(base: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(base) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if !kind.is_dir() {
            continue;
        }
        let dir = entry.path();
        let stale = if dir.join(LOCK).exists() {
            // Held for the rest of this loop turn only, then dropped with
            // the directory it guards.
            lock(&dir).is_some()
        } else {
            pid.parse::<u32>()
                .is_ok_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        };
        if stale && std::fs::remove_dir_all(&dir).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_keeps_its_directory_and_a_dropped_one_does_not() {
        let base = tempfile::tempdir().unwrap();
        let live = base.path().join("run-1");
        let dead = base.path().join("run-2");
        for dir in [&live, &dead] {
            private::ensure_dir(dir).unwrap();
        }
        let _held = lock(&live).unwrap();
        drop(lock(&dead).unwrap());
        assert_eq!(remove_leftovers(base.path()), 1);
        assert!(live.is_dir());
        assert!(!dead.exists());
    }

    #[test]
    fn an_unlocked_directory_goes_when_its_pid_is_gone() {
        let base = tempfile::tempdir().unwrap();
        let mine = base.path().join(format!("run-{}", std::process::id()));
        // Above the kernel's pid_max limit of 2^22: no process has it.
        let gone = base.path().join("run-4194305");
        let other = base.path().join("not-a-run");
        for dir in [&mine, &gone, &other] {
            private::ensure_dir(dir).unwrap();
        }
        assert_eq!(remove_leftovers(base.path()), 1);
        assert!(mine.is_dir() && other.is_dir());
        assert!(!gone.exists());
    }
}
