//! `timeglass probe` runs: writing one, reading the latest of a session
//! back as a [`ProbeSummary`] (what `report` scores "bad input answered
//! with 4xx" and "coverage" from), and finding the recorded requests the
//! probe sent.
//!
//! Times cross this API as milliseconds since the Unix epoch; the tables
//! keep the store's one timestamp format.

use std::collections::BTreeSet;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;
pub use timeglass_model::ProbeCandidate;

use crate::clock;
use crate::SessionId;

/// How the app answered one probe request; stored as [`as_str`](Self::as_str).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeOutcome {
    /// 4xx.
    Rejected,
    /// 1xx, 2xx or 3xx.
    Accepted,
    /// 5xx.
    Failed,
    /// No answer within the probe's timeout.
    Hung,
    /// Refused, reset or closed without an answer.
    ConnectionError,
}

impl ProbeOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeOutcome::Rejected => "rejected",
            ProbeOutcome::Accepted => "accepted",
            ProbeOutcome::Failed => "failed",
            ProbeOutcome::Hung => "hung",
            ProbeOutcome::ConnectionError => "connection_error",
        }
    }
}

/// A finished probe run, as the CLI writes it.
#[derive(Clone, Debug, PartialEq)]
pub struct NewProbeRun {
    /// The session recording the app, if one was.
    pub session: Option<SessionId>,
    pub started_ms: i64,
    pub ended_ms: i64,
    pub url: String,
    pub schema_url: String,
    /// `--max-requests` cut some requests off.
    pub truncated: bool,
    /// Every operation of the schema, probed or not.
    pub operations: Vec<NewProbeOperation>,
    /// Every request sent, in sending order.
    pub results: Vec<NewProbeResult>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewProbeOperation {
    pub method: String,
    pub route: String,
    /// Requests sent to it.
    pub cases: u32,
    /// Why it got none, when it got none.
    pub skipped: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewProbeResult {
    pub method: String,
    pub route: String,
    pub kind: String,
    pub target: String,
    pub url: String,
    pub status: Option<u16>,
    pub outcome: ProbeOutcome,
    pub elapsed_us: u64,
    pub error: Option<String>,
    /// The recorded request that served it.
    pub request_id: Option<i64>,
}

/// The latest probe run of a session, summed up.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProbeSummary {
    pub run_id: i64,
    pub started_at: String,
    /// Requests sent.
    pub sent: u64,
    /// Answered 4xx: the bad input was refused, as it should be.
    pub rejected_4xx: u64,
    /// Answered 1xx-3xx.
    pub accepted: u64,
    /// Answered 5xx.
    pub failed_5xx: u64,
    /// No answer within the timeout.
    pub hung: u64,
    /// Refused, reset or closed without an answer.
    pub connection_errors: u64,
    /// `--max-requests` cut the run short.
    pub truncated: bool,
    /// Every operation of the app's schema as (method, route), sorted:
    /// what coverage is measured against.
    pub operations: Vec<(String, String)>,
    /// The recorded requests that were probe traffic (to leave out of
    /// coverage and of the latency figures).
    pub request_ids: BTreeSet<i64>,
}

fn rfc3339(ms: i64) -> String {
    clock::rfc3339_ms(i128::from(ms) * 1_000_000)
}

pub(crate) fn write_run(conn: &mut Connection, run: &NewProbeRun) -> rusqlite::Result<i64> {
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO probe_runs (session_id, started_at, ended_at, url, schema_url, operations,
             sent, truncated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            run.session.map(|s| s.0),
            rfc3339(run.started_ms),
            rfc3339(run.ended_ms),
            run.url,
            run.schema_url,
            run.operations.len(),
            run.results.len(),
            run.truncated,
        ],
    )?;
    let id = tx.last_insert_rowid();
    write_rows(&tx, id, run)?;
    tx.commit()?;
    Ok(id)
}

