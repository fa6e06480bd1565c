//! `timeglass run -- CMD...`: start the app with the marker injected, record
//! until it exits, store everything.

use std::io::ErrorKind;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitCode, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::iterator::SignalsInfo;
use signal_hook::low_level::siginfo::Cause;
use timeglass_recorder::{procfs, Follow};
use timeglass_server::{Server, ServerOptions};
use timeglass_store::Store;
use timeglass_wire::env;

use crate::args::RunArgs;
use crate::failure::{Failure, Result};
use crate::inject;
use crate::record::{print_summary, Recording, Target};

/// How long a command may run without any Python process in its tree before
/// `run` says it is not a Python app.
const PYTHON_GRACE: Duration = Duration::from_secs(5);

pub(crate) fn run(args: RunArgs) -> Result<ExitCode> {
    let Some((program, rest)) = args.command.split_first() else {
        return Err(Failure::usage(
            "no command to run; put the command that starts your app after `--`, e.g. `timeglass run -- uvicorn app:app`",
        ));
    };
    let name = program.to_string_lossy().into_owned();
    let package = inject::package_dir()?;
    let mut store = Store::open(&args.record.db.db)?;
    crate::prune::apply_retention(&mut store, &args.retention)?;
    let runtime = crate::runtime::Runtime::create()?;
    let pythonpath = inject::pythonpath(&inject::prepare(&package, runtime.path())?);
    if args.ui {
        start_dashboard(&args.record.db.db, args.ui_port)?;
    }

    let mut command = Command::new(program);
    command
        .args(rest)
        .env(env::RUNTIME_DIR, runtime.path())
        .env(env::AUTO, "1")
        .env("PYTHONPATH", pythonpath);
    if args.no_sql_params {
        command.env(env::SQL_PARAMS, "0");
    }
    if args.memory {
        command.env(env::MEMORY, "1");
    }
    let mut child = command.spawn().map_err(|e| spawn_failure(&name, e))?;
    forward_signals(child.id());

    let target = Target {
        command: args
            .command
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        cwd: std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        runtime_dir: runtime.path().to_owned(),
        follow: Follow::Directory,
    };
    let recording = Recording::start(&args.record, store, target)?;
    let started = Instant::now();
    let status = supervise(&mut child, &recording, &name, started);
    let (db, session) = (recording.db().to_owned(), recording.session());
    let summary = recording.finish(
        status
            .as_ref()
            .ok()
            .and_then(std::process::ExitStatus::code),
    )?;
    let status = status?;
    if summary.processes == 0 {
        return Err(nothing_recorded(&name, status, started.elapsed()));
    }
    print_summary(&summary, &db, session);
    Ok(ExitCode::from(child_exit_code(status)))
}

/// Waits for the child, checking once that it is a Python program at all.
fn supervise(
    child: &mut Child,
    recording: &Recording,
    name: &str,
    started: Instant,
) -> Result<ExitStatus> {
    let mut checked = false;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if !checked && started.elapsed() >= PYTHON_GRACE && recording.processes_seen() == 0 {
            checked = true;
            let pids = procfs::tree(child.id());
            if !pids.iter().any(|&p| procfs::is_python(p)) {
                terminate(child);
                return Err(Failure::usage(format!(
                    "`{name}` is not a Python process and started none within {} s; `timeglass run` records Python web apps, e.g. `timeglass run -- uvicorn app:app`",
                    PYTHON_GRACE.as_secs()
                )));
            }
            eprintln!(
                "timeglass: warning: no FastAPI or Starlette app has started in `{name}` yet; its requests are recorded as soon as one does"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn terminate(child: &mut Child) {
    let pid = Pid::from_raw(child.id() as i32);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn spawn_failure(name: &str, e: std::io::Error) -> Failure {
    match e.kind() {
        ErrorKind::NotFound => Failure::new(format!(
            "command not found: `{name}`; is it installed, and is the virtualenv that provides it active?"
        ))
        .with_code(127),
        ErrorKind::PermissionDenied => {
            Failure::new(format!("cannot execute `{name}`: permission denied")).with_code(126)
        }
        _ => Failure::new(format!("cannot start `{name}`: {e}")),
    }
}

fn nothing_recorded(name: &str, status: ExitStatus, ran: Duration) -> Failure {
    let how = match (status.code(), status.signal()) {
        (Some(code), _) => format!("with status {code}"),
        (None, Some(sig)) => format!("on signal {sig}"),
        _ => "".into(),
    };
    let code = match child_exit_code(status) {
        0 => 1,
        c => c,
    };
    Failure::new(format!(
        "`{name}` exited {how} after {:.1} s, before any FastAPI or Starlette app started; nothing was recorded",
        ran.as_secs_f64()
    ))
    .with_code(code)
}

/// The child's exit code, shell style (128 + signal when killed).
fn child_exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code.clamp(0, 255) as u8,
        (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
        _ => 1,
    }
}

/// Passes SIGINT/SIGTERM/SIGHUP/SIGQUIT sent to `timeglass` on to the app, so
/// it shuts down gracefully while we keep recording until it has exited.
/// A Ctrl-C typed in the terminal already reaches the app (same process
/// group): forwarding it too would count as a second Ctrl-C, which makes
/// uvicorn quit without finishing its requests.
fn forward_signals(child: u32) {
    let Ok(mut signals) = SignalsInfo::<WithOrigin>::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT]) else {
        return;
    };
    let child = Pid::from_raw(child as i32);
    let _ = std::thread::Builder::new()
        .name("timeglass-signals".into())
        .spawn(move || {
            for origin in signals.forever() {
                if matches!(origin.cause, Cause::Kernel) {
                    continue;
                }
                if let Ok(signal) = Signal::try_from(origin.signal) {
                    let _ = kill(child, signal);
                }
            }
        });
}

/// Binds the dashboard before the app starts (so a taken port fails at
/// once), then serves it on its own thread until `run` exits.
fn start_dashboard(db: &Path, port: u16) -> Result<()> {
    let options = ServerOptions {
        port,
        ..ServerOptions::new(db.to_path_buf())
    };
    let server = Server::bind(&options).map_err(|e| Failure::error(&e))?;
    eprintln!("timeglass: dashboard at {}", server.url());
    std::thread::spawn(move || {
        if let Err(e) = server.run() {
            eprintln!("timeglass: warning: the dashboard stopped: {e}");
        }
    });
    Ok(())
}
