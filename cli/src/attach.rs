//! `timeglass attach --pid PID`: record an app that is already running, until
//! Ctrl-C, `--duration`, or the app's exit. The app is never stopped,
//! signalled or changed.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use timeglass_recorder::procfs::{self, Inspect};
use timeglass_recorder::{self as recorder, Follow, SourceError};
use timeglass_store::Store;

use crate::args::AttachArgs;
use crate::failure::{Failure, Result};
use crate::record::{print_summary, pyspy_options, Recording, Target};
use crate::tree_lock;

/// Why recording stopped.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Ctrl-C, SIGTERM or SIGHUP.
    Signal,
    Duration,
    /// The app exited: a normal end.
    Exited,
}

pub(crate) fn attach(args: AttachArgs) -> Result<ExitCode> {
    let pid = args.pid;
    // Held until the recording ends: markers that start later find it and
    // start no recorder of their own. The middleware's recorder inherited
    // it; both unlink it when they end.
    let lock_path = tree_lock::path(pid);
    let _lock = match args.by_marker {
        true => tree_lock::inherited(&lock_path),
        false => take_tree_lock(pid)?,
    };
    if let Some(dir) = lock_path.parent() {
        tree_lock::sweep(dir);
    }
    check_target(pid, &args)?;
    let store = Store::open(&args.record.db.db)?;
    let command = procfs::cmdline(pid);
    let shown = command.join(" ");
    let target = Target {
        command,
        cwd: procfs::cwd(pid)
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        runtime_dir: timeglass_wire::user_runtime_dir(procfs::uid(pid).unwrap_or(0)),
        follow: Follow::Tree { root: pid },
    };
    let stop = stop_on_signals()?;
    let recording = Recording::start(&args.record, store, target)?;
    let until = match args.duration {
        Some(d) => format!("for {} s (Ctrl-C stops sooner)", d.as_secs_f64()),
        None => "until Ctrl-C".into(),
    };
    eprintln!("timeglass: attached to process {pid} (`{shown}`), recording {until}; the app keeps running after");
    let end = wait(pid, args.duration, &stop);
    let (db, session) = (recording.db().to_owned(), recording.session());
    let summary = recording.finish(None)?;
    if end == End::Exited {
        eprintln!("timeglass: process {pid} exited; recording ended with it");
    }
    print_summary(&summary, &db, session);
    Ok(ExitCode::SUCCESS)
}

/// Takes the recorder lock of `pid`'s tree, refusing when a recorder the
/// app's middleware started already holds it (for `pid` or its parent: the
/// middleware of a `--reload` or `--workers` child locks the uvicorn above
/// it). Without a runtime directory there is no marker to race: no lock.
fn take_tree_lock(pid: u32) -> Result<Option<tree_lock::Held>> {
    let parent = procfs::parent(pid);
    for root in std::iter::once(pid).chain(parent) {
        if let Some(holder) = tree_lock::holder(&tree_lock::path(root)) {
            return Err(Failure::usage(format!(
                "process {pid} is already recorded by the recorder its TimeGlassMiddleware started (pid {holder}); see its requests with `timeglass ui`, or start the app with TIMEGLASS_RECORD=0 to attach yourself"
            )));
        }
    }
    match tree_lock::take(&tree_lock::path(pid)) {
        tree_lock::Taken::Held(held) => Ok(Some(held)),
        tree_lock::Taken::Unavailable => Ok(None),
        tree_lock::Taken::Busy(holder) => Err(Failure::usage(format!(
            "process {pid} is being recorded by another TimeGlass recorder (pid {holder}) already; see its requests with `timeglass ui`"
        ))),
    }
}

/// Checks, before anything is written, that `pid` is there and that the
/// sampler can read it; each failure is the one line the user needs.
fn check_target(pid: u32, args: &AttachArgs) -> Result<()> {
    match procfs::exe(pid) {
        Ok(_) => {}
        Err(Inspect::Gone) => return Err(no_such_process(pid)),
        Err(Inspect::Denied) => return Err(permission_denied(pid)),
    }
    let tree = procfs::tree(pid);
    let Some(&python) = tree
        .iter()
        .find(|&&p| procfs::is_python(p) && !procfs::is_helper(p))
    else {
        let command = procfs::cmdline(pid).join(" ");
        return Err(Failure::usage(format!(
            "process {pid} (`{command}`) is not a Python process and has no Python child; give the pid of your app's uvicorn, gunicorn or `fastapi` process (`pgrep -af uvicorn` lists them)"
        )));
    };
    // Its marker writes into that run's private directory: attach would see
    // no marker, and record a whole-process profile beside the real session.
    if procfs::environ_var(python, timeglass_wire::env::RUNTIME_DIR).is_some() {
        return Err(Failure::usage(format!(
            "process {python} is already recorded by `timeglass run`, whose session has its requests; see them with `timeglass requests`, or attach to an app started without `timeglass run`"
        )));
    }
    match recorder::probe(python, pyspy_options(&args.record)) {
        Ok(_) => Ok(()),
        Err(e) => Err(probe_failure(pid, e)),
    }
}

