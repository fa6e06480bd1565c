//! `timeglass run -- CMD...`: start the app with the marker injected
//! (`timeglass-launch`), record until it exits, store everything.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitCode, ExitStatus};
use std::time::Duration;

use timeglass_launch::{exit_code, inject, App, LaunchError, Runtime};
use timeglass_recorder::{procfs, Follow};
use timeglass_server::{Server, ServerOptions};
use timeglass_store::Store;
use timeglass_wire::env;

use crate::args::RunArgs;
use crate::failure::{Failure, Result};
use crate::record::{print_summary, Recording, Target};

/// How long a command may run without any Python process in its tree before
/// `run` says it is not a Python app.
const PYTHON_GRACE: Duration = Duration::from_secs(5);

pub(crate) fn run(args: RunArgs) -> Result<ExitCode> {
    if args.command.is_empty() {
        return Err(launch_failure(LaunchError::NoCommand));
    }
    let package = inject::package_dir().map_err(launch_failure)?;
    let mut store = Store::open(&args.record.db.db)?;
    crate::prune::apply_retention(&mut store, &args.retention)?;
    let runtime = Runtime::create().map_err(launch_failure)?;
    let pythonpath =
        inject::pythonpath(&inject::prepare(&package, runtime.path()).map_err(launch_failure)?);
    if args.ui {
        start_dashboard(&args.record.db.db, args.ui_port)?;
    }

    let mut env: Vec<(&str, OsString)> = vec![
        (env::RUNTIME_DIR, runtime.path().into()),
        (env::AUTO, "1".into()),
        ("PYTHONPATH", pythonpath),
    ];
    if args.no_sql_params {
        env.push((env::SQL_PARAMS, "0".into()));
    }
    if args.memory {
        env.push((env::MEMORY, "1".into()));
    }
    let mut app = App::spawn(&args.command, env).map_err(launch_failure)?;

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
    let name = app.name().to_string();
    let status = app.wait(python_check(&recording, &name));
    let (db, session) = (recording.db().to_owned(), recording.session());
    let summary = recording.finish(status.as_ref().ok().and_then(ExitStatus::code))?;
    let status = status.map_err(launch_failure)?;
    if summary.processes == 0 {
        return Err(nothing_recorded(&name, status, app.running_for()));
    }
    print_summary(&summary, &db, session);
    Ok(ExitCode::from(exit_code(status)))
}

/// Checks once, after [`PYTHON_GRACE`], that the app is a Python program at
/// all: a command with no Python process in its tree is stopped; a Python
/// one whose app has not started yet gets a warning.
fn python_check<'a>(
    recording: &'a Recording,
    name: &'a str,
) -> impl FnMut(u32, Duration) -> Option<String> + 'a {
    let mut checked = false;
    move |pid, ran| {
        if checked || ran < PYTHON_GRACE || recording.processes_seen() > 0 {
            return None;
        }
        checked = true;
        if !procfs::tree(pid).iter().any(|&p| procfs::is_python(p)) {
            return Some(format!(
                "`{name}` is not a Python process and started none within {} s; `timeglass run` records Python web apps, e.g. `timeglass run -- uvicorn app:app`",
                PYTHON_GRACE.as_secs()
            ));
        }
        eprintln!(
            "timeglass: warning: no FastAPI or Starlette app has started in `{name}` yet; its requests are recorded as soon as one does"
        );
        None
    }
}

/// The CLI's one line for a launch error, with a shell's exit code for a
/// command that is missing or cannot run, and 2 for a usage mistake.
fn launch_failure(e: LaunchError) -> Failure {
    let code = e.shell_code();
    let usage = e.is_usage();
    let failure = Failure::error(&e);
    match (code, usage) {
        (Some(code), _) => failure.with_code(code),
        (None, true) => failure.with_code(2),
        (None, false) => failure,
    }
}

fn nothing_recorded(name: &str, status: ExitStatus, ran: Duration) -> Failure {
    let how = match (status.code(), status.signal()) {
        (Some(code), _) => format!("with status {code}"),
        (None, Some(sig)) => format!("on signal {sig}"),
        _ => String::new(),
    };
    let code = match exit_code(status) {
        0 => 1,
        c => c,
    };
    Failure::new(format!(
        "`{name}` exited {how} after {:.1} s, before any FastAPI or Starlette app started; nothing was recorded",
        ran.as_secs_f64()
    ))
    .with_code(code)
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
