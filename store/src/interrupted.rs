//! Sessions whose recorder died: found the next time any command opens the
//! store, and ended as "interrupted" with what was lost.
//!
//! The recorder's process is named by its pid and its start time (clock
//! ticks since boot, `/proc/PID/stat` field 22): a pid alone may have been
//! reused by an unrelated process since. This reads `/proc` itself rather
//! than through the sampler's `procfs`, which the store must not depend on.

use rusqlite::{params, Connection};

/// This process's pid and start time, as a session's recorder.
pub(crate) fn this_process() -> (u32, Option<u64>) {
    let pid = std::process::id();
    (pid, start_ticks(pid))
}

/// When `pid` started (ticks since boot); `None` when it is gone or a zombie.
pub(crate) fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start(&stat)
}

/// Field 22 of a `/proc/PID/stat` line; the command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`.
fn parse_start(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // `state` was field 3; starttime is field 22.
    fields.nth(22 - 4)?.parse().ok()
}

/// Ends every unended session whose recorder is gone; returns how many.
pub(crate) fn settle(conn: &Connection) -> rusqlite::Result<usize> {
    let unended: Vec<(i64, u32, Option<u64>)> = {
        let mut stmt = conn.prepare_cached(
            "SELECT id, recorder_pid, recorder_started FROM sessions
             WHERE ended_at IS NULL AND recorder_pid IS NOT NULL",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut settled = 0;
    for (id, pid, started) in unended {
        if started.is_some() && start_ticks(pid) == started {
            continue;
        }
        settled += conn
            .prepare_cached(
                "UPDATE sessions SET interrupted = 1,
                     ended_at = coalesce(progress_at, started_at),
                     lost_requests = max(0, requests_seen
                         - (SELECT count(*) FROM requests r WHERE r.session_id = sessions.id))
                 WHERE id = ?1 AND ended_at IS NULL",
            )?
            .execute(params![id])?;
    }
    Ok(settled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_start_time_past_a_strange_command_name() {
        let line = "4242 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 19 20";
        assert_eq!(parse_start(line), Some(777));
        let zombie = "4242 (x) Z 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 19 20";
        assert_eq!(parse_start(zombie), None);
        assert_eq!(parse_start("garbage"), None);
    }

    fn session(store: &mut crate::Store) -> crate::SessionId {
        let id = store.begin_session(&crate::testing::session()).unwrap();
        store.set_recorder(id).unwrap();
        store.record_progress(id, 5).unwrap();
        id
    }

    #[test]
    fn a_session_whose_recorder_is_gone_is_interrupted_on_the_next_open() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s.db");
        let mut store = crate::Store::open(&path).unwrap();
        let live = session(&mut store);
        let dead = session(&mut store);
        // Same pid, another start time: the pid was reused by someone else.
        store
            .conn
            .execute(
                "UPDATE sessions SET recorder_started = recorder_started + 1 WHERE id = ?1",
                params![dead.0],
            )
            .unwrap();
        drop(store);
        let store = crate::Store::open_existing(&path).unwrap();
        let rows = store.sessions().unwrap();
        let row = |id: crate::SessionId| rows.iter().find(|r| r.id == id).unwrap();
        assert!(!row(live).interrupted);
        assert_eq!(row(live).ended_at, None);
        assert!(row(dead).interrupted);
        assert!(row(dead).ended_at.is_some());
        assert_eq!(row(dead).lost_requests, 5);
    }

    #[test]
    fn this_process_is_alive() {
        let (pid, started) = this_process();
        assert!(started.is_some());
        assert_eq!(start_ticks(pid), started);
    }
}
