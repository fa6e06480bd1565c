//! Bounded growth: deleting whole sessions, by age, by id, all of them, or
//! the oldest until the store is under its caps, and giving the space back.
//!
//! The unit is the session: its requests, their stacks, statements, calls
//! and context, its processes and their samples, its per-minute sums, its
//! endpoints' summed stacks and probe runs go together, so what is left is
//! always whole (and every sum is still the sum of what is left). A session being
//! recorded is never deleted. Interned frames, stacks and callers are
//! shared across sessions and stay.
//!
//! Space: a store created since schema 11 has `auto_vacuum = INCREMENTAL`,
//! so freed pages are returned with `PRAGMA incremental_vacuum`; an older
//! store is converted once, by a full `VACUUM`, the first time it is pruned.

use rusqlite::{params, Connection, TransactionBehavior};
use serde::Serialize;

use crate::SessionId;

/// Which sessions to delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prune {
    /// Ended sessions that started before this time (Unix ns).
    StartedBefore(i128),
    /// One session.
    Session(SessionId),
    /// Every ended session.
    All,
}

/// The caps a store is kept under (each `None` for no cap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Sessions that started longer ago than this are deleted.
    pub keep_days: Option<u32>,
    /// The oldest sessions go while more requests than this are stored.
    pub max_requests: Option<u64>,
    /// The oldest sessions go while the file is larger than this.
    pub max_bytes: Option<u64>,
}

/// Defaults of [`Retention`]: two weeks, a million requests, 1 GiB.
pub mod defaults {
    pub const KEEP_DAYS: u32 = 14;
    pub const MAX_REQUESTS: u64 = 1_000_000;
    pub const MAX_BYTES: u64 = 1 << 30;
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            keep_days: Some(defaults::KEEP_DAYS),
            max_requests: Some(defaults::MAX_REQUESTS),
            max_bytes: Some(defaults::MAX_BYTES),
        }
    }
}

/// What a prune did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    pub sessions: u64,
    pub requests: u64,
    /// Sessions that matched but are being recorded, so were kept.
    pub live_kept: u64,
    /// The database file's size before and after (pages in use x page size).
    pub bytes_before: u64,
    pub bytes_after: u64,
}

impl Pruned {
    fn add(&mut self, other: Pruned) {
        self.sessions += other.sessions;
        self.requests += other.requests;
        self.live_kept = self.live_kept.max(other.live_kept);
    }
}

pub(crate) fn file_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let pages: u64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    let size: u64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    Ok(pages * size)
}

/// Ids of the sessions `what` names, and how many of them are live.
fn chosen(conn: &Connection, what: &Prune) -> rusqlite::Result<(Vec<i64>, u64)> {
    let (sql, arg): (&str, Option<String>) = match what {
        Prune::StartedBefore(ns) => (
            "SELECT id, ended_at IS NULL FROM sessions WHERE started_at < ?1",
            Some(crate::clock::rfc3339_ms(*ns)),
        ),
        Prune::Session(id) => (
            "SELECT id, ended_at IS NULL FROM sessions WHERE id = ?1",
            Some(id.0.to_string()),
        ),
        Prune::All => ("SELECT id, ended_at IS NULL FROM sessions", None),
    };
    let mut stmt = conn.prepare(sql)?;
    let rows: Vec<(i64, bool)> = match arg {
        Some(a) => stmt
            .query_map(params![a], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?,
        None => stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?,
    };
    let live = rows.iter().filter(|(_, live)| *live).count() as u64;
    Ok((
        rows.into_iter()
            .filter(|(_, live)| !live)
            .map(|(id, _)| id)
            .collect(),
        live,
    ))
}

/// Deletes what `what` names, in one transaction, then gives space back.
pub(crate) fn prune(conn: &mut Connection, what: &Prune) -> rusqlite::Result<Pruned> {
    let bytes_before = file_bytes(conn)?;
    let mut done = delete_chosen(conn, what)?;
    if done.sessions > 0 {
        reclaim(conn)?;
    }
    done.bytes_before = bytes_before;
    done.bytes_after = file_bytes(conn)?;
    Ok(done)
}

fn delete_chosen(conn: &mut Connection, what: &Prune) -> rusqlite::Result<Pruned> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (ids, live_kept) = chosen(&tx, what)?;
    let mut done = Pruned {
        live_kept,
        ..Pruned::default()
    };
    for id in ids {
        done.requests += delete_session(&tx, id)?;
        done.sessions += 1;
    }
    tx.commit()?;
    Ok(done)
}

