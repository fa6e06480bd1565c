//! The store is private to its user: `0600` files in a `0700` directory.
//!
//! It holds request bodies, headers and SQL parameters. The file is created
//! before SQLite opens it, with its final mode, so it is never readable by
//! others even for an instant; SQLite creates `-wal` and `-shm` with the
//! database's mode. A store of this user left more open by an older
//! TimeGlass is tightened when it is next opened for writing.

use std::fs::{self, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::StoreError;

pub(crate) const DIR_MODE: u32 = 0o700;
pub(crate) const FILE_MODE: u32 = 0o600;

/// The files SQLite keeps for the database at `path`.
fn files(path: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [path.to_owned(), with("-wal"), with("-shm")]
}

/// Creates an empty store file, `0600`; one created meanwhile by another
/// `timeglass` is left as it is.
pub(crate) fn create_file(path: &Path) -> Result<(), StoreError> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
        .map(drop)
        .map_err(|source| StoreError::Io {
            path: path.to_owned(),
            source,
        })
}

/// Takes group and other access away from this user's store files.
pub(crate) fn tighten(path: &Path) -> Result<(), StoreError> {
    // SAFETY: geteuid never fails.
    let me = unsafe { libc::geteuid() };
    for file in files(path) {
        let meta = match fs::metadata(&file) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(StoreError::Io { path: file, source }),
        };
        if meta.uid() != me || meta.mode() & 0o077 == 0 {
            continue;
        }
        let mode = meta.mode() & 0o700;
        fs::set_permissions(&file, Permissions::from_mode(mode))
            .map_err(|source| StoreError::Io { path: file, source })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o777
    }

    #[test]
    fn a_new_store_and_its_directory_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(".timeglass/timeglass.db");
        let mut store = Store::open(&path).unwrap();
        // The first write creates the `-wal` file.
        store.begin_session(&crate::testing::session()).unwrap();
        let [db, wal, shm] = files(&path);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&wal), 0o600);
        assert_eq!(mode(&shm), 0o600);
        drop(store);
    }

    #[test]
    fn an_open_store_is_tightened_when_opened_for_writing() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("old.db");
        drop(Store::open(&path).unwrap());
        for file in files(&path).iter().filter(|f| f.exists()) {
            fs::set_permissions(file, Permissions::from_mode(0o644)).unwrap();
        }
        let _store = Store::open(&path).unwrap();
        for file in files(&path).iter().filter(|f| f.exists()) {
            assert_eq!(mode(file), 0o600, "{}", file.display());
        }
    }
}
