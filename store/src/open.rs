//! Deciding whether a file is ours before SQLite touches it, then opening it.
//!
//! SQLite writes as soon as it is allowed to (journal mode switch, `-wal` and
//! `-shm` files, schema creation), so foreign files are rejected from the raw
//! 100-byte header alone. `application_id` never changes after creation and
//! is written before the switch to WAL, so the header copy is always current;
//! the connection re-checks everything before the first write anyway.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::schema::{self, Migrated, APPLICATION_ID, SCHEMA_VERSION};
use crate::StoreError;

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
const HEADER_LEN: usize = 100;

/// How long a statement waits for another connection's lock. In WAL mode
/// readers never wait for the writer; this covers the short exclusive locks
/// taken when a store is created, migrated, or checkpointed.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// What is at the path, judged from the header alone.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Found {
    Absent,
    /// A 0-byte file: nothing to lose, becomes a new store.
    Empty,
    /// Ours, with a version this build can read or migrate.
    TimeGlass,
}

pub(crate) fn probe(path: &Path) -> Result<Found, StoreError> {
    let io_err = |source| StoreError::Io {
        path: path.to_owned(),
        source,
    };
    let header = match read_header(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Absent),
        other => other.map_err(io_err)?,
    };
    judge_header(&header).map_err(|reason| reason.into_error(path))
}

/// Files whose headers were read, by (device, inode), kept open for the
/// life of the process. Closing any descriptor of a file releases every
/// POSIX lock the process holds on it, SQLite's own included, and
/// `timeglass run --ui` has the recorder's connection and the dashboard's
/// in one process: a header read that opened and closed the file under the
/// recorder's locks left later reads failing with `disk I/O error`.
static HEADER_FILES: Mutex<Option<HashMap<(u64, u64), File>>> = Mutex::new(None);

/// Up to the first `HEADER_LEN` bytes of the file at `path`.
fn read_header(path: &Path) -> io::Result<Vec<u8>> {
    // `stat` opens no descriptor.
    let meta = std::fs::metadata(path)?;
    let key = (meta.dev(), meta.ino());
    let mut files = HEADER_FILES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let files = files.get_or_insert_with(HashMap::new);
    if let Some(file) = files.get(&key) {
        return read_at_start(file);
    }
    let file = File::open(path)?;
    // Replaced between the two looks: what was opened is kept by its own.
    let opened = file.metadata()?;
    read_at_start(files.entry((opened.dev(), opened.ino())).or_insert(file))
}

fn read_at_start(file: &File) -> io::Result<Vec<u8>> {
    let mut header = vec![0u8; HEADER_LEN];
    let mut read = 0;
    while read < HEADER_LEN {
        match file.read_at(&mut header[read..], read as u64)? {
            0 => break,
            n => read += n,
        }
    }
    header.truncate(read);
    Ok(header)
}

enum Rejection {
    NotSqlite,
    Foreign(i32),
    TooNew(u32),
}

impl Rejection {
    fn into_error(self, path: &Path) -> StoreError {
        let path = path.to_owned();
        let reason = match self {
            Rejection::TooNew(found) => {
                return StoreError::TooNew {
                    path,
                    found,
                    known: SCHEMA_VERSION,
                }
            }
            Rejection::NotSqlite => "not an SQLite database".to_owned(),
            Rejection::Foreign(0) => "an SQLite database of another application".to_owned(),
            Rejection::Foreign(id) => {
                format!("an SQLite database of another application, application_id {id:#010x}")
            }
        };
        StoreError::NotTimeGlass { path, reason }
    }
}

fn judge_header(header: &[u8]) -> Result<Found, Rejection> {
    if header.is_empty() {
        return Ok(Found::Empty);
    }
    if header.len() < HEADER_LEN || !header.starts_with(SQLITE_MAGIC) {
        return Err(Rejection::NotSqlite);
    }
    let be32 = |at: usize| [header[at], header[at + 1], header[at + 2], header[at + 3]];
    let application_id = i32::from_be_bytes(be32(68));
    let user_version = u32::from_be_bytes(be32(60));
    if application_id != APPLICATION_ID {
        return Err(Rejection::Foreign(application_id));
    }
    if user_version > SCHEMA_VERSION {
        return Err(Rejection::TooNew(user_version));
    }
    Ok(Found::TimeGlass)
}

