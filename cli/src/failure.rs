//! The one error type at the edge: a message the user can act on, on one line.

use std::error::Error;
use std::fmt;
use std::process::ExitCode;

pub(crate) struct Failure {
    message: String,
    /// What the error's sources said, outermost first, printed after the
    /// message on the same line (`error: X: Y: Z`), as uv does.
    causes: Vec<String>,
    code: u8,
    broken_pipe: bool,
}

impl Failure {
    /// A failure with exit code 1.
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            causes: Vec::new(),
            code: 1,
            broken_pipe: false,
        }
    }

    /// A failure with exit code 1 from a library's error, with its chain of
    /// sources. A source whose text the message already quotes (thiserror's
    /// `"...: {source}"`) is not repeated.
    pub(crate) fn error(e: &(dyn Error + 'static)) -> Self {
        let mut failure = Failure::new(e.to_string());
        let mut shown = failure.message.clone();
        for cause in std::iter::successors(e.source(), |&c| c.source()) {
            let text = cause.to_string();
            if !shown.contains(&text) {
                shown = text.clone();
                failure.causes.push(text);
            }
        }
        failure
    }

    /// Bad input from the user: exit code 2.
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: 2,
            ..Failure::new(message)
        }
    }

    pub(crate) fn with_code(mut self, code: u8) -> Self {
        self.code = code;
        self
    }

    pub(crate) fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code)
    }

    pub(crate) fn is_broken_pipe(&self) -> bool {
        self.broken_pipe
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keep it on one line whatever the source said.
        let one_line = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
        f.write_str(&one_line(&self.message))?;
        for cause in &self.causes {
            write!(f, ": {}", one_line(cause))?;
        }
        Ok(())
    }
}

impl From<timeglass_store::StoreError> for Failure {
    fn from(e: timeglass_store::StoreError) -> Self {
        Failure::error(&e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        let broken_pipe = e.kind() == std::io::ErrorKind::BrokenPipe;
        Failure {
            broken_pipe,
            ..Failure::error(&e)
        }
    }
}

pub(crate) type Result<T> = std::result::Result<T, Failure>;

#[cfg(test)]
mod tests {
    use super::*;

    /// A library error that quotes its source in its message or does not.
    #[derive(Debug)]
    enum Outer {
        Hidden(std::io::Error),
        Quoted(std::io::Error),
    }

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Outer::Hidden(_) => f.write_str("could not open the store"),
                Outer::Quoted(e) => write!(f, "could not read `db`: {e}"),
            }
        }
    }

    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            match self {
                Outer::Hidden(e) | Outer::Quoted(e) => Some(e),
            }
        }
    }

    #[test]
    fn every_cause_is_on_the_error_line_once() {
        let io = || std::io::Error::other("disk on fire");
        let hidden = Failure::error(&Outer::Hidden(io()));
        assert_eq!(hidden.to_string(), "could not open the store: disk on fire");
        let quoted = Failure::error(&Outer::Quoted(io()));
        assert_eq!(quoted.to_string(), "could not read `db`: disk on fire");
    }

    #[test]
    fn a_cause_on_several_lines_stays_on_one() {
        let io = std::io::Error::other("first\nsecond");
        let failure = Failure::error(&Outer::Hidden(io));
        assert_eq!(
            failure.to_string(),
            "could not open the store: first second"
        );
    }
}
