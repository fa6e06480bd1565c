//! The short filename of a frame, as py-spy shows it.
//!
//! The marker names the frames of the stacks it sends (a query's caller) and
//! the sampler names the frames it reads; both shorten files this one way, so
//! a stack from either merges with the other's stacks of the same code.

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
