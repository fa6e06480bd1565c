//! The live source: py-spy used as a library. Everything that knows py-spy's
//! types lives in this file.

use py_spy::config::{LineNo, LockingStrategy};
use py_spy::{Config, PythonSpy};
use timeglass_model::Frame;

use crate::procfs::ProcessStat;
use crate::walk::layout::{DebugOffsetsError, Layout, DEBUG_OFFSETS_BYTES};
use crate::walk::{Roots, Walker};
use crate::{AwaitChain, Collector, StackSource, ThreadStack};

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
    #[error("process {pid} runs a free-threaded CPython {version} (built with `Py_GIL_DISABLED`): free-threaded builds are not supported yet; run the app on the regular build of the same Python")]
    FreeThreaded { pid: u32, version: String },
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
/// py-spy finds the interpreter and reads any version; for CPython 3.10 to
/// 3.13 (and 3.14, from its published debug offsets) a walker that caches
/// code objects ([`Walker`]) reads the stacks instead, at a fraction of the
/// cost, and reads await chains.
pub struct PySpySource {
    spy: PythonSpy,
    pid: u32,
    gil_only: bool,
    cached: Option<Walker>,
    /// The walker for await chains when py-spy walks the stacks.
    chains: Option<Walker>,
    stat: ProcessStat,
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
        let abi = binary_abi(pid);
        if let Some((version, flags)) = &abi {
            if flags.contains('t') {
                return Err(SourceError::FreeThreaded {
                    pid,
                    version: format!("{version}{flags}"),
                });
            }
        }
        // A debug build (`d`) lays its objects out differently: py-spy's walker.
        let debug_build = abi.is_some_and(|(_, flags)| flags.contains('d'));
        let spy = PythonSpy::new(pid as py_spy::Pid, &config)
            .map_err(|e| classify(pid, format!("{e:#}")))?;
        let parts = walker_parts(&spy, pid)?.filter(|_| !debug_build);
        let walker = |(layout, roots): &(Layout, Roots)| {
            Walker::new(pid, layout.clone(), *roots, spy.dockerized, options.lines)
        };
        // Await chains use the cached walker (and its code cache); with
        // py-spy walking stacks, a walker of their own.
        let cached = parts.as_ref().filter(|_| !options.pyspy_walker).map(walker);
        let chains = parts.as_ref().filter(|_| cached.is_none()).map(walker);
        Ok(PySpySource {
            spy,
            pid,
            gil_only: options.gil_only,
            cached,
            chains,
            stat: ProcessStat::open(pid),
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

    /// Switches the cached walker's data-stack chunk reads on or off (for
    /// measuring them).
    #[doc(hidden)]
    pub fn set_chunk_reads(&mut self, on: bool) {
        if let Some(walker) = self.cached.as_mut() {
            walker.set_chunk_reads(on);
        }
    }

    /// Whether the cached walker's layout (read from `_Py_DebugOffsets` on
    /// 3.13+) is the built-in table of its version; `None` without one.
    #[doc(hidden)]
    pub fn layout_is_builtin(&self) -> Option<bool> {
        let layout = self.cached.as_ref().or(self.chains.as_ref())?.layout();
        let builtin = Layout::for_version(self.spy.version.major, self.spy.version.minor)?;
        Some(layout == builtin)
    }

    /// Where the walker reads an asyncio future's `fut_state`.
    #[doc(hidden)]
    pub fn future_state_offset(&self) -> Option<usize> {
        Some(
            self.cached
                .as_ref()
                .or(self.chains.as_ref())?
                .layout()
                .future_state,
        )
    }

    /// The interpreter version, as `3.11.7`.
    pub fn python_version(&self) -> String {
        self.spy.version.to_string()
    }
}

/// The layout and roots of the cached walker for the process py-spy
/// attached to, when its version has a layout; a free-threaded build is
/// refused.
fn walker_parts(spy: &PythonSpy, pid: u32) -> Result<Option<(Layout, Roots)>, SourceError> {
    let (major, minor) = (spy.version.major, spy.version.minor);
    if spy.addresses.interpreter_address == 0 {
        return Ok(None);
    }
    let info = py_spy::python_process_info::PythonProcessInfo::new(&spy.process).ok();
    let symbol = |name: &str| {
        info.as_ref()
            .and_then(|i| i.get_symbol(name))
            .map(|&a| a as usize)
    };
    let mut roots = Roots {
        interpreter: spy.addresses.interpreter_address,
        gil: spy.addresses.threadstate_address,
        coroutine_type: symbol("PyCoro_Type"),
        generator_type: symbol("PyGen_Type"),
        async_generator_type: symbol("PyAsyncGen_Type"),
    };
    let layout = if Layout::has_debug_offsets(major, minor) {
        match symbol("_PyRuntime").map(|runtime| debug_layout(pid, runtime)) {
            Some(Ok((layout, interpreter))) => {
                roots.interpreter = interpreter;
                layout
            }
            Some(Err(DebugOffsetsError::FreeThreaded)) => {
                return Err(SourceError::FreeThreaded {
                    pid,
                    version: spy.version.to_string(),
                })
            }
            // Unreadable: the built-in table, where there is one.
            _ => match Layout::for_version(major, minor) {
                Some(layout) => layout.clone(),
                None => return Ok(None),
            },
        }
    } else {
        match Layout::for_version(major, minor) {
            Some(layout) => layout.clone(),
            None => return Ok(None),
        }
    };
    if let Some(ceval_gil) = layout.interp_ceval_gil {
        let memory = crate::walk::read_word(pid, roots.interpreter + ceval_gil);
        match memory {
            Some(gil) if gil != 0 => roots.gil = gil,
            _ => return Ok(None),
        }
    }
    if roots.gil == 0 || !points_back(pid, &layout, roots.interpreter) {
        return Ok(None);
    }
    Ok(Some((layout, roots)))
}

/// Whether the first thread state of the interpreter at `interpreter` says
/// it belongs to that interpreter: a cheap check that the table fits this
/// build (else py-spy's walker reads it).
fn points_back(pid: u32, layout: &Layout, interpreter: usize) -> bool {
    let read = |address: usize| crate::walk::read_word(pid, address);
    match read(interpreter + layout.interp_threads_head) {
        Some(0) => true,
        Some(head) => read(head + layout.thread_interp) == Some(interpreter),
        None => false,
    }
}

/// The layout `_Py_DebugOffsets` at `runtime` (`_PyRuntime`) describes, and
/// the interpreter it points to.
fn debug_layout(pid: u32, runtime: usize) -> Result<(Layout, usize), DebugOffsetsError> {
    let bytes = crate::walk::read_bytes(pid, runtime, DEBUG_OFFSETS_BYTES)
        // 3.13's table is shorter; it may end near the end of a mapping.
        .or_else(|| crate::walk::read_bytes(pid, runtime, 73 * 8))
        .ok_or(DebugOffsetsError::NoCookie)?;
    let offsets = Layout::from_debug_offsets(&bytes)?;
    let interpreter = crate::walk::read_word(pid, runtime + offsets.interpreters_head)
        .filter(|&a| a != 0)
        .ok_or(DebugOffsetsError::Implausible)?;
    Ok((offsets.layout, interpreter))
}

/// The version and ABI flags (`3.13`, `t`) of the interpreter binary the
/// process runs: its executable, or the `libpython` it maps.
fn binary_abi(pid: u32) -> Option<(String, String)> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let names = std::iter::once(exe.to_string_lossy().into_owned()).chain(
        maps.lines()
            .filter_map(|l| l.split_whitespace().nth(5).map(String::from)),
    );
    let abis: Vec<_> = names
        .filter_map(|path| abi_of_name(path.rsplit('/').next()?))
        .collect();
    // The one with flags when there is one (`python3.13t` may map its
    // library under a plain name, or the other way round).
    abis.iter()
        .find(|(_, flags)| !flags.is_empty())
        .or(abis.first())
        .cloned()
}

/// (`3.13`, `t`) for `python3.13t` or `libpython3.13t.so.1.0`; (`3.11`, ``)
/// for `python3.11`; `None` for names without a minor version.
fn abi_of_name(name: &str) -> Option<(String, String)> {
    let rest = name
        .strip_prefix("libpython")
        .or_else(|| name.strip_prefix("python"))?;
    let tagged = rest.split(".so").next()?;
    let version = tagged.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let flags = &tagged[version.len()..];
    let mut parts = version.split('.');
    let ok = parts.next()?.parse::<u32>().is_ok()
        && parts.next()?.parse::<u32>().is_ok()
        && parts.next().is_none();
    ok.then(|| (version.to_string(), flags.to_string()))
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
        if let Some(walker) = self.cached.as_mut() {
            let stacks = if self.gil_only {
                walker.gil_holder()
            } else {
                walker.all_threads()
            };
            return stacks.map_err(|_| self.read_failed());
        }
        self.pyspy_stacks()
    }

