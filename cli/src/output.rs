//! Writing a command's output: to standard output, or to a file written
//! whole or not at all.

use std::io::Write;
use std::path::Path;

use crate::failure::{Failure, Result};

/// Writes `bytes` to `path` through a temporary file in the same directory
/// renamed into place, so a reader never sees half a file and a failure
/// leaves nothing behind; to standard output without a path.
pub(crate) fn write(path: Option<&Path>, bytes: &[u8]) -> Result<()> {
    let Some(path) = path else {
        std::io::stdout().lock().write_all(bytes)?;
        return Ok(());
    };
    let cannot = |e: std::io::Error| {
        // tempfile adds the temporary file's name; the user named `path`.
        let text = e.to_string();
        let text = text
            .split(" at path ")
            .next()
            .unwrap_or_default()
            .to_string();
        Failure::usage(format!("cannot write `{}`: {text}", path.display()))
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Failure::usage(format!(
            "cannot write `{}`: there is no directory `{}`",
            path.display(),
            dir.display()
        )));
    }
    let mut file = tempfile::Builder::new()
        .prefix(".timeglass-")
        .tempfile_in(dir)
        .map_err(cannot)?;
    file.write_all(bytes).map_err(cannot)?;
    file.as_file().sync_all().map_err(cannot)?;
    file.persist(path).map_err(|e| cannot(e.error))?;
    Ok(())
}
