use std::io::Write;
use std::process::ExitCode;

use timeglass_store::Store;

use crate::args::{ExportArgs, ExportFormat};
use crate::failure::{Failure, Result};

pub fn export(args: ExportArgs) -> Result<ExitCode> {
    let store = Store::open_existing(&args.db.db)?;
    if store.request(args.request)?.is_none() {
        return Err(Failure::usage(format!(
            "no request with id {} in `{}`; list them with `timeglass requests`",
            args.request,
            args.db.db.display()
        )));
    }
    let mut stacks = store.request_stacks(args.request)?;
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