    fn stacks_with(&mut self, tids: &[u32]) -> Result<Vec<ThreadStack>, SourceError> {
        if let Some(walker) = self.cached.as_mut() {
            return walker.stacks_with(tids).map_err(|_| self.read_failed());
        }
        // py-spy reads every thread anyway: keep the GIL holder and `tids`,
        // and (before 3.11, where py-spy knows no native tids) every thread,
        // as the cached walker does there.
        let mut stacks = self.pyspy_all_threads()?;
        let mut seen = std::collections::HashSet::new();
        stacks.retain(|s| match s.tid {
            None => true,
            Some(tid) => (s.owns_gil || tids.contains(&tid)) && seen.insert(tid),
        });
        Ok(stacks)
    }

    fn await_chain(&mut self, address: u64) -> Result<Option<AwaitChain>, SourceError> {
        let walker = self.cached.as_mut().or(self.chains.as_mut());
        let Some(walker) = walker.filter(|w| w.reads_await_chains()) else {
            return Ok(None);
        };
        match walker.await_chain(address as usize) {
            Ok(chain) => Ok(Some(chain)),
            Err(_) if !self.alive() => Err(SourceError::NoSuchProcess { pid: self.pid }),
            Err(_) => Err(SourceError::Read {
                pid: self.pid,
                reason: format!("no coroutine could be read at {address:#x}"),
            }),
        }
    }

