//! The one error type at the edge: a message the user can act on, on one line.

use std::fmt;
use std::process::ExitCode;

pub struct Failure {
    message: String,
    code: u8,
    broken_pipe: bool,
}

impl Failure {
    /// A failure with exit code 1.
    pub fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            code: 1,
            broken_pipe: false,
        }
    }

    /// Bad input from the user: exit code 2.
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: 2,
            ..Failure::new(message)
        }
    }

    pub fn with_code(mut self, code: u8) -> Self {
        self.code = code;
        self
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code)
    }

    pub fn is_broken_pipe(&self) -> bool {
        self.broken_pipe
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keep it on one line whatever the source said.
        let one_line = self
            .message
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        f.write_str(&one_line)
    }
}

impl From<timeglass_store::StoreError> for Failure {
    fn from(e: timeglass_store::StoreError) -> Self {
        Failure::new(e.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        let broken_pipe = e.kind() == std::io::ErrorKind::BrokenPipe;
        Failure {
            broken_pipe,
            ..Failure::new(e.to_string())
        }
    }
}

pub type Result<T> = std::result::Result<T, Failure>;
