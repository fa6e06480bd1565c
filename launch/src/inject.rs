//! Getting the marker into the app's interpreter without touching its venv.
//!
//! The `timeglass` command and the app often live in different environments
//! (`pipx install timeglass`, the app in its own venv). `run` therefore puts a
//! private directory first on the child's `PYTHONPATH` holding just two
//! entries: `sitecustomize.py` (which wraps Starlette apps when
//! `TIMEGLASS_AUTO=1`) and a `timeglass` link to our Python package, whose
//! extension is built for the stable ABI and so loads in any CPython >= 3.10.
//! Nothing else of our environment leaks into the app's.

use std::ffi::OsString;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use timeglass_wire::env;

use crate::LaunchError;

type Result<T> = std::result::Result<T, LaunchError>;

/// Finds the installed `timeglass` Python package.
pub fn package_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(env::PYTHON_PACKAGE).filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return if is_package(&dir) {
            Ok(dir)
        } else {
            Err(LaunchError::Package(format!(
                "{} points at `{}`, which is not the timeglass Python package (no `_bootstrap/sitecustomize.py` or `_native` extension)",
                env::PYTHON_PACKAGE,
                dir.display()
            )))
        };
    }
    let exe = std::env::current_exe()
        .map_err(|e| LaunchError::Package(format!("cannot find the `timeglass` binary: {e}")))?;
    // `make build`, `pip install .` and `pipx` all put this binary in the
    // `bin/` of the environment whose site-packages hold the package.
    let prefix = exe.parent().and_then(Path::parent);
    let candidates: Vec<PathBuf> = prefix
        .map(site_packages)
        .unwrap_or_default()
        .into_iter()
        .map(|sp| sp.join("timeglass"))
        .collect();
    candidates.into_iter().find(|d| is_package(d)).ok_or_else(|| {
        LaunchError::Package(format!(
            "the timeglass Python package was not found next to `{}`; install TimeGlass with `pip install .` or `make build`, or set {} to the package directory",
            exe.display(),
            env::PYTHON_PACKAGE
        ))
    })
}

/// `<prefix>/lib*/python3.*/site-packages` directories of a venv or prefix.
fn site_packages(prefix: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for lib in ["lib", "lib64"] {
        let Ok(entries) = std::fs::read_dir(prefix.join(lib)) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("python3") {
                out.push(entry.path().join("site-packages"));
            }
        }
    }
    out.sort();
    out
}

fn is_package(dir: &Path) -> bool {
    let has_native = std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("_native") && name.ends_with(".so")
        })
    });
    has_native && dir.join("_bootstrap").join("sitecustomize.py").is_file()
}

/// Builds the directory to put first on the child's `PYTHONPATH`.
pub fn prepare(package: &Path, into: &Path) -> Result<PathBuf> {
    let dir = into.join("python");
    let fail = |what: &'static str, source: std::io::Error| LaunchError::Prepare {
        dir: dir.clone(),
        what,
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| fail("create", e))?;
    std::fs::copy(
        package.join("_bootstrap").join("sitecustomize.py"),
        dir.join("sitecustomize.py"),
    )
    .map_err(|e| fail("copy sitecustomize.py", e))?;
    let link = dir.join("timeglass");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(package, &link).map_err(|e| fail("link the package", e))?;
    Ok(dir)
}

/// `dir` first, then whatever `PYTHONPATH` the user had.
pub fn pythonpath(dir: &Path) -> OsString {
    let mut value = dir.as_os_str().to_owned();
    if let Some(existing) = std::env::var_os("PYTHONPATH").filter(|p| !p.is_empty()) {
        value.push(":");
        value.push(existing);
    }
    value
}