    fn awaited_done(&mut self, address: u64) -> Result<Option<bool>, SourceError> {
        let Some(walker) = self.chains.as_mut().filter(|w| w.reads_await_chains()) else {
            return Ok(None);
        };
        match walker.awaited_done(address as usize) {
            Ok(done) => Ok(Some(done)),
            Err(_) if !self.alive() => Err(SourceError::NoSuchProcess { pid: self.pid }),
            // Freed since (the coroutine resumed): the next chain read says.
            Err(_) => Ok(None),
        }
    }

    fn gil_region(&self) -> Option<std::ops::Range<u64>> {
        let walker = self.cached.as_ref().or(self.chains.as_ref())?;
        let region = walker.gil_region();
        Some(region.start as u64..region.end as u64)
    }

    fn collector(&mut self) -> Option<Collector> {
        let walker = self.cached.as_ref().or(self.chains.as_ref())?;
        walker.collector().ok().flatten()
    }

    fn alive(&self) -> bool {
        self.stat.alive()
    }
}

impl PySpySource {
    fn read_failed(&self) -> SourceError {
        if self.alive() {
            SourceError::Read {
                pid: self.pid,
                reason: "a frame could not be read (the stack changed during the walk)".into(),
            }
        } else {
            SourceError::NoSuchProcess { pid: self.pid }
        }
    }

    /// Every thread with py-spy's walker, whatever `gil_only` says.
    fn pyspy_all_threads(&mut self) -> Result<Vec<ThreadStack>, SourceError> {
        if !self.spy.config.gil_only {
            return self.pyspy_stacks();
        }
        self.spy.config.gil_only = false;
        let stacks = self.pyspy_stacks();
        self.spy.config.gil_only = true;
        stacks
    }

    fn pyspy_stacks(&mut self) -> Result<Vec<ThreadStack>, SourceError> {
        let pid = self.pid;
        let gil_only = self.spy.config.gil_only;
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
                on_cpu: t
                    .os_thread_id
                    .filter(|_| !gil_only)
                    .and_then(|tid| crate::procfs::running_on_cpu(pid, tid as u32)),
                frames: t
                    .frames
                    .into_iter()
                    .rev()
                    .map(|f| Frame {
                        short: f.short_filename.unwrap_or_default().into(),
                        name: f.name.into(),
                        filename: f.filename.into(),
                        line: f.line.max(0) as u32,
                    })
                    .collect(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_threaded_and_debug_binaries_are_told_by_name() {
        let abi = |name| abi_of_name(name).map(|(v, f)| format!("{v}/{f}"));
        assert_eq!(abi("python3.13t").as_deref(), Some("3.13/t"));
        assert_eq!(abi("libpython3.14t.so.1.0").as_deref(), Some("3.14/t"));
        assert_eq!(abi("python3.12d").as_deref(), Some("3.12/d"));
        assert_eq!(abi("libpython3.13td.so.1.0").as_deref(), Some("3.13/td"));
        assert_eq!(abi("python3.11").as_deref(), Some("3.11/"));
        assert_eq!(abi("libpython3.12.so.1.0").as_deref(), Some("3.12/"));
        assert_eq!(abi("python3"), None);
        assert_eq!(abi("pythont"), None);
        assert_eq!(abi("python3.x"), None);
        let err = SourceError::FreeThreaded {
            pid: 7,
            version: "3.13t".into(),
        };
        assert!(err.to_string().contains("not supported yet"), "{err}");
    }

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
