//! `timeglass sessions`: what was recorded, newest first, with the processes
//! that crashed.

use std::io::Write;
use std::process::ExitCode;

use timeglass_store::{local_time, SessionRow, Store};

use crate::args::SessionsArgs;
use crate::failure::Result;
use crate::table::render;

pub(crate) fn sessions(args: SessionsArgs) -> Result<ExitCode> {
    let store = Store::open_existing(&args.db.db)?;
    let mut rows = store.sessions()?;
    rows.truncate(args.limit);
    let mut out = std::io::stdout().lock();
    if args.json {
        let json = serde_json::to_string_pretty(&rows).expect("rows serialize");
        writeln!(out, "{json}")?;
    } else if rows.is_empty() {
        writeln!(
            out,
            "No sessions recorded in `{}` yet. Record one with `timeglass run -- uvicorn app:app`.",
            args.db.db.display()
        )?;
    } else {
        write!(out, "{}", table(&rows))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// How the session ended: the app's exit code under `run`; `-` after
/// `attach` (the app went on running, or was not ours to wait for);
/// `interrupted` when its recorder died first.
fn exit(s: &SessionRow) -> String {
    if s.interrupted {
        return "interrupted".into();
    }
    match (&s.ended_at, s.exit_code) {
        (None, _) => "recording".into(),
        (Some(_), Some(code)) => code.to_string(),
        (Some(_), None) => "-".into(),
    }
}

fn table(rows: &[SessionRow]) -> String {
    let header = [
        "ID",
        "STARTED",
        "COMMAND",
        "PROCESSES",
        "REQUESTS",
        "EXIT",
        "CRASHED",
        "INCOMPLETE",
        "LOST",
    ];
    let right = [true, false, false, true, true, true, true, true, true];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|s| {
            vec![
                s.id.0.to_string(),
                local_time(&s.started_at),
                shorten(&s.command.join(" "), 60),
                s.processes.to_string(),
                s.requests.to_string(),
                exit(s),
                s.crashed.to_string(),
                s.incomplete.to_string(),
                s.lost_requests.to_string(),
            ]
        })
        .collect();
    render(&header, &right, &cells)
}

/// At most `max` characters, with an ellipsis when cut.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max - 1).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_commands_are_cut() {
        assert_eq!(shorten("uvicorn app:app", 60), "uvicorn app:app");
        assert_eq!(shorten("abcdef", 4), "abc…");
    }
}