/// Deletes session `id` and everything of it; returns its request count.
fn delete_session(conn: &Connection, id: i64) -> rusqlite::Result<u64> {
    const OF_REQUESTS: &str = "IN (SELECT id FROM requests WHERE session_id = ?1)";
    for table in [
        "request_stacks",
        "request_samples",
        "request_alloc_stacks",
        "request_context",
        "queries",
        "calls",
    ] {
        conn.execute(
            &format!("DELETE FROM {table} WHERE request_id {OF_REQUESTS}"),
            params![id],
        )?;
    }
    let requests = conn.execute("DELETE FROM requests WHERE session_id = ?1", params![id])?;
    conn.execute(
        "DELETE FROM process_samples
         WHERE process_id IN (SELECT id FROM processes WHERE session_id = ?1)",
        params![id],
    )?;
    for table in ["probe_operations", "probe_results"] {
        conn.execute(
            &format!(
                "DELETE FROM {table} WHERE run_id IN (SELECT id FROM probe_runs WHERE session_id = ?1)"
            ),
            params![id],
        )?;
    }
    for table in [
        "probe_runs",
        "outside_stacks",
        "outside_samples",
        "endpoint_minutes",
        "endpoint_stacks",
        "endpoint_alloc_stacks",
        "processes",
    ] {
        conn.execute(
            &format!("DELETE FROM {table} WHERE session_id = ?1"),
            params![id],
        )?;
    }
    // A baseline is a document of its own; it only forgets where it came from.
    conn.execute(
        "UPDATE baselines SET session_id = NULL WHERE session_id = ?1",
        params![id],
    )?;
    conn.execute("DELETE FROM sessions WHERE id = ?1", params![id])?;
    Ok(requests as u64)
}

/// Returns free pages to the file system and empties the WAL.
fn reclaim(conn: &Connection) -> rusqlite::Result<()> {
    let mode: i64 = conn.pragma_query_value(None, "auto_vacuum", |r| r.get(0))?;
    if mode == 2 {
        // Each step frees one page: step it to the end.
        let mut stmt = conn.prepare("PRAGMA incremental_vacuum")?;
        let mut rows = stmt.query([])?;
        while rows.next()?.is_some() {}
    } else {
        // Switching needs a full VACUUM once; every later prune is incremental.
        // VACUUM copies the whole database through a temporary one, which
        // goes to a file here, not memory (`temp_store = MEMORY` is for the
        // writer's statement journals).
        conn.execute_batch(
            "PRAGMA temp_store = FILE; PRAGMA auto_vacuum = INCREMENTAL; VACUUM; \
             PRAGMA temp_store = MEMORY;",
        )?;
    }
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

/// Deletes the oldest ended sessions until `retention` holds.
pub(crate) fn enforce(
    conn: &mut Connection,
    retention: &Retention,
    now_unix_ns: i128,
) -> rusqlite::Result<Pruned> {
    let bytes_before = file_bytes(conn)?;
    let mut done = Pruned::default();
    if let Some(days) = retention.keep_days {
        let cutoff = now_unix_ns - i128::from(days) * 86_400 * 1_000_000_000;
        done.add(delete_chosen(conn, &Prune::StartedBefore(cutoff))?);
    }
    loop {
        let over_requests = match retention.max_requests {
            Some(max) => stored_requests(conn)? > max,
            None => false,
        };
        let over_bytes = match retention.max_bytes {
            Some(max) => used_bytes(conn)? > max,
            None => false,
        };
        if !over_requests && !over_bytes {
            break;
        }
        let oldest: Option<i64> = conn
            .query_row(
                "SELECT id FROM sessions WHERE ended_at IS NOT NULL ORDER BY started_at, id LIMIT 1",
                [],
                |r| r.get(0),
            )
            .ok();
        let Some(oldest) = oldest else { break };
        done.add(delete_chosen(conn, &Prune::Session(SessionId(oldest)))?);
    }
    if done.sessions > 0 {
        reclaim(conn)?;
    }
    done.bytes_before = bytes_before;
    done.bytes_after = file_bytes(conn)?;
    Ok(done)
}

fn stored_requests(conn: &Connection) -> rusqlite::Result<u64> {
    // `max(id)` minus `min(id)` would miss holes; count uses the smallest index.
    conn.query_row("SELECT count(*) FROM requests", [], |r| r.get(0))
}

/// Pages holding data (the file less its free pages), in bytes.
fn used_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let free: u64 = conn.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
    let size: u64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    Ok(file_bytes(conn)?.saturating_sub(free * size))
}
