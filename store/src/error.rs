//! The one error type of the store. Every message names the file and, where
//! the user can act, says what to do.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "no TimeGlass database at `{path}`; record some requests first with \
         `timeglass run -- uvicorn app:app`"
    )]
    Missing { path: PathBuf },

    #[error(
        "`{path}` is not a TimeGlass database ({reason}); TimeGlass left it unchanged; \
         point TimeGlass at another file, or move this one out of the way"
    )]
    NotTimeGlass { path: PathBuf, reason: String },

    #[error(
        "`{path}` was written by a newer TimeGlass (schema version {found}; this build knows up to {known}); \
         upgrade TimeGlass to read it; TimeGlass left it unchanged"
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        known: u32,
    },

    #[error("could not read or create `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("SQLite failed on `{path}`: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    /// A session or process id that this database does not contain: a bug in
    /// the caller, not something the user can fix.
    #[error("`{path}` has no {what} with id {id}")]
    UnknownId {
        path: PathBuf,
        what: &'static str,
        id: i64,
    },
}
