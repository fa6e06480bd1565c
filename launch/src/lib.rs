//! Starting an app under TimeGlass (`timeglass run -- CMD...`), apart from
//! recording it.
//!
//! - [`Runtime`]: the run's private directory (`0700`, locked while the run
//!   lives), and the removal of those that killed runs left behind.
//! - [`inject`]: the marker put first on the app's `PYTHONPATH` without
//!   touching its environment.
//! - [`App`]: the app started with its environment, the signals sent to
//!   `timeglass` forwarded to it, waited for, and stopped when it must not
//!   go on.
//!
//! Errors are [`LaunchError`]; the CLI turns them into its one-line messages
//! and exit codes (127 and 126 for a command that is missing or cannot be
//! executed, as a shell does).
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod app;
mod error;
pub mod inject;
mod runtime;

pub use app::{exit_code, App};
pub use error::LaunchError;
pub use runtime::{remove_leftovers, Runtime};
