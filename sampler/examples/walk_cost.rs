//! What one stack walk costs with py-spy's walker and with the cached one,
//! measured side by side on the same process.
//!
//! `walk_cost PYTHON [DEPTH]` starts PYTHON spinning under DEPTH frames
//! (default 40, a Uvicorn request's depth) and alternates rounds of walks
//! between the two walkers; prints the median microseconds per walk of each
//! and their ratio. `make bench` runs it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use timeglass_sampler::{PySpyOptions, PySpySource, StackSource};

const ROUNDS: usize = 15;
const WALKS_PER_ROUND: usize = 200;

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(python) = args.next() else {
        eprintln!("usage: walk_cost PYTHON [DEPTH]");
        std::process::exit(2);
    };
    let depth: usize = args
        .next()
        .map_or(40, |d| d.parse().expect("DEPTH is a number"));
    let script = format!(
        "import sys\nsys.setrecursionlimit(10000)\n\
         def spin():\n    while True: pass\n\
         def down(n):\n    return spin() if n <= 2 else down(n - 1)\n\
         down({depth})\n"
    );
    let child = Kill(
        Command::new(&python)
            .args(["-c", &script])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {python}: {e}")),
    );
    let pid = child.0.id();
    let mut pyspy = attach(pid, true, depth);
    let mut cached = attach(pid, false, depth);
    let (mut slow, mut fast) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        slow.push(round(&mut pyspy));
        fast.push(round(&mut cached));
    }
    let (slow, fast) = (median(slow), median(fast));
    println!(
        "stack walk of a {depth}-frame stack, median of {ROUNDS} rounds of {WALKS_PER_ROUND}:"
    );
    println!("  py-spy's walker {slow:8.1} µs");
    println!("  cached walker   {fast:8.1} µs");
    println!("  cached / py-spy {:8.3}", fast / slow);
}

fn attach(pid: u32, pyspy_walker: bool, depth: usize) -> PySpySource {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let options = PySpyOptions {
            gil_only: true,
            lines: true,
            pyspy_walker,
        };
        if let Ok(mut source) = PySpySource::attach(pid, options) {
            let deep = |s: &timeglass_sampler::ThreadStack| s.frames.len() >= depth;
            if source.stacks().is_ok_and(|t| t.iter().any(deep)) {
                return source;
            }
        }
        assert!(Instant::now() < deadline, "never saw the spinning stack");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Mean microseconds per walk over one round.
fn round(source: &mut PySpySource) -> f64 {
    let start = Instant::now();
    for _ in 0..WALKS_PER_ROUND {
        let _ = source.stacks();
    }
    start.elapsed().as_secs_f64() * 1e6 / WALKS_PER_ROUND as f64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
