use std::io;
use std::path::PathBuf;

use timeglass_wire::RegionError;

/// Why an app could not be started or waited for.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(
        "no command to run; put the command that starts your app after `--`, e.g. `timeglass run -- uvicorn app:app`"
    )]
    NoCommand,
    #[error(
        "command not found: `{0}`; is it installed, and is the virtualenv that provides it active?"
    )]
    NotFound(String),
    #[error("cannot execute `{0}`: permission denied")]
    PermissionDenied(String),
    #[error("cannot start `{name}`: {source}")]
    Spawn { name: String, source: io::Error },
    #[error("cannot wait for `{name}`: {source}")]
    Wait { name: String, source: io::Error },
    /// The marker's Python package is missing or not where it was said to be.
    #[error("{0}")]
    Package(String),
    #[error("cannot prepare `{}`: {what}: {source}", dir.display())]
    Prepare {
        dir: PathBuf,
        what: &'static str,
        source: io::Error,
    },
    #[error(transparent)]
    RuntimeDir(#[from] RegionError),
    #[error("cannot lock `{}`; is another `timeglass run` using it?", .0.display())]
    Locked(PathBuf),
    /// The caller's check of the running app said it must stop (the app was
    /// stopped): its reason.
    #[error("{0}")]
    Stopped(String),
}

impl LaunchError {
    /// The exit code a shell would give: 127 for a command not found, 126
    /// for one that cannot be executed; `None` for TimeGlass's own 1.
    pub fn shell_code(&self) -> Option<u8> {
        match self {
            LaunchError::NotFound(_) => Some(127),
            LaunchError::PermissionDenied(_) => Some(126),
            _ => None,
        }
    }

    /// Whether the user asked for something that cannot work (exit 2).
    pub fn is_usage(&self) -> bool {
        matches!(self, LaunchError::NoCommand | LaunchError::Stopped(_))
    }
}
