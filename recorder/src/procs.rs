//! What the recorder needs to know about processes, read from `/proc`.

use std::fs;

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The command line of `pid`, one string per argument.
pub fn cmdline(pid: u32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn parent(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// `root` and all its descendants.
pub fn tree(root: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return vec![root];
    };
    let all: Vec<(u32, u32)> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, parent(pid)?)))
        .collect();
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(all.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}

/// Whether `pid` runs a Python interpreter (the executable or a loaded
/// `libpython`).
pub fn is_python(pid: u32) -> bool {
    let exe_is_python = fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().starts_with("python"))
        })
        .unwrap_or(false);
    exe_is_python
        || fs::read_to_string(format!("/proc/{pid}/maps"))
            .is_ok_and(|maps| maps.contains("libpython"))
}

/// Whether `pid` is one of `multiprocessing`'s helper processes (resource
/// tracker, fork server): Python, but it never runs the app.
pub fn is_helper(pid: u32) -> bool {
    cmdline(pid).iter().any(|arg| {
        arg.contains("multiprocessing.resource_tracker")
            || arg.contains("multiprocessing.semaphore_tracker")
            || arg.contains("multiprocessing.forkserver")
    })
}

/// The value of environment variable `name` in `pid`'s initial environment.
pub fn environ_var(pid: u32, name: &str) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/environ")).ok()?;
    raw.split(|b| *b == 0).find_map(|entry| {
        let value = entry.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
        Some(String::from_utf8_lossy(value).into_owned())
    })
}

/// The user `pid` runs as (the owner of its `/proc` entry).
pub fn uid(pid: u32) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(format!("/proc/{pid}")).ok().map(|m| m.uid())
}

/// Why `pid` cannot be looked at.
#[derive(Debug, PartialEq, Eq)]
pub enum Inspect {
    /// No such process (or a zombie).
    Gone,
    /// It exists, but this user may not read which program it runs.
    Denied,
}

/// The executable `pid` runs, which also tells whether we may inspect it:
/// `/proc/<pid>/exe` needs the same ptrace read access as its memory maps.
pub fn exe(pid: u32) -> Result<std::path::PathBuf, Inspect> {
    if !alive(pid) {
        return Err(Inspect::Gone);
    }
    fs::read_link(format!("/proc/{pid}/exe")).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => Inspect::Denied,
        _ if !alive(pid) => Inspect::Gone,
        // A kernel thread has no executable: nothing to read there either.
        _ => Inspect::Denied,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_in_its_own_tree() {
        let me = std::process::id();
        assert!(alive(me));
        assert!(tree(me).contains(&me));
        assert!(!is_python(me));
        assert!(cmdline(me)[0].contains("timeglass_recorder"));
        assert!(!alive(u32::MAX - 1));
        assert!(!is_helper(me));
        assert_eq!(environ_var(me, "PATH"), std::env::var("PATH").ok());
        assert_eq!(environ_var(me, "TIMEGLASS_NO_SUCH_VARIABLE"), None);
        let own = std::os::unix::fs::MetadataExt::uid(&fs::metadata("/proc/self").unwrap());
        assert_eq!(uid(me), Some(own));
        assert!(exe(me).is_ok());
        assert_eq!(exe(u32::MAX - 1), Err(Inspect::Gone));
    }
}
