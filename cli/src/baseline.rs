//! `timeglass baseline save|list|rm|export|import`: named baselines, kept
//! by `timeglass-compare` in the store.

use std::io::Write;
use std::process::ExitCode;

use timeglass_compare::{baseline, CompareError, Snapshot};
use timeglass_store::{local_time, Store};

use crate::args::BaselineCommand;
use crate::failure::{Failure, Result};
use crate::table::render;

pub(crate) fn baseline(command: BaselineCommand) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match command {
        BaselineCommand::Save(a) => {
            let mut store = Store::open_existing(&a.db.db)?;
            let snap = baseline::save(&mut store, &a.name, a.session, a.force).map_err(failure)?;
            writeln!(
                out,
                "saved session {} as baseline `{}`: {} endpoints",
                snap.session,
                a.name,
                snap.endpoints.len()
            )?;
        }
        BaselineCommand::List(a) => {
            let store = Store::open_existing(&a.db.db)?;
            let rows = baseline::list(&store).map_err(failure)?;
            if a.json {
                let json = serde_json::to_string_pretty(&rows).expect("rows serialize");
                writeln!(out, "{json}")?;
            } else {
                let cells: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        vec![
                            r.name.clone(),
                            local_time(&r.created_at),
                            r.session_id.map_or("imported".into(), |s| s.to_string()),
                            format!("{:.1} KiB", r.bytes as f64 / 1024.0),
                        ]
                    })
                    .collect();
                let header = ["NAME", "SAVED", "SESSION", "SIZE"];
                write!(
                    out,
                    "{}",
                    render(&header, &[false, false, true, true], &cells)
                )?;
            }
        }
        BaselineCommand::Rm(a) => {
            let mut store = Store::open_existing(&a.db.db)?;
            baseline::remove(&mut store, &a.name).map_err(failure)?;
            writeln!(out, "removed baseline `{}`", a.name)?;
        }
        BaselineCommand::Export(a) => {
            let store = Store::open_existing(&a.db.db)?;
            let json = baseline::export(&store, &a.name).map_err(failure)?;
            if a.output.as_os_str() == "-" {
                writeln!(out, "{json}")?;
            } else {
                std::fs::write(&a.output, format!("{json}\n")).map_err(|e| {
                    Failure::new(format!("could not write `{}`: {e}", a.output.display()))
                })?;
            }
        }
        BaselineCommand::Import(a) => {
            let text = std::fs::read_to_string(&a.file).map_err(|e| {
                Failure::usage(format!("could not read `{}`: {e}", a.file.display()))
            })?;
            let what = format!("`{}`", a.file.display());
            // Refused before the store is opened, so a bad file creates nothing.
            Snapshot::from_json(&text, &what).map_err(failure)?;
            let mut store = Store::open(&a.db.db)?;
            let name = baseline::import(&mut store, &text, &what, a.name.as_deref(), a.force)
                .map_err(failure)?;
            writeln!(out, "imported baseline `{name}`")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn failure(e: CompareError) -> Failure {
    match e.is_bad_input() {
        true => Failure::error(&e).with_code(2),
        false => Failure::error(&e),
    }
}
