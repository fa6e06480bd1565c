//! The short filename of a frame, as py-spy shows it, and whether a file is
//! library code.
//!
//! The marker names the frames of the stacks it sends (a query's caller) and
//! the sampler names the frames it reads; both shorten files this one way, so
//! a stack from either merges with the other's stacks of the same code. Both
//! the marker and the renderers class files by [`is_library_file`].

use std::path::Path;

/// py-spy's shortening (`PythonSpy::shorten_filename`): the path below the
/// outermost directory that is still a package (has an `__init__.py`), e.g.
/// `fastapi/routing.py` for `/venv/.../site-packages/fastapi/routing.py`.
/// Looks at the file system: `filename` must be a path this process can see.
pub fn short_filename(filename: &Path) -> String {
    let mut package_parent = filename;
    while let Some(parent) = package_parent.parent() {
        package_parent = parent;
        if !parent.join("__init__.py").exists() {
            break;
        }
    }
    filename
        .strip_prefix(package_parent)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Packages that are the framework around the app, wherever they are
/// installed (an editable checkout of Starlette is still not the app's code).
const FRAMEWORK_PACKAGES: &[&str] = &[
    "fastapi/",
    "starlette/",
    "anyio/",
    "uvicorn/",
    "uvloop/",
    "h11/",
    "httptools/",
    "pydantic/",
    "pydantic_core/",
    "timeglass/",
];

/// Whether a frame's file is library code rather than the app's own: an
/// installed package, the standard library under any prefix
/// (`/usr/lib/python3.12/asyncio/...`, pyenv's `.../lib/python3.12/...`), a
/// frozen module, or one of the framework's packages by its short name.
///
/// The one rule for "is this a library frame": the dashboard's "my code
/// only" and colours (`timeglass-render`) and the marker's SQL and HTTP
/// callers both use it. It looks at the text only, never the file system,
/// so a stored frame is judged the same way on any machine.
pub fn is_library_file(filename: &str, short: &str) -> bool {
    filename.contains("/site-packages/")
        || filename.contains("/dist-packages/")
        || filename.contains("/lib/python3")
        || filename.starts_with("<frozen ")
        || FRAMEWORK_PACKAGES.iter().any(|p| short.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_keeps_the_packages_it_is_in() {
        let dir = tempfile::tempdir().unwrap();
        let pkg = dir.path().join("site-packages/fastapi/sub");
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::write(dir.path().join("site-packages/fastapi/__init__.py"), "").unwrap();
        std::fs::write(pkg.join("__init__.py"), "").unwrap();
        assert_eq!(
            short_filename(&pkg.join("routing.py")),
            "fastapi/sub/routing.py"
        );
        let script = dir.path().join("app.py");
        assert_eq!(short_filename(&script), "app.py");
        assert_eq!(
            short_filename(Path::new("<frozen runpy>")),
            "<frozen runpy>"
        );
    }
}
