//! Keeping ring files and runtime directories private to their user.
//!
//! A ring file carries request paths, headers, bodies and SQL parameters,
//! and the recorder trusts what it reads there. So every directory holding
//! one is `0700` and every ring file `0600`, and a file or directory owned
//! by someone else is refused: another user could have planted it to feed
//! the recorder garbage or to read what the app publishes.

use std::fs::{self, DirBuilder, Metadata};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use crate::region::RegionError;

/// The mode of every runtime directory.
pub const DIR_MODE: u32 = 0o700;
/// The mode of every ring file.
pub const FILE_MODE: u32 = 0o600;

/// The effective user id of this process.
pub fn current_uid() -> u32 {
    // SAFETY: geteuid never fails.
    unsafe { libc::geteuid() }
}

/// What is wrong with a file or directory's owner or mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsafe {
    /// Owned by another user.
    Owner { owner: u32, expected: u32 },
    /// Other users may read or write it (mode bits outside `0700`).
    Exposed { mode: u32 },
    /// Not a directory (a symbolic link, a file) where one was expected.
    NotADirectory,
}

impl std::fmt::Display for Unsafe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unsafe::Owner { owner, expected } => {
                write!(f, "owned by user {owner}, not by user {expected}")
            }
            Unsafe::Exposed { mode } => {
                write!(f, "open to other users (mode {:04o})", mode & 0o7777)
            }
            Unsafe::NotADirectory => write!(f, "not a directory"),
        }
    }
}

/// Judges an owner and mode: owned by `expected`, nothing for group or others.
pub fn judge(owner: u32, mode: u32, expected: u32) -> Result<(), Unsafe> {
    if owner != expected {
        return Err(Unsafe::Owner { owner, expected });
    }
    if mode & 0o077 != 0 {
        return Err(Unsafe::Exposed { mode });
    }
    Ok(())
}

/// Checks an opened ring file's metadata.
pub fn check_file(meta: &Metadata, path: &Path, expected: u32) -> Result<(), RegionError> {
    judge(meta.uid(), meta.mode(), expected).map_err(|why| RegionError::Unsafe {
        path: path.to_owned(),
        why,
    })
}

/// Creates `dir` (and missing parents) as `0700`, or checks an existing one:
/// it must be a real directory owned by this user. One this user owns with
/// a looser mode (made by an older TimeGlass) is tightened to `0700`.
pub fn ensure_dir(dir: &Path) -> Result<(), RegionError> {
    let io_err = |action| {
        move |source| RegionError::Io {
            action,
            path: dir.to_owned(),
            source,
        }
    };
    match DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err("create directory")(e)),
    }
    let meta = fs::symlink_metadata(dir).map_err(io_err("stat"))?;
    let unsafe_dir = |why| RegionError::Unsafe {
        path: dir.to_owned(),
        why,
    };
    if !meta.file_type().is_dir() {
        return Err(unsafe_dir(Unsafe::NotADirectory));
    }
    match judge(meta.uid(), meta.mode(), current_uid()) {
        Ok(()) => Ok(()),
        Err(Unsafe::Exposed { .. }) => {
            fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
                .map_err(io_err("make private"))
        }
        Err(why) => Err(unsafe_dir(why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judges_owner_and_mode() {
        assert_eq!(judge(1000, 0o100600, 1000), Ok(()));
        assert_eq!(judge(1000, 0o040700, 1000), Ok(()));
        assert_eq!(
            judge(1001, 0o100600, 1000),
            Err(Unsafe::Owner {
                owner: 1001,
                expected: 1000
            })
        );
        assert_eq!(
            judge(1000, 0o100644, 1000),
            Err(Unsafe::Exposed { mode: 0o100644 })
        );
        assert_eq!(
            judge(1000, 0o100606, 1000).unwrap_err().to_string(),
            "open to other users (mode 0606)"
        );
    }

    #[test]
    fn creates_private_and_tightens_own() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        ensure_dir(&dir).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        ensure_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
    }

    #[test]
    fn refuses_a_link_where_a_directory_belongs() {
        let tmp = tempfile::tempdir().unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(tmp.path(), &link).unwrap();
        let err = ensure_dir(&link).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
    }

    #[test]
    fn refuses_a_directory_of_another_user() {
        if current_uid() != 0 {
            // Only root can give a directory away; the judgement itself is
            // tested above for every user.
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("theirs");
        fs::create_dir(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
        let err = ensure_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("owned by user 65534, not by user 0"), "{err}");
    }
}
