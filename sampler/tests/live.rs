//! The live source against a real Python process.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use timeglass_sampler::{PySpyOptions, PySpySource, SourceError, StackSource};

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python(code: &str) -> Kill {
    let child = Command::new("python3")
        .args(["-c", code])
        .stdout(Stdio::null())
        .spawn()
        .expect("python3 on PATH");
    Kill(child)
}

fn attach(pid: u32) -> PySpySource {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match PySpySource::attach(
            pid,
            PySpyOptions {
                gil_only: false,
                lines: true,
                pyspy_walker: false,
            },
        ) {
            Ok(s) => return s,
            Err(e) if Instant::now() > deadline => panic!("attach failed: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[test]
fn reads_a_busy_python_thread_outermost_first() {
    let child = python(
        "def timeglass_burn():\n    while True:\n        sum(range(1000))\ntimeglass_burn()\n",
    );
    let mut source = attach(child.0.id());
    assert!(source.python_version().starts_with('3'));
    let mut seen = 0;
    for _ in 0..50 {
        let Ok(stacks) = source.stacks() else {
            continue;
        };
        for s in stacks.iter().filter(|s| s.active) {
            let names: Vec<&str> = s.frames.iter().map(|f| f.name.as_str()).collect();
            if names.first() == Some(&"<module>") && names.contains(&"timeglass_burn") {
                assert!(s.tid.is_some(), "3.11+ reports native tids");
                seen += 1;
            }
        }
    }
    assert!(
        seen >= 40,
        "only {seen} of 50 walks showed the busy function"
    );
    assert!(source.alive());
}

#[test]
fn a_missing_process_is_a_clear_error() {
    let err = PySpySource::attach(
        u32::MAX - 7,
        PySpyOptions {
            gil_only: false,
            lines: true,
            pyspy_walker: false,
        },
    )
    .err()
    .unwrap();
    assert!(matches!(err, SourceError::NoSuchProcess { .. }), "{err}");
}

#[test]
fn a_process_that_is_not_python_is_named_as_such() {
    let child = Kill(Command::new("sleep").arg("30").spawn().unwrap());
    std::thread::sleep(Duration::from_millis(100));
    let err = PySpySource::attach(
        child.0.id(),
        PySpyOptions {
            gil_only: false,
            lines: true,
            pyspy_walker: false,
        },
    )
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

fn attach_with(pid: u32, pyspy_walker: bool) -> PySpySource {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let options = PySpyOptions {
            gil_only: true,
            lines: true,
            pyspy_walker,
        };
        let why = match PySpySource::attach(pid, options) {
            Ok(mut s) => {
                // Until the spin starts the stack is still moving.
                if s.stacks().is_ok_and(|t| t.iter().any(spinning)) {
                    return s;
                }
                "the process never reached its spin".to_string()
            }
            Err(e) => format!("attach failed: {e}"),
        };
        assert!(Instant::now() < deadline, "{why}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spinning(stack: &timeglass_sampler::ThreadStack) -> bool {
    stack.frames.last().is_some_and(|f| f.name == "Ωmega")
}

#[test]
fn the_cached_walker_reads_what_py_spy_reads() {
    if !python_minor_is(11) {
        eprintln!("skipped: the cached walker reads CPython 3.11 only");
        return;
    }
    let child = python(FIXED_PLACE);
    let mut reference = attach_with(child.0.id(), true);
    let mut cached = attach_with(child.0.id(), false);
    assert_eq!(reference.walker(), "py-spy");
    assert_eq!(cached.walker(), "cached");
    let expected = reference.stacks().unwrap();
    assert_eq!(expected.len(), 1, "only the GIL holder");
    let names: Vec<&str> = expected[0].frames.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names.first(), Some(&"<module>"));
    assert_eq!(names.iter().filter(|n| **n == "Shop.größe").count(), 26);
    assert_eq!(names.iter().filter(|n| **n == "deeper").count(), 11);
    let mut same = 0;
    for _ in 0..50 {
        // Every walk after the first is served from the cache.
        if cached.stacks().unwrap() == expected {
            same += 1;
        }
    }
    assert_eq!(same, 50, "the cached walker differed from py-spy's");
    let mut lines = expected[0].frames.iter().map(|f| f.line);
    assert!(lines.all(|l| l > 0), "{expected:?}");
}

fn python_minor_is(minor: u32) -> bool {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.version_info[1])"])
        .output()
        .expect("python3 on PATH");
    String::from_utf8_lossy(&out.stdout).trim() == minor.to_string()
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

#[test]
fn the_cached_walker_reads_every_thread_as_py_spy_does() {
    if !python_minor_is(11) {
        eprintln!("skipped: the cached walker reads CPython 3.11 only");
        return;
    }
    let child = python(THREE_THREADS);
    let pid = child.0.id();
    let _ready = attach_with(pid, true);
    let options = |pyspy_walker| PySpyOptions {
        gil_only: false,
        lines: true,
        pyspy_walker,
    };
    let mut reference = PySpySource::attach(pid, options(true)).unwrap();
    let mut cached = PySpySource::attach(pid, options(false)).unwrap();
    assert_eq!(cached.walker(), "cached");
    let expected = reference.stacks().unwrap();
    assert_eq!(expected.len(), 3, "{expected:?}");
    let spinning: Vec<_> = expected.iter().filter(|t| t.owns_gil).collect();
    assert_eq!(spinning.len(), 1);
    assert!(spinning[0].active);
    assert_eq!(
        expected.iter().filter(|t| !t.active).count(),
        2,
        "{expected:?}"
    );
    let same = (0..50)
        .filter(|_| cached.stacks().unwrap() == expected)
        .count();
    assert_eq!(same, 50, "the cached walker differed from py-spy's");
}