fn write_rows(tx: &Transaction<'_>, id: i64, run: &NewProbeRun) -> rusqlite::Result<()> {
    let mut op = tx.prepare(
        "INSERT INTO probe_operations (run_id, method, route, cases, skipped)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for o in &run.operations {
        op.execute(params![id, o.method, o.route, o.cases, o.skipped])?;
    }
    let mut result = tx.prepare(
        "INSERT INTO probe_results (run_id, seq, method, route, kind, target, url, status,
             outcome, elapsed_us, error, request_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?;
    for (seq, r) in run.results.iter().enumerate() {
        result.execute(params![
            id,
            seq,
            r.method,
            r.route,
            r.kind,
            r.target,
            r.url,
            r.status,
            r.outcome.as_str(),
            r.elapsed_us,
            r.error,
            r.request_id,
        ])?;
    }
    Ok(())
}

pub(crate) fn summary(
    conn: &Connection,
    session: SessionId,
) -> rusqlite::Result<Option<ProbeSummary>> {
    let run = conn
        .query_row(
            "SELECT id, started_at, truncated FROM probe_runs WHERE session_id = ?1
             ORDER BY id DESC LIMIT 1",
            params![session.0],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, bool>(2)?,
                ))
            },
        )
        .optional()?;
    let Some((run_id, started_at, truncated)) = run else {
        return Ok(None);
    };
    let mut s = ProbeSummary {
        run_id,
        started_at,
        truncated,
        ..ProbeSummary::default()
    };
    let mut counts = conn.prepare(
        "SELECT outcome, count(*) FROM probe_results WHERE run_id = ?1 GROUP BY outcome",
    )?;
    let rows = counts.query_map(params![run_id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?))
    })?;
    for row in rows {
        let (outcome, n) = row?;
        s.sent += n;
        match outcome.as_str() {
            "rejected" => s.rejected_4xx += n,
            "accepted" => s.accepted += n,
            "failed" => s.failed_5xx += n,
            "hung" => s.hung += n,
            _ => s.connection_errors += n,
        }
    }
    let mut ops = conn.prepare(
        "SELECT method, route FROM probe_operations WHERE run_id = ?1 ORDER BY route, method",
    )?;
    s.operations = ops
        .query_map(params![run_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut ids = conn.prepare(
        "SELECT request_id FROM probe_results WHERE run_id = ?1 AND request_id IS NOT NULL",
    )?;
    s.request_ids = ids
        .query_map(params![run_id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(s))
}

pub(crate) fn candidates(
    conn: &Connection,
    session: SessionId,
    since_ms: i64,
    tag_header: &str,
) -> rusqlite::Result<Vec<ProbeCandidate>> {
    let mut stmt = conn.prepare(
        "SELECT r.id, r.method, r.path, c.query, r.started_at, c.request_headers, r.status
         FROM requests r LEFT JOIN request_context c ON c.request_id = r.id
         WHERE r.session_id = ?1 AND r.started_at >= ?2
         ORDER BY r.id",
    )?;
    let rows = stmt.query_map(params![session.0, rfc3339(since_ms)], |r| {
        let started_at: String = r.get(4)?;
        let headers: Option<String> = r.get(5)?;
        Ok(ProbeCandidate {
            id: r.get(0)?,
            method: r.get(1)?,
            path: r.get(2)?,
            query: r.get(3)?,
            start_ms: started_at
                .parse::<jiff::Timestamp>()
                .map_or(i64::MIN, jiff::Timestamp::as_millisecond),
            tag: headers.and_then(|h| header(&h, tag_header)),
            status: r.get(6)?,
        })
    })?;
    rows.collect()
}

/// The value of header `name` in a stored header list (`[[name, value], ...]`).
fn header(json: &str, name: &str) -> Option<String> {
    let headers: Vec<(String, String)> = serde_json::from_str(json).ok()?;
    headers
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use timeglass_model::{ProfiledRequest, Request, RequestContext};

    use super::*;
    use crate::{Batch, ClockMap, NewSession, Store};

    const T0_MS: i64 = 1_700_000_000_000;

    fn session(store: &mut Store) -> SessionId {
        let clock = ClockMap {
            unix_ns: T0_MS * 1_000_000,
            ..crate::testing::CLOCK
        };
        let session = NewSession {
            clock,
            ..crate::testing::session()
        };
        store.begin_session(&session).unwrap()
    }

    fn request(marker_id: u64, path: &str, at_ms: u64, tag: Option<&str>) -> ProfiledRequest {
        let mut r = ProfiledRequest::new(Request {
            marker_id,
            method: "GET".into(),
            path: path.into(),
            start_ns: at_ms * 1_000_000,
            end_ns: at_ms * 1_000_000 + 1_000_000,
            status: Some(422),
            ..Request::default()
        });
        r.context = tag.map(|t| RequestContext {
            request_headers: vec![
                ("host".into(), "127.0.0.1".into()),
                (timeglass_model::PROBE_TAG_HEADER.into(), t.into()),
            ],
            query: "a=1".into(),
            ..RequestContext::default()
        });
        r
    }

    fn result(outcome: ProbeOutcome, request_id: Option<i64>) -> NewProbeResult {
        NewProbeResult {
            method: "GET".into(),
            route: "/items/{id}".into(),
            kind: "wrong_type".into(),
            target: "path:id".into(),
            url: "http://127.0.0.1/items/x".into(),
            status: match outcome {
                ProbeOutcome::Rejected => Some(422),
                ProbeOutcome::Failed => Some(500),
                ProbeOutcome::Accepted => Some(200),
                _ => None,
            },
            outcome,
            elapsed_us: 1500,
            error: None,
            request_id,
        }
    }

    fn run(session: Option<SessionId>, results: Vec<NewProbeResult>) -> NewProbeRun {
        NewProbeRun {
            session,
            started_ms: T0_MS + 5,
            ended_ms: T0_MS + 900,
            url: "http://127.0.0.1:8000/".into(),
            schema_url: "http://127.0.0.1:8000/openapi.json".into(),
            truncated: true,
            operations: vec![
                NewProbeOperation {
                    method: "GET".into(),
                    route: "/items/{id}".into(),
                    cases: results.len() as u32,
                    skipped: None,
                },
                NewProbeOperation {
                    method: "DELETE".into(),
                    route: "/items/{id}".into(),
                    cases: 0,
                    skipped: Some("unsafe method".into()),
                },
            ],
            results,
        }
    }

    #[test]
    fn the_latest_run_of_a_session_is_summed_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db")).unwrap();
        let s = session(&mut store);
        let other = session(&mut store);
        assert_eq!(store.probe_summary(s).unwrap(), None);

        store
            .write_probe_run(&run(Some(s), vec![result(ProbeOutcome::Failed, None)]))
            .unwrap();
        let latest = run(
            Some(s),
            vec![
                result(ProbeOutcome::Rejected, Some(3)),
                result(ProbeOutcome::Rejected, Some(4)),
                result(ProbeOutcome::Accepted, None),
                result(ProbeOutcome::Failed, Some(9)),
                result(ProbeOutcome::Hung, None),
                result(ProbeOutcome::ConnectionError, None),
            ],
        );
        let id = store.write_probe_run(&latest).unwrap();
        store.write_probe_run(&run(Some(other), vec![])).unwrap();
        store.write_probe_run(&run(None, vec![])).unwrap();

        let summary = store.probe_summary(s).unwrap().unwrap();
        assert_eq!(
            summary,
            ProbeSummary {
                run_id: id,
                started_at: "2023-11-14T22:13:20.005Z".into(),
                sent: 6,
                rejected_4xx: 2,
                accepted: 1,
                failed_5xx: 1,
                hung: 1,
                connection_errors: 1,
                truncated: true,
                operations: vec![
                    ("DELETE".into(), "/items/{id}".into()),
                    ("GET".into(), "/items/{id}".into())
                ],
                request_ids: [3, 4, 9].into(),
            }
        );
        let kinds: Vec<(i64, String, String, Option<u16>)> = store
            .conn
            .prepare("SELECT seq, kind, outcome, status FROM probe_results WHERE run_id = ?1 ORDER BY seq")
            .unwrap()
            .query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            kinds[3],
            (3, "wrong_type".into(), "failed".into(), Some(500))
        );
        assert_eq!(kinds[4], (4, "wrong_type".into(), "hung".into(), None));
    }

    #[test]
    fn candidates_carry_their_probe_tag_and_start_from_the_probe() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db")).unwrap();
        let s = session(&mut store);
        let p = store.add_process(s, &crate::testing::process()).unwrap();
        let requests = vec![
            (p, request(1, "/before", 10, Some("old-0"))),
            (p, request(2, "/items/x", 1000, Some("run-0"))),
            (p, request(3, "/items/y", 1001, None)),
        ];
        store
            .write(&Batch {
                session: s,
                requests,
                outside: vec![],
                outside_timeline: vec![],
                process_samples: vec![],
            })
            .unwrap();
        let found = store
            .probe_candidates(s, T0_MS + 500, "X-TimeGlass-Probe")
            .unwrap();
        let brief: Vec<_> = found
            .iter()
            .map(|c| {
                (
                    c.path.as_str(),
                    c.query.as_deref(),
                    c.start_ms - T0_MS,
                    c.tag.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            brief,
            [
                ("/items/x", Some("a=1"), 1000, Some("run-0")),
                ("/items/y", None, 1001, None)
            ]
        );
    }
}
