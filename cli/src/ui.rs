//! `timeglass ui`: serve the dashboard until interrupted.

use std::io::Write;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use timeglass_server::{Server, ServerOptions};

use crate::args::UiArgs;
use crate::failure::{Failure, Result};

pub(crate) fn ui(args: UiArgs) -> Result<ExitCode> {
    let options = ServerOptions {
        db: args.db.db,
        host: args.host,
        port: args.port,
    };
    let server = Server::bind(&options).map_err(|e| Failure::error(&e))?;
    let url = server.url();
    let mut out = std::io::stdout().lock();
    writeln!(out, "TimeGlass dashboard at {url} (Ctrl-C to stop)")?;
    if server.is_exposed() {
        writeln!(out, "warning: other machines can reach this dashboard, and recorded requests may contain secrets (tokens, cookies, personal data)")?;
    }
    drop(out);
    if args.open {
        open_browser(&url);
    }
    // Ctrl-C, SIGTERM or SIGHUP stop it, also where SIGINT was inherited
    // as ignored (a script's background job, `nohup`).
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM, SIGHUP] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| Failure::new(format!("cannot handle signal {signal}: {e}")))?;
    }
    server.run_until(stop).map_err(|e| Failure::error(&e))?;
    Ok(ExitCode::SUCCESS)
}

/// Best effort: the URL is printed anyway.
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let child = Command::new(opener)
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match child {
        // Reaped in the background so it leaves no zombie.
        Ok(mut child) => drop(std::thread::spawn(move || child.wait())),
        Err(e) => eprintln!("timeglass: could not open a browser with `{opener}`: {e}"),
    }
}
