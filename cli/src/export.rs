use std::process::ExitCode;

use timeglass_render::{Format, LoadError, Recording, Subject, View};
use timeglass_store::{SessionId, Store};

use crate::args::ExportArgs;
use crate::failure::{Failure, Result};

pub(crate) fn export(args: ExportArgs) -> Result<ExitCode> {
    let format = Format::parse(&args.format).ok_or_else(|| {
        let known: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
        Failure::usage(format!(
            "unknown format `{}`; use one of {}",
            args.format,
            known.join(", ")
        ))
    })?;
    if args.memory && !matches!(format, Format::Folded | Format::Svg) {
        return Err(Failure::usage(format!(
            "`--memory` exports allocated bytes as `folded` or `svg`; `{}` weighs stacks in time",
            format.name()
        )));
    }
    let subject = subject(&args)?;
    let store = Store::open_existing(&args.db.db)?;
    let mut recording = Recording::load(&store, subject).map_err(|e| match e {
        LoadError::Store(e) => Failure::from(e),
        other => Failure::usage(format!("{other} (in `{}`)", args.db.db.display())),
    })?;
    if args.memory {
        // Where the request allocated: the same stacks, weighed in bytes.
        for track in &mut recording.requests {
            track.stacks = store.request_alloc_stacks(track.row.id)?;
        }
    }
    let view = View {
        sampled_only: args.sampled_only,
        ..View::default()
    };
    let bytes = format
        .render(&recording, view)
        .map_err(|e| Failure::new(e.to_string()))?;
    crate::output::write(args.output.as_deref(), &bytes)?;
    Ok(ExitCode::SUCCESS)
}

fn subject(args: &ExportArgs) -> Result<Subject> {
    let session = args.session.map(SessionId);
    Ok(match (args.request, &args.route, session) {
        (Some(id), _, _) => Subject::Request(id),
        (None, Some(endpoint), session) => {
            let (method, route) = endpoint
                .trim()
                .split_once(' ')
                .map(|(m, r)| (m.to_ascii_uppercase(), r.trim().to_string()))
                .filter(|(m, r)| !m.is_empty() && r.starts_with('/'))
                .ok_or_else(|| {
                    Failure::usage(format!(
                        "`--route {endpoint}` is not `METHOD ROUTE`; write it as the report lists it, e.g. \"GET /items/{{id}}\""
                    ))
                })?;
            Subject::Route {
                method,
                route,
                session,
            }
        }
        (None, None, Some(session)) => Subject::Session(session),
        // clap requires one of the three.
        (None, None, None) => {
            return Err(Failure::usage(
                "give `--request ID`, `--route \"METHOD ROUTE\"` or `--session ID`",
            ))
        }
    })
}
