//! The live source: py-spy used as a library. Everything that knows py-spy's
//! types lives in this file.

use py_spy::config::{LineNo, LockingStrategy};
use py_spy::{Config, PythonSpy};
use timeglass_model::Frame;

use crate::walk311::Walker311;
use crate::{StackSource, ThreadStack};

/// Why a process could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("process {pid} does not exist")]
    NoSuchProcess { pid: u32 },
    #[error("permission denied reading process {pid}: reading another process's memory needs ptrace rights. Run `timeglass` as the same user as the app (or with sudo); in a container add `--cap-add SYS_PTRACE`; with Yama `ptrace_scope` >= 1 run `timeglass run` as the app's parent or grant `CAP_SYS_PTRACE`")]
    PermissionDenied { pid: u32 },
    #[error("process {pid} runs Python {version}, which this sampler cannot read (it reads CPython {SUPPORTED_PYTHONS})")]
    UnsupportedPython { pid: u32, version: String },
    #[error("process {pid} is not a Python process this sampler can read: {reason}")]
    NotPython { pid: u32, reason: String },
    #[error("could not read the stacks of process {pid}: {reason}")]
    Read { pid: u32, reason: String },
}

/// The interpreters py-spy 0.4.3 has layouts for.
pub const SUPPORTED_PYTHONS: &str = "2.3 to 2.7 and 3.3 to 3.15";

/// What to read on each walk.
#[derive(Clone, Copy, Debug)]
pub struct PySpyOptions {
    /// Only the thread holding the GIL (cheaper; misses threads running
    /// native code without the GIL).
    pub gil_only: bool,
    /// Read line numbers (about a quarter of py-spy's walk; nearly free
    /// with the cached walker).
    pub lines: bool,
    /// Always use py-spy's own walker, even where the cached one applies.
    pub pyspy_walker: bool,
}

/// Reads a live Python process with py-spy, never pausing it.
///
/// py-spy finds the interpreter and reads any version; for CPython 3.11 a
/// walker that caches code objects ([`Walker311`]) reads the stacks
/// instead, at a fraction of the cost.
pub struct PySpySource {
    spy: PythonSpy,
    pid: u32,
    gil_only: bool,
    cached: Option<Walker311>,
}

impl PySpySource {
    pub fn attach(pid: u32, options: PySpyOptions) -> Result<Self, SourceError> {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return Err(SourceError::NoSuchProcess { pid });
        }
        let config = Config {
            // Never pause the app: torn reads are detected downstream instead.
            blocking: LockingStrategy::NonBlocking,
            gil_only: options.gil_only,
            lineno: if options.lines {
                LineNo::LastInstruction
            } else {
                LineNo::NoLine
            },
            collect_thread_names: false,
            ..Config::default()
        };
        let spy = PythonSpy::new(pid as py_spy::Pid, &config)
            .map_err(|e| classify(pid, format!("{e:#}")))?;
        let cached = (!options.pyspy_walker
            && spy.version.major == 3
            && spy.version.minor == 11
            && spy.addresses.threadstate_address != 0)
            .then(|| {
                Walker311::new(
                    pid,
                    spy.addresses.threadstate_address,
                    spy.dockerized,
                    options.lines,
                )
            });
        Ok(PySpySource {
            spy,
            pid,
            gil_only: options.gil_only,
            cached,
        })
    }

    /// Which walker reads the stacks: `cached` or `py-spy`.
    pub fn walker(&self) -> &'static str {
        if self.cached.is_some() {
            "cached"
        } else {
            "py-spy"
        }
    }

    /// The interpreter version, as `3.11.7`.
    pub fn python_version(&self) -> String {
        self.spy.version.to_string()
    }
}

/// Turns py-spy's error (an `anyhow` chain, rendered with `{:#}`) into ours.
fn classify(pid: u32, text: String) -> SourceError {
    let lower = text.to_lowercase();
    if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
        SourceError::NoSuchProcess { pid }
    } else if lower.contains("permission denied") || lower.contains("operation not permitted") {
        SourceError::PermissionDenied { pid }
    } else if let Some(version) = unsupported_version(&text) {
        SourceError::UnsupportedPython { pid, version }
    } else if lower.contains("python")
        && (lower.contains("find") || lower.contains("version") || lower.contains("unsupported"))
    {
        SourceError::NotPython {
            pid,
            reason: first_line(&text),
        }
    } else {
        SourceError::Read {
            pid,
            reason: first_line(&text),
        }
    }
}

/// The version in py-spy's "Unsupported version of Python: 3.16.0".
fn unsupported_version(text: &str) -> Option<String> {
    const NEEDLE: &str = "unsupported version of python:";
    let at = text.to_lowercase().find(NEEDLE)?;
    let version = text[at + NEEDLE.len()..].split_whitespace().next()?;
    Some(version.to_string())
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

impl StackSource for PySpySource {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn stacks(&mut self) -> Result<Vec<ThreadStack>, SourceError> {
        let pid = self.pid;
        if let Some(walker) = self.cached.as_mut() {
            let stacks = if self.gil_only {
                walker.gil_holder()
            } else {
                walker.all_threads(self.spy.addresses.interpreter_address)
            };
            return stacks.map_err(|_| {
                if self.alive() {
                    SourceError::Read {
                        pid,
                        reason: "a frame could not be read (the stack changed during the walk)"
                            .into(),
                    }
                } else {
                    SourceError::NoSuchProcess { pid }
                }
            });
        }
        let traces = self
            .spy
            .get_stack_traces()
            .map_err(|e| classify(pid, format!("{e:#}")))?;
        Ok(traces
            .into_iter()
            .map(|t| ThreadStack {
                tid: t.os_thread_id.map(|t| t as u32),
                pthread_id: t.thread_id,
                active: t.active,
                owns_gil: t.owns_gil,
                on_cpu: None,
                frames: t
                    .frames
                    .into_iter()
                    .rev()
                    .map(|f| Frame {
                        short: f.short_filename.unwrap_or_default(),
                        name: f.name,
                        filename: f.filename,
                        line: f.line.max(0) as u32,
                    })
                    .collect(),
            })
            .collect())
    }

    fn alive(&self) -> bool {
        std::path::Path::new(&format!("/proc/{}", self.pid)).exists() && !is_zombie(self.pid)
    }
}

fn is_zombie(pid: u32) -> bool {
    // Field 3 of /proc/<pid>/stat, after the parenthesised command name.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn py_spys_errors_become_ours() {
        let me = std::process::id();
        let err = classify(me, "Unsupported version of Python: 3.16.0a1".into());
        assert!(
            matches!(&err, SourceError::UnsupportedPython { version, .. } if version == "3.16.0a1"),
            "{err:?}"
        );
        assert!(err.to_string().contains("3.3 to 3.15"), "{err}");
        let err = classify(
            me,
            "Failed to get process executable name: Permission denied (os error 13)".into(),
        );
        assert!(
            matches!(err, SourceError::PermissionDenied { .. }),
            "{err:?}"
        );
        let err = classify(
            me,
            "Failed to find python version from target process".into(),
        );
        assert!(matches!(err, SourceError::NotPython { .. }), "{err:?}");
        let err = classify(u32::MAX - 1, "anything".into());
        assert!(matches!(err, SourceError::NoSuchProcess { .. }), "{err:?}");
    }
}