/// Opens, verifies through SQLite itself, migrates if older, switches to WAL.
/// The file exists already: a new store is created empty, with its mode,
/// before SQLite sees it.
/// Stores at least this big are said to be upgraded (smaller ones take
/// well under a second).
const UPGRADE_NOTICE_BYTES: u64 = 64 << 20;

pub(crate) fn connect(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let sql_err = |source| StoreError::Sqlite {
        path: path.to_owned(),
        source,
    };
    let mut conn = Connection::open_with_flags(path, flags).map_err(sql_err)?;
    configure(&conn).map_err(sql_err)?;
    match verify(&conn).map_err(sql_err)? {
        Ok(version) if version == SCHEMA_VERSION => {}
        Ok(0) => {
            // Only possible before the first table: freed pages can then be
            // given back without a full VACUUM (prune.rs).
            conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
                .map_err(sql_err)?;
            match schema::migrate(&mut conn).map_err(sql_err)? {
                Migrated::UpToDate => {}
                Migrated::TooNew(found) => return Err(Rejection::TooNew(found).into_error(path)),
            }
        }
        Ok(version) => {
            // The only output of this crate: an upgrade of a big store takes
            // a while (28 s at 1,000,000 requests for schema 14), and a
            // command that says nothing meanwhile looks hung.
            let size = std::fs::metadata(path).map_or(0, |m| m.len());
            if version < SCHEMA_VERSION && size >= UPGRADE_NOTICE_BYTES {
                eprintln!(
                    "timeglass: upgrading {} ({} MiB) from schema {version} to {SCHEMA_VERSION}, once; this can take a minute",
                    path.display(),
                    size >> 20
                );
            }
            match schema::migrate(&mut conn).map_err(sql_err)? {
                Migrated::UpToDate => {}
                Migrated::TooNew(found) => return Err(Rejection::TooNew(found).into_error(path)),
            }
        }
        Err(rejection) => return Err(rejection.into_error(path)),
    }
    // Returns the resulting mode; a read-only file stays in its mode, which
    // is fine for a reader.
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
        .map_err(sql_err)?;
    // After any upgrade, whose index builds may sort more than fits in
    // memory: from here, statement journals (what a statement that may
    // abort inside the writer's transaction keeps to undo itself) stay in
    // memory instead of a temporary file written with a system call per
    // page (the writer's system time per request halved).
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(sql_err)?;
    Ok(conn)
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // With WAL, NORMAL loses at most the last commits on power loss, never
    // consistency; FULL would fsync every 100 ms batch for nothing.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(())
}

/// The schema version, or why the file is not ours: the header check again,
/// now through SQLite (it sees pages still in the WAL).
fn verify(conn: &Connection) -> rusqlite::Result<Result<u32, Rejection>> {
    let application_id = schema::application_id(conn)?;
    let version = schema::user_version(conn)?;
    if application_id != APPLICATION_ID {
        let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
        let blank = application_id == 0 && version == 0 && tables == 0;
        return Ok(if blank {
            Ok(0)
        } else {
            Err(Rejection::Foreign(application_id))
        });
    }
    Ok(if version > SCHEMA_VERSION {
        Err(Rejection::TooNew(version))
    } else {
        Ok(version)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(application_id: i32, user_version: u32) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_LEN];
        h[..16].copy_from_slice(SQLITE_MAGIC);
        h[60..64].copy_from_slice(&user_version.to_be_bytes());
        h[68..72].copy_from_slice(&application_id.to_be_bytes());
        h
    }

    #[test]
    fn judges_headers() {
        assert!(matches!(judge_header(b""), Ok(Found::Empty)));
        assert!(matches!(judge_header(b"hello"), Err(Rejection::NotSqlite)));
        assert!(matches!(
            judge_header(&SQLITE_MAGIC[..]),
            Err(Rejection::NotSqlite)
        ));
        assert!(matches!(
            judge_header(&header(0, 0)),
            Err(Rejection::Foreign(0))
        ));
        assert!(matches!(
            judge_header(&header(APPLICATION_ID, SCHEMA_VERSION)),
            Ok(Found::TimeGlass)
        ));
        assert!(matches!(
            judge_header(&header(APPLICATION_ID, SCHEMA_VERSION + 1)),
            Err(Rejection::TooNew(_))
        ));
    }
}
