//! `timeglass prune` and `timeglass clear`: deleting recorded sessions, and
//! the retention settings `run` applies before it records.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use timeglass_store::{Prune, Pruned, Retention, SessionId, Store};

use crate::args::DbArg;
use crate::failure::{Failure, Result};

#[derive(Args)]
pub(crate) struct PruneArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Delete the sessions that started longer ago than this: `7d`, `12h`,
    /// `30m`, `2w`.
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub older_than: Option<Duration>,
    /// Delete this one session (see `timeglass sessions`).
    #[arg(long, value_name = "ID")]
    pub session: Option<i64>,
}

#[derive(Args)]
pub(crate) struct ClearArgs {
    #[command(flatten)]
    pub db: DbArg,
}

/// How long to keep recordings, on `run`.
#[derive(Args, Clone, Debug)]
pub(crate) struct RetentionArgs {
    /// Delete sessions that started more than this many days ago before
    /// recording (default 14; also `keep_days` under `[retention]` of
    /// `timeglass.toml` or `[tool.timeglass.retention]` of `pyproject.toml`,
    /// beside `max_requests` and `max_size_mb`; 0 keeps everything).
    #[arg(long, value_name = "DAYS")]
    pub keep_days: Option<u32>,
}

pub(crate) fn prune(args: PruneArgs) -> Result<ExitCode> {
    let what = match (args.older_than, args.session) {
        (Some(_), Some(_)) => {
            return Err(Failure::usage(
                "give either `--older-than` or `--session`, not both",
            ))
        }
        (Some(age), None) => Prune::StartedBefore(now_ns() - age.as_nanos() as i128),
        (None, Some(id)) => Prune::Session(SessionId(id)),
        (None, None) => {
            return Err(Failure::usage(
                "say what to prune: `--older-than 7d` or `--session ID` (`timeglass clear` deletes everything)",
            ))
        }
    };
    let mut store = Store::open_existing(&args.db.db)?;
    if let Prune::Session(id) = what {
        if !store.sessions()?.iter().any(|s| s.id == id) {
            return Err(Failure::usage(format!(
                "no session {} in `{}`; `timeglass sessions` lists them",
                id.0,
                args.db.db.display()
            )));
        }
    }
    let done = store.prune(&what)?;
    if let (Prune::Session(id), 0, 1) = (&what, done.sessions, done.live_kept) {
        return Err(Failure::new(format!(
            "session {} is being recorded; stop its `timeglass run` first",
            id.0
        )));
    }
    say(&done, &args.db.db);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn clear(args: ClearArgs) -> Result<ExitCode> {
    let mut store = Store::open_existing(&args.db.db)?;
    let done = store.prune(&Prune::All)?;
    say(&done, &args.db.db);
    Ok(ExitCode::SUCCESS)
}

/// Applies the retention settings to the store about to be recorded into.
pub(crate) fn apply_retention(store: &mut Store, args: &RetentionArgs) -> Result<()> {
    let retention = retention(args, &[Path::new(".")])?;
    let done = store.enforce_retention(&retention)?;
    if done.sessions > 0 {
        eprintln!(
            "timeglass: deleted {} old sessions ({} requests) to keep the store within its retention settings (`--keep-days`, `[retention]`)",
            done.sessions, done.requests
        );
    }
    Ok(())
}

/// The settings: `--keep-days` over the configuration over the defaults.
fn retention(args: &RetentionArgs, dirs: &[&Path]) -> Result<Retention> {
    let mut r = Retention::default();
    if let Some((path, section)) = timeglass_report::thresholds::find_section(dirs, "retention")
        .map_err(|e| Failure::error(&e))?
    {
        let bad = |key: &str| {
            Failure::usage(format!(
                "`{key}` in the retention settings of `{}` must be a whole number of at least 0",
                path.display()
            ))
        };
        let number = |key: &str| -> Result<Option<u64>> {
            match section.get(key) {
                None => Ok(None),
                Some(v) => v
                    .as_integer()
                    .and_then(|n| u64::try_from(n).ok())
                    .map(Some)
                    .ok_or_else(|| bad(key)),
            }
        };
        if let Some(days) = number("keep_days")? {
            r.keep_days = Some(u32::try_from(days).map_err(|_| bad("keep_days"))?);
        }
        if let Some(n) = number("max_requests")? {
            r.max_requests = Some(n);
        }
        if let Some(mb) = number("max_size_mb")? {
            r.max_bytes = Some(mb.saturating_mul(1 << 20));
        }
        if let Some(key) = section
            .as_table()
            .and_then(|t| t.keys().find(|k| !KEYS.contains(&k.as_str())))
        {
            return Err(Failure::usage(format!(
                "unknown retention setting `{key}` in `{}`; known: {}",
                path.display(),
                KEYS.join(", ")
            )));
        }
    }
    if let Some(days) = args.keep_days {
        r.keep_days = Some(days);
    }
    // 0 means no limit, for each setting.
    r.keep_days = r.keep_days.filter(|&d| d > 0);
    r.max_requests = r.max_requests.filter(|&n| n > 0);
    r.max_bytes = r.max_bytes.filter(|&n| n > 0);
    Ok(r)
}

const KEYS: [&str; 3] = ["keep_days", "max_requests", "max_size_mb"];

fn say(done: &Pruned, db: &Path) {
    let mb = |b: u64| b as f64 / (1 << 20) as f64;
    eprintln!(
        "timeglass: deleted {} sessions ({} requests) from `{}`; it went from {:.1} MB to {:.1} MB",
        done.sessions,
        done.requests,
        db.display(),
        mb(done.bytes_before),
        mb(done.bytes_after),
    );
    if done.live_kept > 0 {
        eprintln!(
            "timeglass: kept {} session(s) still being recorded",
            done.live_kept
        );
    }
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// `7d`, `12h`, `30m`, `45s`, `2w`.
pub(crate) fn parse_age(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not an age like `7d`, `12h` or `30m`"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(format!(
                "`{text}` is not an age like `7d`, `12h` or `30m` (units: s, m, h, d, w)"
            ))
        }
    };
    Ok(Duration::from_secs(n.saturating_mul(seconds)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(parse_age("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert_eq!(parse_age("30m").unwrap(), Duration::from_secs(1800));
        assert!(parse_age("7").unwrap_err().contains("units"));
        assert!(parse_age("d").is_err());
        assert!(parse_age("-1d").is_err());
    }

    fn dir_with(text: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("timeglass.toml"), text).unwrap();
        dir
    }

    #[test]
    fn settings_come_from_the_flag_then_the_file_then_the_defaults() {
        let none = RetentionArgs { keep_days: None };
        let empty = tempfile::tempdir().unwrap();
        let r = |args: &RetentionArgs, dir: &Path| retention(args, &[dir]).ok().unwrap();
        assert_eq!(r(&none, empty.path()), Retention::default());
        let dir = dir_with("[retention]\nkeep_days = 3\nmax_requests = 0\nmax_size_mb = 10\n");
        assert_eq!(
            r(&none, dir.path()),
            Retention {
                keep_days: Some(3),
                max_requests: None,
                max_bytes: Some(10 << 20),
            }
        );
        let flag = RetentionArgs { keep_days: Some(1) };
        assert_eq!(r(&flag, dir.path()).keep_days, Some(1));
        let bad = dir_with("[retention]\nkeep_dayz = 3\n");
        let err = retention(&none, &[bad.path()]).err().unwrap().to_string();
        assert!(
            err.contains("unknown retention setting `keep_dayz`"),
            "{err}"
        );
        let negative = dir_with("[retention]\nmax_requests = -1\n");
        assert!(retention(&none, &[negative.path()]).is_err());
    }
}
