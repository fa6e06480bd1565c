use std::io::Write;
use std::process::ExitCode;

use timeglass_model::StackCount;
use timeglass_store::{SessionId, Store};

use crate::args::{ExportArgs, ExportFormat};
use crate::failure::{Failure, Result};

pub fn export(args: ExportArgs) -> Result<ExitCode> {
    let store = Store::open_existing(&args.db.db)?;
    let mut stacks = match (args.request, args.session) {
        (Some(request), _) => request_stacks(&store, request, &args)?,
        (None, Some(session)) => session_stacks(&store, session, &args)?,
        // clap requires one of the two.
        (None, None) => return Err(Failure::usage("give `--request ID` or `--session ID`")),
    };
    if args.sampled_only {
        stacks.retain(|s| !s.stack.last().is_some_and(timeglass_model::Frame::is_wait));
    }
    let text = match args.format {
        ExportFormat::Folded => timeglass_model::folded(&stacks),
    };
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| Failure::new(format!("cannot write `{}`: {e}", path.display())))?,
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}

fn request_stacks(store: &Store, request: i64, args: &ExportArgs) -> Result<Vec<StackCount>> {
    if store.request(request)?.is_none() {
        return Err(Failure::usage(format!(
            "no request with id {request} in `{}`; list them with `timeglass requests`",
            args.db.db.display()
        )));
    }
    Ok(match args.memory {
        true => store.request_alloc_stacks(request)?,
        false => store.request_stacks(request)?,
    })
}

fn session_stacks(store: &Store, session: i64, args: &ExportArgs) -> Result<Vec<StackCount>> {
    let session = SessionId(session);
    if !store.sessions()?.iter().any(|s| s.id == session) {
        return Err(Failure::usage(format!(
            "no session with id {} in `{}`; list them with `timeglass sessions`",
            session.0,
            args.db.db.display()
        )));
    }
    Ok(store.outside_stacks(session)?)
}
