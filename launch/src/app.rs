//! The app's process: started with the marker's environment, sent the
//! signals `timeglass` receives, waited for, stopped.

use std::ffi::{OsStr, OsString};
use std::io::ErrorKind;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::iterator::SignalsInfo;
use signal_hook::low_level::siginfo::Cause;

use crate::LaunchError;

/// How often [`App::wait`] looks at the app (and asks its check).
const POLL: Duration = Duration::from_millis(20);
/// How long a stopped app has between SIGTERM and SIGKILL.
const TERMINATE_GRACE: Duration = Duration::from_secs(3);

/// The running app.
pub struct App {
    child: Child,
    name: String,
    started: Instant,
}

impl App {
    /// Starts `command` (program and arguments) with `env` added to this
    /// process's environment, and forwards to it the SIGINT, SIGTERM,
    /// SIGHUP and SIGQUIT that `timeglass` receives from another process.
    pub fn spawn<K, V>(
        command: &[OsString],
        env: impl IntoIterator<Item = (K, V)>,
    ) -> Result<App, LaunchError>
    where
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let Some((program, rest)) = command.split_first() else {
            return Err(LaunchError::NoCommand);
        };
        let name = program.to_string_lossy().into_owned();
        let child = Command::new(program)
            .args(rest)
            .envs(env)
            .spawn()
            .map_err(|source| match source.kind() {
                ErrorKind::NotFound => LaunchError::NotFound(name.clone()),
                ErrorKind::PermissionDenied => LaunchError::PermissionDenied(name.clone()),
                _ => LaunchError::Spawn {
                    name: name.clone(),
                    source,
                },
            })?;
        forward_signals(child.id());
        Ok(App {
            child,
            name,
            started: Instant::now(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The program as the user typed it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long ago it was started.
    pub fn running_for(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits for the app to exit. Meanwhile `check` is asked every 20 ms
    /// with the app's pid and how long it has run; when it answers with a
    /// reason, the app is stopped and the reason returned as
    /// [`LaunchError::Stopped`].
    pub fn wait(
        &mut self,
        mut check: impl FnMut(u32, Duration) -> Option<String>,
    ) -> Result<ExitStatus, LaunchError> {
        loop {
            let waited = self.child.try_wait().map_err(|source| LaunchError::Wait {
                name: self.name.clone(),
                source,
            })?;
            if let Some(status) = waited {
                return Ok(status);
            }
            if let Some(reason) = check(self.pid(), self.running_for()) {
                self.terminate();
                return Err(LaunchError::Stopped(reason));
            }
            std::thread::sleep(POLL);
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within 3 s.
    pub fn terminate(&mut self) {
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + TERMINATE_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(POLL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The app's exit code, shell style (128 + signal when killed).
pub fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code.clamp(0, 255) as u8,
        (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
        _ => 1,
    }
}

/// Passes SIGINT/SIGTERM/SIGHUP/SIGQUIT sent to `timeglass` on to the app, so
/// it shuts down gracefully while the recording goes on until it has exited.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_exit_code_is_a_shells() {
        let mut app = App::spawn(&cmd(&["sh", "-c", "exit 3"]), [("X", "1")]).unwrap();
        let status = app.wait(|_, _| None).unwrap();
        assert_eq!(exit_code(status), 3);
        let mut app = App::spawn(&cmd(&["sh", "-c", "kill -9 $$"]), [("X", "1")]).unwrap();
        assert_eq!(exit_code(app.wait(|_, _| None).unwrap()), 137);
    }

    #[test]
    fn the_environment_reaches_the_app() {
        let mut app = App::spawn(
            &cmd(&["sh", "-c", "test \"$TIMEGLASS_LAUNCH_TEST\" = yes"]),
            [("TIMEGLASS_LAUNCH_TEST", "yes")],
        )
        .unwrap();
        assert_eq!(exit_code(app.wait(|_, _| None).unwrap()), 0);
    }

    #[test]
    fn a_check_that_says_stop_stops_the_app() {
        let mut app = App::spawn(&cmd(&["sleep", "30"]), [("X", "1")]).unwrap();
        let started = Instant::now();
        let err = app
            .wait(|_, ran| (ran > Duration::from_millis(100)).then(|| "enough".to_string()))
            .unwrap_err();
        assert!(
            matches!(err, LaunchError::Stopped(ref r) if r == "enough"),
            "{err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "SIGTERM ended it"
        );
    }

    #[test]
    fn a_missing_or_unrunnable_command_says_so_with_a_shells_code() {
        let err = App::spawn(&cmd(&["timeglass-no-such-command"]), [("X", "1")])
            .err()
            .unwrap();
        assert_eq!(err.shell_code(), Some(127));
        assert!(err
            .to_string()
            .starts_with("command not found: `timeglass-no-such-command`"));
        let dir = tempfile::tempdir().unwrap();
        let err = App::spawn(&[dir.path().as_os_str().to_owned()], [("X", "1")])
            .err()
            .unwrap();
        assert_eq!(err.shell_code(), Some(126), "{err}");
        assert!(matches!(
            App::spawn(&[], [("X", "1")]),
            Err(LaunchError::NoCommand)
        ));
    }
}
