//! The live source against real Python processes, on every interpreter
//! found: `TIMEGLASS_PYTHONS` (colon-separated paths) when set, else
//! `$(pyenv root)/versions/3.1{0,1,2,3}.*/bin/python3` and `python3` on PATH.
//! Under `CI`, a missing 3.10, 3.11, 3.12 or 3.13 fails the run.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use timeglass_sampler::{PySpyOptions, PySpySource, SourceError, StackSource, ThreadStack};

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One interpreter to test with.
#[derive(Clone, Debug)]
struct Python {
    path: PathBuf,
    minor: u32,
}

impl Python {
    /// Runs `code` once the interpreter has started (its `site` imports
    /// done, which take a second or more on a loaded machine): walks taken
    /// after this returns see `code` running, not start-up. `code` must not
    /// print, since nothing reads its output after the first line.
    fn run(&self, code: &str) -> Kill {
        let (child, line) =
            self.run_reporting(&["-c", &format!("print('started', flush=True)\n{code}")]);
        assert_eq!(line.trim(), "started", "{}", self.path.display());
        child
    }

    /// Runs `args` and waits for the first line it prints (what it reports
    /// about itself before the test reads it from outside).
    fn run_reporting(&self, args: &[&str]) -> (Kill, String) {
        let mut child = Kill(
            Command::new(&self.path)
                .args(args)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.path.display())),
        );
        let mut line = String::new();
        BufReader::new(child.0.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        (child, line)
    }
}

fn minor_of(path: &PathBuf) -> Option<u32> {
    let out = Command::new(path)
        .args([
            "-c",
            "import sys; print(sys.version_info[0], sys.version_info[1])",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut parts = text.split_whitespace();
    (parts.next()? == "3").then_some(())?;
    parts.next()?.parse().ok()
}

/// The interpreters to test, one per minor version, each 3.10+.
fn pythons() -> Vec<Python> {
    let candidates: Vec<PathBuf> = match std::env::var("TIMEGLASS_PYTHONS") {
        Ok(list) if !list.is_empty() => list.split(':').map(PathBuf::from).collect(),
        _ => {
            let root = Command::new("pyenv")
                .arg("root")
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .filter(|r| !r.is_empty())
                .or_else(|| std::env::var("PYENV_ROOT").ok())
                .or_else(|| std::env::var("HOME").ok().map(|h| format!("{h}/.pyenv")));
            let mut found = Vec::new();
            if let Some(Ok(entries)) = root.map(|r| std::fs::read_dir(format!("{r}/versions"))) {
                let mut names: Vec<String> = entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| {
                        ["3.10.", "3.11.", "3.12.", "3.13."]
                            .iter()
                            .any(|p| n.starts_with(p))
                    })
                    .filter(|n| n.chars().all(|c| c.is_ascii_digit() || c == '.'))
                    .collect();
                names.sort();
                found.extend(
                    names
                        .iter()
                        .map(|n| PathBuf::from(format!("{}/versions/{n}/bin/python3", root_dir()))),
                );
            }
            found.push(PathBuf::from("python3"));
            found
        }
    };
    let mut by_minor = BTreeMap::new();
    for path in candidates {
        if let Some(minor) = minor_of(&path).filter(|m| *m >= 10) {
            by_minor.entry(minor).or_insert(Python { path, minor });
        }
    }
    if std::env::var_os("CI").is_some() {
        for minor in 10..=13 {
            assert!(
                by_minor.contains_key(&minor),
                "CPython 3.{minor} is expected under CI but was not found \
                 (set TIMEGLASS_PYTHONS or install it with pyenv)"
            );
        }
    }
    assert!(!by_minor.is_empty(), "no CPython 3.10+ found to test with");
    by_minor.into_values().collect()
}

fn root_dir() -> String {
    Command::new("pyenv")
        .arg("root")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|r| !r.is_empty())
        .or_else(|| std::env::var("PYENV_ROOT").ok())
        .unwrap_or_else(|| format!("{}/.pyenv", std::env::var("HOME").unwrap_or_default()))
}

