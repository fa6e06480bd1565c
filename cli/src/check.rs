//! `timeglass check`: a comparison against a baseline, judged by the gate
//! of `timeglass-compare`, as a table, JUnit XML or Markdown.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use timeglass_compare::check::parse_ratio;
use timeglass_compare::{Comparison, Gate, Outcome, Verdict};
use timeglass_store::Store;

use crate::args::{CheckArgs, CheckFormat, FailOn};
use crate::baseline::failure;
use crate::compare::{explanations, md, sides, warn};
use crate::failure::{Failure, Result};
use crate::junit;

pub(crate) fn check(args: CheckArgs) -> Result<ExitCode> {
    let max_slower = args
        .max_slower
        .as_deref()
        .map(parse_ratio)
        .transpose()
        .map_err(|e| Failure::usage(format!("--max-slower: {e}")))?;
    let store = Store::open_existing(&args.db.db)?;
    let sessions: Vec<i64> = args.session.into_iter().collect();
    let (a, b) = sides(&store, Some(&args.baseline), &sessions)?;
    let session_dir = store
        .session_info(timeglass_store::SessionId(b.session))?
        .map(|s| PathBuf::from(s.cwd));
    let cwd = std::env::current_dir()?;
    let mut dirs: Vec<&Path> = session_dir.iter().map(PathBuf::as_path).collect();
    dirs.push(&cwd);
    let mut gate = Gate::find(&dirs).map_err(failure)?;
    if let Some(r) = max_slower {
        gate.max_slower = r;
    }
    if let Some(q) = args.max_queries_added {
        gate.max_queries_added = q;
    }
    if args.fail_on.contains(&FailOn::NPlusOne) {
        gate.fail_on_n_plus_one = true;
    }
    if args.fail_on.contains(&FailOn::Unsure) {
        gate.fail_on_unsure = true;
    }
    let c = timeglass_compare::compare(&a, &b, &gate.test_options()).map_err(failure)?;
    warn(&c);
    let outcomes = gate.judge(&c);
    let rendered = match args.format {
        CheckFormat::Table => text(&c, &gate, &outcomes),
        CheckFormat::Markdown => markdown(&c, &gate, &outcomes),
        CheckFormat::Junit => junit::render(&c, &outcomes),
    };
    match &args.output {
        Some(path) => std::fs::write(path, &rendered)
            .map_err(|e| Failure::new(format!("could not write `{}`: {e}", path.display())))?,
        None => write!(std::io::stdout().lock(), "{rendered}")?,
    }
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.failed).collect();
    if args.output.is_some() || args.format == CheckFormat::Junit {
        // The file is for the CI system; the log still says what failed.
        let mut err = std::io::stderr().lock();
        for o in &failed {
            writeln!(
                err,
                "timeglass: regression: {}: {}",
                o.endpoint,
                o.failures.join("; ")
            )?;
        }
    }
    Ok(ExitCode::from(u8::from(!failed.is_empty())))
}

fn thresholds(g: &Gate) -> String {
    let fail = |yes: bool| if yes { "fail" } else { "allowed" };
    format!(
        "max slower {:.0}%, max queries added {}, N+1s {}, unsure {}{}",
        g.max_slower * 100.0,
        g.max_queries_added,
        fail(g.fail_on_n_plus_one),
        fail(g.fail_on_unsure),
        g.source
            .as_ref()
            .map_or(String::new(), |p| format!(" (from {})", p.display()))
    )
}

/// Endpoints that passed only because the machine's load explains their latency.
fn unsure_passes(c: &Comparison, outcomes: &[Outcome]) -> usize {
    outcomes
        .iter()
        .zip(&c.endpoints)
        .filter(|(o, e)| !o.failed && e.verdict == Verdict::Unsure)
        .count()
}

fn summary(c: &Comparison, outcomes: &[Outcome]) -> String {
    let failed = outcomes.iter().filter(|o| o.failed).count();
    let unsure = match unsure_passes(c, outcomes) {
        0 => String::new(),
        n => format!(
            " ({n} unsure: the machine was busier in one of them; record again on a quieter one to judge {})",
            if n == 1 { "it" } else { "them" }
        ),
    };
    match failed {
        0 => format!(
            "PASS: no endpoint of session {} regressed against baseline session {}{unsure}",
            c.b_session, c.a_session
        ),
        n => format!(
            "FAIL: {n} of {} endpoints of session {} regressed against baseline session {}{unsure}",
            outcomes.len(),
            c.b_session,
            c.a_session
        ),
    }
}

fn text(c: &Comparison, g: &Gate, outcomes: &[Outcome]) -> String {
    let mut out = format!(
        "{}\nthresholds: {}\n\n",
        summary(c, outcomes),
        thresholds(g)
    );
    for (o, e) in outcomes.iter().zip(&c.endpoints) {
        let unsure = !o.failed && e.verdict == Verdict::Unsure;
        let status = match (o.failed, unsure) {
            (true, _) => "FAIL",
            (false, true) => "warn",
            (false, false) => "ok  ",
        };
        out.push_str(&format!("{status} {} ({})\n", o.endpoint, o.note));
        for f in &o.failures {
            out.push_str(&format!("     {f}\n"));
        }
        if unsure {
            for r in e.latency_reasons() {
                out.push_str(&format!("     {r}\n"));
            }
        }
        if o.failed {
            for l in explanations(e).iter().filter(|l| !e.reasons.contains(l)) {
                out.push_str(&format!("     {l}\n"));
            }
        }
    }
    out
}

fn markdown(c: &Comparison, g: &Gate, outcomes: &[Outcome]) -> String {
    let mut out = format!(
        "### TimeGlass check: {}\n\nThresholds: {}.\n\n| endpoint | result | what regressed |\n|---|---|---|\n",
        summary(c, outcomes),
        md(&thresholds(g))
    );
    for (o, e) in outcomes.iter().zip(&c.endpoints) {
        let result = match (o.failed, e.verdict == Verdict::Unsure) {
            (true, _) => "❌ fail",
            (false, true) => "⚠️ pass",
            (false, false) => "✅ pass",
        };
        out.push_str(&format!(
            "| {} | {result} ({}) | {} |\n",
            md(&o.endpoint),
            o.note,
            md(&o.failures.join("; "))
        ));
    }
    out
}
