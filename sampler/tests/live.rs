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
        },
    )
    .err()
    .unwrap();
    assert!(matches!(err, SourceError::NotPython { .. }), "{err}");
}
