//! `timeglass probe`: wires the probe crate to the store and prints what
//! the app did with bad input.

use std::io::Write;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use timeglass_probe::{self as probe, Answer, Client, Outcome, Plan, Planned, Sending};
use timeglass_recorder::procfs;
use timeglass_store::{
    NewProbeOperation, NewProbeResult, NewProbeRun, ProbeOutcome, SessionId, Store, StoreError,
};

use crate::args::{ProbeArgs, ProbeFormat};
use crate::failure::{Failure, Result};
use crate::table::render;

/// The recorder writes a request about 0.3 s after it ends (its 200 ms grace
/// and 100 ms batches); wait this long at most for the probe's requests.
const MATCH_WAIT: Duration = Duration::from_secs(3);
const MATCH_POLL: Duration = Duration::from_millis(100);

pub(crate) fn probe(args: ProbeArgs) -> Result<ExitCode> {
    let usage = |e: probe::ProbeError| Failure::error(&e).with_code(2);
    let target = probe::target(&args.url, &args.openapi, args.allow_remote).map_err(usage)?;
    let client = Client::new(target.base.clone(), args.timeout);
    let text = client.fetch_schema(&target.schema).map_err(usage)?;
    let operations = probe::schema::operations(&text).map_err(usage)?;
    let max = usize::try_from(args.max_requests).unwrap_or(usize::MAX);
    let plan = probe::plan(&operations, args.include_unsafe, max);

    let store = open_store(&args)?;
    let session = match &store {
        Some(s) => live_session(s)?,
        None => None,
    };
    let started_ms = now_ms();
    let run_tag = format!("{:x}{:x}", std::process::id(), started_ms);
    let sending = probe::send_all(&plan, &client, &run_tag);
    let ended_ms = now_ms();
    let request_ids = match (&store, session) {
        (Some(store), Some(session)) => {
            wait_for_recorded(store, session, (&plan, &sending), started_ms)?
        }
        _ => vec![None; sending.sent()],
    };
    let run = Run {
        url: target.base.to_string(),
        schema_url: target.schema.to_string(),
        plan,
        sending,
        request_ids,
        session,
        max_requests: max,
    };
    let run_id = match store {
        Some(mut store) => Some(store.write_probe_run(&run.record(started_ms, ended_ms))?),
        None => None,
    };
    let mut out = std::io::stdout().lock();
    match args.format {
        ProbeFormat::Json => {
            let json = serde_json::to_string_pretty(&run.json(run_id)).expect("JSON serializes");
            writeln!(out, "{json}")?;
        }
        ProbeFormat::Table => write!(
            out,
            "{}",
            run.table(run_id, &args.db.db.display().to_string())
        )?,
    }
    Ok(if run.any_bad() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The store, if there is one: a probe of an app recorded by nobody does
/// not create one.
fn open_store(args: &ProbeArgs) -> Result<Option<Store>> {
    match Store::open_existing(&args.db.db) {
        Ok(s) => Ok(Some(s)),
        Err(StoreError::Missing { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The newest session still recording (no end) with a process still alive.
fn live_session(store: &Store) -> Result<Option<SessionId>> {
    for s in store
        .sessions()?
        .into_iter()
        .filter(|s| s.ended_at.is_none())
    {
        let processes = store.processes(s.id)?;
        if processes
            .iter()
            .any(|p| p.ended_at.is_none() && procfs::alive(p.pid))
        {
            return Ok(Some(s.id));
        }
    }
    Ok(None)
}

fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

fn unix_ms(t: SystemTime) -> i64 {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// The recorded id of every sent request, polling until each answered one
/// has been written by the recorder, or [`MATCH_WAIT`] has passed.
fn wait_for_recorded(
    store: &Store,
    session: SessionId,
    (plan, sending): (&Plan, &Sending),
    started_ms: i64,
) -> Result<Vec<Option<i64>>> {
    let (sent, answered): (Vec<probe::Sent>, Vec<bool>) = planned_answers(plan, sending)
        .map(|(a, case)| {
            let start_ms = unix_ms(a.started_at);
            let sent = probe::Sent {
                tag: a.tag.clone(),
                method: case.method.clone(),
                path_and_query: case.path_and_query.clone(),
                start_ms,
                end_ms: start_ms + i64::try_from(a.elapsed.as_millis()).unwrap_or(i64::MAX),
                status: a.status,
            };
            (sent, a.status.is_some())
        })
        .unzip();
    let deadline = Instant::now() + MATCH_WAIT;
    loop {
        let recorded = store.probe_candidates(session, started_ms - 1, probe::TAG_HEADER)?;
        let ids = probe::match_requests(&sent, &recorded);
        let done = ids.iter().zip(&answered).all(|(id, a)| id.is_some() || !a);
        if done || Instant::now() >= deadline {
            return Ok(ids);
        }
        thread::sleep(MATCH_POLL);
    }
}

/// Every answer with the case it answered, in sending order.
fn planned_answers<'a>(
    plan: &'a Plan,
    sending: &'a Sending,
) -> impl Iterator<Item = (&'a Answer, &'a probe::Case)> {
    plan.operations
        .iter()
        .zip(&sending.answers)
        .flat_map(|(op, answers)| answers.iter().zip(&op.cases))
}

struct Run {
    url: String,
    schema_url: String,
    plan: Plan,
    sending: Sending,
    /// Per sent request, in sending order.
    request_ids: Vec<Option<i64>>,
    session: Option<SessionId>,
    max_requests: usize,
}

/// One operation's answers, counted.
#[derive(Default)]
struct Counts {
    sent: usize,
    rejected: usize,
    accepted: usize,
    failed: usize,
    hung: usize,
    connection_errors: usize,
}

impl Counts {
    fn add(&mut self, outcome: Outcome) {
        self.sent += 1;
        *match outcome {
            Outcome::Rejected => &mut self.rejected,
            Outcome::Accepted => &mut self.accepted,
            Outcome::Failed => &mut self.failed,
            Outcome::Hung => &mut self.hung,
            Outcome::ConnectionError => &mut self.connection_errors,
        } += 1;
    }

    fn json(&self) -> Value {
        json!({
            "sent": self.sent, "rejected_4xx": self.rejected, "accepted": self.accepted,
            "failed_5xx": self.failed, "hung": self.hung,
            "connection_errors": self.connection_errors,
        })
    }
}

/// One sent request with everything known about it.
struct Row<'a> {
    seq: usize,
    case: &'a probe::Case,
    answer: &'a Answer,
    request_id: Option<i64>,
}

impl Run {
    /// Per planned operation, its sent requests.
    fn rows(&self) -> Vec<(&Planned, Vec<Row<'_>>)> {
        let mut seq = 0;
        self.plan
            .operations
            .iter()
            .zip(&self.sending.answers)
            .map(|(op, answers)| {
                let rows = op
                    .cases
                    .iter()
                    .zip(answers)
                    .map(|(case, answer)| {
                        let row = Row {
                            seq,
                            case,
                            answer,
                            request_id: self.request_ids.get(seq).copied().flatten(),
                        };
                        seq += 1;
                        row
                    })
                    .collect();
                (op, rows)
            })
            .collect()
    }

    fn counts(rows: &[Row<'_>]) -> Counts {
        let mut c = Counts::default();
        rows.iter().for_each(|r| c.add(r.answer.outcome));
        c
    }

    fn any_bad(&self) -> bool {
        self.sending
            .answers
            .iter()
            .flatten()
            .any(|a| a.outcome.is_bad())
    }

    fn truncated(&self) -> bool {
        self.plan.truncated || self.sending.gave_up
    }

    /// Why an operation got no request (or fewer than planned).
    fn skipped(&self, op: &Planned, sent: usize) -> Option<&'static str> {
        match op.skipped {
            Some(s) => Some(s.as_str()),
            None if sent < op.cases.len() => Some("no answer, gave up"),
            None => None,
        }
    }

    fn record(&self, started_ms: i64, ended_ms: i64) -> NewProbeRun {
        let mut operations = Vec::new();
        let mut results = Vec::new();
        for (op, rows) in self.rows() {
            operations.push(NewProbeOperation {
                method: op.method.clone(),
                route: op.route.clone(),
                cases: u32::try_from(rows.len()).unwrap_or(u32::MAX),
                skipped: self.skipped(op, rows.len()).map(str::to_owned),
            });
            results.extend(rows.iter().map(|r| NewProbeResult {
                method: r.case.method.clone(),
                route: r.case.route.clone(),
                kind: r.case.kind.as_str().to_owned(),
                target: r.case.target.clone(),
                url: r.answer.url.clone(),
                status: r.answer.status,
                outcome: stored(r.answer.outcome),
                elapsed_us: u64::try_from(r.answer.elapsed.as_micros()).unwrap_or(u64::MAX),
                error: r.answer.error.clone(),
                request_id: r.request_id,
            }));
        }
        NewProbeRun {
            session: self.session,
            started_ms,
            ended_ms,
            url: self.url.clone(),
            schema_url: self.schema_url.clone(),
            truncated: self.truncated(),
            operations,
            results,
        }
    }

    fn json(&self, run_id: Option<i64>) -> Value {
        let mut total = Counts::default();
        let operations: Vec<Value> = self
            .rows()
            .into_iter()
            .map(|(op, rows)| {
                rows.iter().for_each(|r| total.add(r.answer.outcome));
                let first = rows.iter().find(|r| r.answer.outcome == Outcome::Failed);
                let mut v = Self::counts(&rows).json();
                v["method"] = json!(op.method);
                v["route"] = json!(op.route);
                v["skipped"] = json!(self.skipped(op, rows.len()));
                v["first_5xx"] = json!(first.map(row_json));
                v["results"] = Value::Array(rows.iter().map(row_json).collect());
                v
            })
            .collect();
        json!({
            "url": self.url, "schema_url": self.schema_url,
            "session": self.session.map(|s| s.0), "run_id": run_id,
            "max_requests": self.max_requests, "truncated": self.truncated(),
            "gave_up": self.sending.gave_up,
            "totals": total.json(), "operations": operations,
        })
    }

    fn table(&self, run_id: Option<i64>, db: &str) -> String {
        let header = [
            "METHOD",
            "ROUTE",
            "SENT",
            "4XX",
            "ACCEPTED",
            "5XX",
            "HUNG",
            "CONN",
            "FIRST 5XX",
        ];
        let right = [false, false, true, true, true, true, true, true, false];
        let mut cells = Vec::new();
        let mut notes = Vec::new();
        let mut total = Counts::default();
        for (op, rows) in self.rows() {
            let c = Self::counts(&rows);
            rows.iter().for_each(|r| total.add(r.answer.outcome));
            let first = rows.iter().find(|r| r.answer.outcome == Outcome::Failed);
            let last = match (first, self.skipped(op, rows.len())) {
                (Some(r), _) => first_failure(r),
                (None, Some(why)) => format!("({why})"),
                (None, None) => String::new(),
            };
            let n = |v: usize| v.to_string();
            cells.push(vec![
                op.method.clone(),
                op.route.clone(),
                n(c.sent),
                n(c.rejected),
                n(c.accepted),
                n(c.failed),
                n(c.hung),
                n(c.connection_errors),
                last,
            ]);
            notes.extend(
                rows.iter()
                    .filter(|r| r.answer.outcome != Outcome::Rejected)
                    .map(note),
            );
        }
        let mut out = format!(
            "Probed {} (schema {}): {} operations, {} requests\n",
            self.url,
            self.schema_url,
            self.plan.operations.len(),
            total.sent
        );
        out.push_str(&render(&header, &right, &cells));
        for line in &notes {
            out.push_str(line);
            out.push('\n');
        }
        if self.plan.truncated {
            out.push_str(&format!(
                "Truncated: --max-requests {} reached; the operations marked so got fewer requests or none.\n",
                self.max_requests
            ));
        }
        if self.sending.gave_up {
            out.push_str(&format!(
                "Stopped: {} requests in a row got no answer; the rest was not sent.\n",
                probe::MAX_SILENT_IN_A_ROW
            ));
        }
        out.push_str(&match (self.session, run_id) {
            (Some(s), Some(id)) => format!("Stored as probe run {id} of session {s}.\n", s = s.0),
            (None, Some(id)) => format!(
                "Stored as probe run {id} of no session: no live `timeglass run` in `{db}`, so no request ids.\n"
            ),
            _ => format!("Not stored: no TimeGlass store at `{db}`; run the app under `timeglass run` to get request ids.\n"),
        });
        let bad = total.failed + total.hung + total.connection_errors;
        out.push_str(&format!(
            "{} of {} answered 4xx; {} accepted; {} answered 5xx; {} hung; {} connection errors.\n",
            total.rejected,
            total.sent,
            total.accepted,
            total.failed,
            total.hung,
            total.connection_errors
        ));
        if bad == 0 {
            out.push_str("No 5xx and no hang.\n");
        }
        out
    }
}

fn stored(o: Outcome) -> ProbeOutcome {
    match o {
        Outcome::Rejected => ProbeOutcome::Rejected,
        Outcome::Accepted => ProbeOutcome::Accepted,
        Outcome::Failed => ProbeOutcome::Failed,
        Outcome::Hung => ProbeOutcome::Hung,
        Outcome::ConnectionError => ProbeOutcome::ConnectionError,
    }
}

fn row_json(r: &Row<'_>) -> Value {
    json!({
        "seq": r.seq, "kind": r.case.kind.as_str(), "target": r.case.target,
        "url": r.answer.url, "status": r.answer.status, "outcome": r.answer.outcome.as_str(),
        "elapsed_ms": r.answer.elapsed.as_secs_f64() * 1000.0, "error": r.answer.error,
        "request_id": r.request_id,
    })
}

/// `500 wrong_type query:q, request 17`.
fn first_failure(r: &Row<'_>) -> String {
    let status = r.answer.status.map(|s| s.to_string()).unwrap_or_default();
    let mut text = format!("{status} {} {}", r.case.kind.as_str(), r.case.target);
    if let Some(id) = r.request_id {
        text.push_str(&format!(", request {id} (`timeglass show {id}`)"));
    }
    text
}

/// One line per request that was not refused: what was sent and what came back.
fn note(r: &Row<'_>) -> String {
    let answer = match (r.answer.status, &r.answer.error) {
        (Some(s), _) => s.to_string(),
        (None, Some(e)) => e.clone(),
        (None, None) => "no answer".into(),
    };
    let id = r
        .request_id
        .map(|id| format!(" (request {id})"))
        .unwrap_or_default();
    format!(
        "  {}: {} {} {} -> {answer}{id}",
        r.answer.outcome.as_str(),
        r.case.method,
        r.answer.url,
        r.case.kind.as_str(),
    )
}
