//! Judges a change: two sets of per-endpoint figures and profiles in,
//! verdicts and explanations out.
//!
//! A [`Snapshot`] is one session's per-endpoint figures (the `<stats>` of
//! `timeglass-report`), a sample of its requests' response and CPU times,
//! its per-request profiles and statement counts, and the settings it was
//! recorded under (`snapshot.rs`). A baseline is a snapshot stored under a
//! name (`baseline.rs`). [`compare`] puts two side by side: the
//! statistical test of `stats.rs` for latency and CPU time, exact
//! comparisons of statements per request and N+1s, and the functions and
//! statements that explain a change (`profile.rs`, `compare.rs`).
//! [`Gate`] judges a comparison against thresholds for `timeglass check`
//! (`check.rs`). It renders nothing: the CLI and the server do.
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod baseline;
pub mod check;
pub mod compare;
pub mod machine;
pub mod profile;
pub mod snapshot;
pub mod stats;

use std::path::PathBuf;

use timeglass_report::ReportError;
use timeglass_store::StoreError;

pub use check::{Gate, Outcome};
pub use compare::{compare, path_diff, Comparison, EndpointComparison, Verdict};
pub use snapshot::{Snapshot, FORMAT_VERSION};
pub use stats::TestOptions;

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Report(ReportError),
    #[error("no baseline `{0}` in the store; `timeglass baseline list` lists them")]
    UnknownBaseline(String),
    #[error("a baseline `{0}` exists already; remove it with `timeglass baseline rm {0}` first, or pass `--force`")]
    BaselineExists(String),
    #[error("`{0}` is not a baseline name: use letters, digits, `.`, `_` and `-`")]
    BadName(String),
    #[error("{what} is not a TimeGlass baseline ({why}); `timeglass baseline export NAME -o FILE` writes one")]
    NotABaseline { what: String, why: String },
    #[error("{what} is a baseline of format version {found}; this TimeGlass reads version {known}: export it again with a matching TimeGlass", known = FORMAT_VERSION)]
    IncompatibleVersion { what: String, found: String },
    #[error("session {0} has no requests to compare; record some with `timeglass run`")]
    EmptySession(i64),
    #[error("sessions {a} and {b} have no endpoint in common; nothing to compare")]
    NoCommonEndpoint { a: i64, b: i64 },
    #[error("A was sampled in `{a}` mode and B in `{b}` mode; their times do not compare: record both the same way")]
    ModeMismatch { a: String, b: String },
    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },
}

impl From<ReportError> for CompareError {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::Store(s) => CompareError::Store(s),
            other => CompareError::Report(other),
        }
    }
}

impl CompareError {
    /// Whether the user asked for something that does not exist, does not
    /// parse or does not compare (exit 2), rather than the store failing.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, CompareError::Store(_))
    }
}