fn probe_failure(pid: u32, error: SourceError) -> Failure {
    match error {
        SourceError::NoSuchProcess { .. } if !procfs::alive(pid) => no_such_process(pid),
        SourceError::PermissionDenied { pid } => permission_denied(pid),
        SourceError::UnsupportedPython { pid, version } => unsupported_python(pid, &version),
        other => Failure::new(format!(
            "{other}; is it a CPython interpreter (not PyPy), fully started?"
        )),
    }
}

fn no_such_process(pid: u32) -> Failure {
    Failure::usage(format!(
        "no process with pid {pid}; find your app's with `pgrep -af uvicorn` (or gunicorn, fastapi)"
    ))
}

fn unsupported_python(pid: u32, version: &str) -> Failure {
    Failure::new(format!(
        "process {pid} runs Python {version}, which TimeGlass cannot read (its sampler reads CPython {}); run the app on one of those, e.g. CPython 3.12",
        recorder::SUPPORTED_PYTHONS
    ))
}

/// Reading another process's memory needs ptrace rights; say which rule
/// applies here and every way around it.
fn permission_denied(pid: u32) -> Failure {
    let owner = match (procfs::uid(pid), procfs::uid(std::process::id())) {
        (Some(theirs), Some(ours)) if theirs != ours => {
            format!(" (it runs as uid {theirs}, you as uid {ours})")
        }
        _ => String::new(),
    };
    let scope = procfs::ptrace_scope()
        .map(|s| format!(" (it is {s} here)"))
        .unwrap_or_default();
    Failure::new(format!(
        "permission denied reading process {pid}{owner}: attaching needs ptrace rights over it. Run `timeglass attach` as the same user as the app, or with `sudo`; when `/proc/sys/kernel/yama/ptrace_scope` is 1 or more{scope}, the same user also needs `CAP_SYS_PTRACE` (sudo gives it); in a container, start it with `--cap-add SYS_PTRACE`"
    ))
}

/// A first Ctrl-C (or SIGTERM, SIGHUP) stops recording cleanly; a second
/// one while the store is being written ends `timeglass` at once.
fn stop_on_signals() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM, SIGHUP] {
        signal_hook::flag::register_conditional_shutdown(signal, 130, stop.clone())
            .and_then(|_| signal_hook::flag::register(signal, stop.clone()))
            .map_err(|e| Failure::new(format!("cannot handle signal {signal}: {e}")))?;
    }
    Ok(stop)
}

fn wait(pid: u32, duration: Option<Duration>, stop: &AtomicBool) -> End {
    let deadline = duration.map(|d| Instant::now() + d);
    loop {
        if stop.load(Ordering::Relaxed) {
            return End::Signal;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return End::Duration;
        }
        if !procfs::alive(pid) {
            return End::Exited;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsupported_python_says_which_ones_are() {
        let failure = probe_failure(
            std::process::id(),
            SourceError::UnsupportedPython {
                pid: 42,
                version: "3.16.0".into(),
            },
        );
        let text = failure.to_string();
        assert!(
            text.starts_with("process 42 runs Python 3.16.0, which TimeGlass cannot read"),
            "{text}"
        );
        assert!(text.contains("3.3 to 3.15"), "{text}");
        assert!(!text.contains('\n'));
    }

    #[test]
    fn permission_denied_explains_ptrace() {
        let text = permission_denied(std::process::id()).to_string();
        for needle in [
            "ptrace_scope",
            "CAP_SYS_PTRACE",
            "--cap-add SYS_PTRACE",
            "sudo",
            "same user",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
    }

    #[test]
    fn a_process_that_is_gone_is_no_such_process() {
        let text = probe_failure(
            u32::MAX - 1,
            SourceError::NoSuchProcess { pid: u32::MAX - 1 },
        )
        .to_string();
        assert!(text.starts_with("no process with pid"), "{text}");
    }
}