/// Runs `test` once per interpreter; fails with every interpreter's failure.
fn on_every_python(test: impl Fn(&Python) + std::panic::RefUnwindSafe) {
    let mut failures = Vec::new();
    for python in pythons() {
        eprintln!("CPython 3.{}: {}", python.minor, python.path.display());
        if let Err(e) = std::panic::catch_unwind(|| test(&python)) {
            let why = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| {
                    e.downcast_ref::<&str>()
                        .map(std::string::ToString::to_string)
                })
                .unwrap_or_default();
            failures.push(format!(
                "CPython 3.{} ({}): {why}",
                python.minor,
                python.path.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn options(gil_only: bool, pyspy_walker: bool) -> PySpyOptions {
    PySpyOptions {
        gil_only,
        lines: true,
        pyspy_walker,
    }
}

fn attach(pid: u32, options: PySpyOptions) -> PySpySource {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match PySpySource::attach(pid, options) {
            Ok(s) => return s,
            Err(e) if Instant::now() > deadline => panic!("attach failed: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Attaches once the GIL holder's leaf frame is `leaf`.
fn attach_at(pid: u32, options: PySpyOptions, leaf: &str) -> PySpySource {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let why = match PySpySource::attach(pid, options) {
            Ok(mut s) => {
                let at_leaf = |t: &ThreadStack| t.frames.last().is_some_and(|f| &*f.name == leaf);
                // Until the spin starts the stack is still moving.
                match s.stacks() {
                    Ok(t) if t.iter().any(at_leaf) => return s,
                    Ok(t) => format!("the process never reached {leaf}: {t:?}"),
                    Err(e) if s.walker() == "py-spy" => {
                        format!("py-spy's own walk fails on this machine: {e}")
                    }
                    Err(e) => format!("the cached walk failed: {e}"),
                }
            }
            Err(e) => format!("attach failed: {e}"),
        };
        assert!(Instant::now() < deadline, "{why}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn reads_a_busy_python_thread_outermost_first() {
    on_every_python(|python| {
        let child = python.run(
            "def timeglass_burn():\n    while True:\n        sum(range(1000))\ntimeglass_burn()\n",
        );
        let mut source = attach(child.0.id(), options(false, false));
        assert!(source
            .python_version()
            .starts_with(&format!("3.{}", python.minor)));
        assert_eq!(source.walker(), "cached");
        let mut seen = 0;
        for _ in 0..50 {
            let Ok(stacks) = source.stacks() else {
                continue;
            };
            for s in stacks.iter().filter(|s| s.active) {
                let names: Vec<&str> = s.frames.iter().map(|f| f.name.as_ref()).collect();
                if names.first() == Some(&"<module>") && names.contains(&"timeglass_burn") {
                    // The main thread's tid is the pid (3.10 included: found
                    // through glibc's struct pthread).
                    assert_eq!(s.tid, Some(child.0.id()), "{s:?}");
                    seen += 1;
                }
            }
        }
        assert!(
            seen >= 40,
            "only {seen} of 50 walks showed the busy function"
        );
        assert!(source.alive());
    });
}

#[test]
fn a_missing_process_is_a_clear_error() {
    let err = PySpySource::attach(u32::MAX - 7, options(false, false))
        .err()
        .unwrap();
    assert!(matches!(err, SourceError::NoSuchProcess { .. }), "{err}");
}

#[test]
fn a_process_that_is_not_python_is_named_as_such() {
    let child = Kill(Command::new("sleep").arg("30").spawn().unwrap());
    std::thread::sleep(Duration::from_millis(100));
    let err = PySpySource::attach(child.0.id(), options(false, false))
        .err()
        .unwrap();
    assert!(matches!(err, SourceError::NotPython { .. }), "{err}");
}

/// A process spinning at a fixed place, under coroutines, methods and
/// non-ASCII names (Latin-1 and wider), so that every walk of it is the same.
const FIXED_PLACE: &str = r#"
import asyncio

class Shop:
    def größe(self, n):
        if n == 0:
            return Ωmega()
        return self.größe(n - 1)

def Ωmega():
    while True: pass

async def deeper(n):
    if n == 0:
        return Shop().größe(25)
    return await deeper(n - 1)

asyncio.run(deeper(10))
"#;

#[test]
fn the_cached_walker_reads_what_py_spy_reads() {
    on_every_python(|python| {
        let child = python.run(FIXED_PLACE);
        let pid = child.0.id();
        let mut reference = attach_at(pid, options(true, true), "Ωmega");
        let mut cached = attach_at(pid, options(true, false), "Ωmega");
        let mut per_frame = attach_at(pid, options(true, false), "Ωmega");
        per_frame.set_chunk_reads(false);
        assert_eq!(reference.walker(), "py-spy");
        assert_eq!(cached.walker(), "cached");
        let expected = reference
            .stacks()
            .expect("py-spy's own walk fails on this machine");
        assert_eq!(expected.len(), 1, "only the GIL holder");
        let names: Vec<&str> = expected[0].frames.iter().map(|f| f.name.as_ref()).collect();
        // 3.10 has no qualified names: py-spy shows the plain name.
        let method = if python.minor >= 11 {
            "Shop.größe"
        } else {
            "größe"
        };
        assert_eq!(names.first(), Some(&"<module>"));
        assert_eq!(
            names.iter().filter(|n| **n == method).count(),
            26,
            "{names:?}"
        );
        assert_eq!(
            names.iter().filter(|n| **n == "deeper").count(),
            11,
            "{names:?}"
        );
        let same = (0..50)
            .filter(|_| cached.stacks().unwrap() == expected)
            .count();
        assert_eq!(
            same,
            50,
            "the cached walker differed from py-spy's: {:?} vs {expected:?}",
            cached.stacks()
        );
        let same = (0..50)
            .filter(|_| per_frame.stacks().unwrap() == expected)
            .count();
        assert_eq!(same, 50, "one read per frame differed from py-spy's walk");
        let mut lines = expected[0].frames.iter().map(|f| f.line);
        assert!(lines.all(|l| l > 0), "{expected:?}");
    });
}

/// Two coroutine chains of different depths, made afresh and run in turn
/// every few milliseconds: the frames outside the data-stack chunk change
/// between walks (and pymalloc may put new coroutines where old ones were).
const CHANGING_CHAINS: &str = r#"
import time

async def level(n, leaf):
    if n == 0:
        leaf()
    else:
        await level(n - 1, leaf)

def spin_a():
    t = time.perf_counter()
    while time.perf_counter() - t < 0.003: pass

def spin_b():
    t = time.perf_counter()
    while time.perf_counter() - t < 0.002: pass

while True:
    for leaf, depth in ((spin_a, 12), (spin_b, 5)):
        c = level(depth, leaf)
        try:
            c.send(None)
        except StopIteration:
            pass
"#;

/// Frames read ahead from the last walk's addresses are only the frames the
/// links lead to: a whole walk is one chain or the other. A walk that races
/// the end of a spin (a coroutine finishing, a new one made where it was)
/// can still mix them, as any walk of a running thread can: such walks stay
/// rare.
#[test]
fn frames_read_ahead_never_mix_two_chains() {
    on_every_python(|python| {
        let child = python.run(CHANGING_CHAINS);
        let mut cached = attach_at(child.0.id(), options(true, false), "spin_a");
        let (mut a, mut b, mut mixed) = (0, 0, Vec::new());
        for _ in 0..400 {
            let Ok(stacks) = cached.stacks() else {
                continue;
            };
            // A walk that loses its outer frames is torn, and told
            // downstream by its root: only whole stacks are judged.
            let Some(stack) = stacks
                .first()
                .filter(|s| s.frames.first().is_some_and(|f| &*f.name == "<module>"))
            else {
                continue;
            };
            let levels = stack.frames.iter().filter(|f| &*f.name == "level").count();
            match (leaf(stack), levels) {
                ("spin_a", 13) => a += 1,
                ("spin_b", 6) => b += 1,
                ("spin_a" | "spin_b", _) => mixed.push(stack.clone()),
                // Between the two: the loop, or a chain being made or unwound.
                _ => {}
            }
            std::thread::sleep(Duration::from_micros(300));
        }
        assert!(
            a > 50 && b > 30,
            "walks saw spin_a {a} and spin_b {b} times"
        );
        assert!(
            mixed.len() * 50 <= a + b,
            "{} of {} whole walks mixed two chains: {mixed:?}",
            mixed.len(),
            a + b + mixed.len()
        );
    });
}

/// Three threads: one spinning (holds the GIL), one asleep in `time.sleep`,
/// one waiting on an event (py-spy's idle rule), so every walk is the same.
const THREE_THREADS: &str = r#"
import threading, time

def dozing():
    time.sleep(3600)

def waiting(event):
    event.wait()

threading.Thread(target=dozing, name="dozing", daemon=True).start()
threading.Thread(target=waiting, args=(threading.Event(),), daemon=True).start()
time.sleep(0.2)

def Ωmega():
    while True: pass

Ωmega()
"#;

fn leaf(stack: &ThreadStack) -> &str {
    stack.frames.last().map_or("", |f| f.name.as_ref())
}

#[test]
fn the_cached_walker_reads_every_thread_as_py_spy_does() {
    on_every_python(|python| {
        let child = python.run(THREE_THREADS);
        let pid = child.0.id();
        let mut reference = attach_at(pid, options(false, true), "Ωmega");
        let mut cached = attach_at(pid, options(false, false), "Ωmega");
        assert_eq!(cached.walker(), "cached");
        let expected = reference
            .stacks()
            .expect("py-spy's own walk fails on this machine");
        assert_eq!(expected.len(), 3, "{expected:?}");
        let spinning: Vec<_> = expected.iter().filter(|t| t.owns_gil).collect();
        assert_eq!(spinning.len(), 1);
        assert_eq!(leaf(spinning[0]), "Ωmega");
        assert!(spinning[0].active);
        // 3.10 has no native tids, so py-spy cannot ask the OS and only its
        // idle rule (the thread waiting on an event) applies.
        let idle = if python.minor >= 11 { 2 } else { 1 };
        assert_eq!(
            expected.iter().filter(|t| !t.active).count(),
            idle,
            "{expected:?}"
        );
        // 3.10's thread states have no native tids, so py-spy reports none
        // and judges activity by its idle rule alone; the walker finds the
        // tids (glibc's struct pthread) and asks the OS, as on 3.11+.
        let comparable = |stacks: Vec<ThreadStack>| -> Vec<ThreadStack> {
            if python.minor >= 11 {
                return stacks;
            }
            stacks
                .into_iter()
                .map(|s| {
                    let e = expected.iter().find(|e| e.pthread_id == s.pthread_id);
                    ThreadStack {
                        tid: None,
                        on_cpu: None,
                        active: e.is_some_and(|e| e.active),
                        ..s
                    }
                })
                .collect()
        };
        let mut per_frame = attach_at(pid, options(false, false), "Ωmega");
        per_frame.set_chunk_reads(false);
        for (walker, source) in [
            ("chunk reads", &mut cached),
            ("per-frame reads", &mut per_frame),
        ] {
            let same = (0..50)
                .filter(|_| comparable(source.stacks().unwrap()) == expected)
                .count();
            assert_eq!(
                same,
                50,
                "the cached walker ({walker}) differed from py-spy's: {:?} vs {expected:?}",
                source.stacks()
            );
        }
        let stacks = cached.stacks().unwrap();
        assert_eq!(stacks.iter().filter(|t| !t.active).count(), 2, "{stacks:?}");
        let tasks: std::collections::HashSet<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        let tids: std::collections::HashSet<u32> = stacks.iter().filter_map(|s| s.tid).collect();
        assert_eq!(tids, tasks, "{stacks:?}");
        for stack in &stacks {
            // What the OS says: spinning runs, the others sleep.
            assert_eq!(stack.on_cpu, Some(leaf(stack) == "Ωmega"), "{stack:?}");
            if stack.owns_gil {
                assert_eq!(stack.tid, Some(pid), "the main thread spins");
            }
        }
    });
}

#[test]
fn stacks_with_reads_the_gil_holder_and_the_threads_asked_for() {
    on_every_python(|python| {
        let child = python.run(THREE_THREADS);
        let pid = child.0.id();
        let mut cached = attach_at(pid, options(true, false), "Ωmega");
        let mut reference = attach_at(pid, options(true, true), "Ωmega");
        let mut all = attach_at(pid, options(false, false), "Ωmega");
        let every = all.stacks().unwrap();
        let leaves = |stacks: &[ThreadStack]| {
            let mut l: Vec<String> = stacks.iter().map(|s| leaf(s).to_string()).collect();
            l.sort();
            l
        };
        if python.minor < 11 {
            // py-spy knows no native tids before 3.11: it returns every thread.
            assert_eq!(
                leaves(&reference.stacks_with(&[1]).unwrap()),
                leaves(&every)
            );
        }
        let dozing = every
            .iter()
            .find(|s| leaf(s) == "sleep" || leaf(s) == "dozing");
        let dozing = dozing.unwrap_or_else(|| panic!("no dozing thread in {every:?}"));
        let tid = dozing.tid.unwrap();
        let sources = if python.minor >= 11 {
            vec![&mut cached, &mut reference]
        } else {
            vec![&mut cached]
        };
        for source in sources {
            let only_holder = source.stacks_with(&[]).unwrap();
            assert_eq!(leaves(&only_holder), ["Ωmega"], "{only_holder:?}");
            assert!(only_holder[0].owns_gil && only_holder[0].on_cpu == Some(true));
            let unknown = source.stacks_with(&[u32::MAX - 3]).unwrap();
            assert_eq!(leaves(&unknown), ["Ωmega"]);
            for _ in 0..50 {
                let with = source.stacks_with(&[tid, tid]).unwrap();
                assert_eq!(with.len(), 2, "{with:?}");
                let doze = with.iter().find(|s| s.tid == Some(tid)).unwrap();
                assert_eq!(doze, dozing);
                assert_eq!(doze.on_cpu, Some(false));
                assert!(!doze.owns_gil);
            }
        }
    });
}

#[test]
fn the_published_debug_offsets_are_the_built_in_table() {
    on_every_python(|python| {
        let child = python.run(FIXED_PLACE);
        let source = attach_at(child.0.id(), options(true, false), "Ωmega");
        // 3.13's `_Py_DebugOffsets` against the table the walker would use
        // without it; earlier versions publish none.
        assert_eq!(source.layout_is_builtin(), Some(true));
    });
}

/// What `chains.py` printed about one coroutine.
fn reported(report: &serde_json::Value, key: &str) -> (u64, Vec<(String, u32)>, Option<String>) {
    let entry = &report[key];
    let frames = entry["frames"]
        .as_array()
        .map(|f| {
            f.iter()
                .map(|f| {
                    (
                        f[0].as_str().unwrap().to_string(),
                        f[1].as_u64().unwrap() as u32,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    (
        entry["id"].as_u64().unwrap(),
        frames,
        entry["awaits"].as_str().map(String::from),
    )
}

#[test]
fn await_chains_are_what_python_reports() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/live/chains.py");
    on_every_python(|python| {
        let (child, line) = python.run_reporting(&[script]);
        let report: serde_json::Value = serde_json::from_str(&line).expect(&line);
        for pyspy_walker in [false, true] {
            let mut source = attach(child.0.id(), options(true, pyspy_walker));
            // The layout's `fut_state` is where the interpreter keeps it.
            let measured = report["future_state"].as_array().unwrap();
            let offset = source.future_state_offset().unwrap() as u64;
            assert_eq!(measured.len(), 1, "fut_state is ambiguous: {measured:?}");
            assert_eq!(measured[0].as_u64(), Some(offset));
            for key in ["sleeping", "waiting", "ready", "generator"] {
                let (id, frames, awaits) = reported(&report, key);
                let chain = source.await_chain(id).unwrap().expect("reads await chains");
                let got: Vec<(String, u32)> = chain
                    .frames
                    .iter()
                    .map(|f| (f.name.to_string(), f.line))
                    .collect();
                assert_eq!(got, frames, "{key}: {chain:?}");
                assert_eq!(chain.awaits, awaits, "{key}");
                assert!(!chain.running, "{key}");
                assert_eq!(chain.ready, key == "ready", "{key}: {chain:?}");
            }
            let (id, names, _) = reported(&report, "sleeping");
            assert_eq!(names.first().map(|f| f.0.as_str()), Some("outer"));
            let sleeping = source.await_chain(id).unwrap().unwrap();
            let sleep = sleeping.frames.last().unwrap();
            assert_eq!(&*sleep.name, "sleep");
            assert!(sleep.filename.ends_with("asyncio/tasks.py"), "{sleep:?}");
            assert_eq!(sleeping.awaits.as_deref(), Some("_asyncio.FutureIter"));
            let running = &report["running"];
            let chain = source
                .await_chain(running["id"].as_u64().unwrap())
                .unwrap()
                .unwrap();
            assert!(chain.running, "{chain:?}");
            assert_eq!(chain.frames.len(), 1, "{chain:?}");
            assert_eq!(&*chain.frames[0].name, "main");
            assert_eq!(
                u64::from(chain.frames[0].line),
                running["line"].as_u64().unwrap()
            );
            // Not a coroutine: an error, not a panic or a guess.
            assert!(source.await_chain(8).is_err());
        }
    });
}

/// Runs 37 full collections, says how many ran in all (`gc.get_stats()`),
/// then collects a cycle whose finalizer spins in `Ωmega`: the collector
/// stays in that collection for good.
const COLLECTING: &str = r#"
import gc
gc.disable()
for _ in range(37):
    gc.collect()
print(sum(s["collections"] for s in gc.get_stats()), flush=True)

def Ωmega():
    while True: pass

class Cycle:
    def __init__(self):
        self.me = self
    def __del__(self):
        Ωmega()

Cycle()
gc.collect()
"#;

#[test]
fn the_collector_is_read_from_outside() {
    on_every_python(|python| {
        let (child, line) = python.run_reporting(&["-c", COLLECTING]);
        let before: u64 = line.trim().parse().expect(&line);
        let mut source = attach_at(child.0.id(), options(true, false), "Ωmega");
        let collector = source.collector().expect("the collector's state");
        // Inside its 38th collection, which has not finished.
        assert!(collector.collecting, "{collector:?}");
        assert_eq!(collector.collections, before, "{collector:?}");
        assert!(before >= 37, "{before}");
    });
}
