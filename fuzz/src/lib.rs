//! What the fuzz targets share.

use std::path::{Path, PathBuf};

const PREFIX: &str = "timeglass-fuzz-";

/// This run's own scratch directory: `$TIMEGLASS_FUZZ_DIR` (which
/// `make fuzz-smoke` sets and removes), or one on tmpfs where there is one.
/// libFuzzer ends with `exit()`, so no destructor removes the latter; each
/// run removes those of runs that have ended.
pub fn scratch_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TIMEGLASS_FUZZ_DIR") {
        return PathBuf::from(dir);
    }
    let shm = Path::new("/dev/shm");
    let root = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let pid = name.to_str().and_then(|n| n.strip_prefix(PREFIX));
        if pid.is_some_and(|pid| !Path::new("/proc").join(pid).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let dir = root.join(format!("{PREFIX}{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory for the fuzz target");
    dir
}
