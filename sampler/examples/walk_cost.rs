//! What one stack walk costs with py-spy's walker and with the cached one,
//! measured side by side on the same processes, for every interpreter given.
//!
//! `walk_cost [--depth N] [--rounds N] [--coroutines] PYTHON...` starts each
//! PYTHON spinning under N frames (default 40, a Uvicorn request's depth;
//! with `--coroutines` most of them coroutines awaiting each other, as in a
//! request's await chain) and, round after
//! round, measures on each interpreter in turn a batch of walks with each
//! walker (alternating which goes first). Only the interpreter being measured
//! runs; the others are stopped (SIGSTOP), so that at most one spinning
//! process competes with the walker for a CPU. Prints, per interpreter, the
//! median microseconds per walk of each walker, the spread of the rounds
//! (first to third quartile) and the ratio of the medians; and the cached
//! walker with its data-stack chunk reads switched off (one read per frame),
//! to show what they save (3.10 has no chunks: the two are the same there). `make bench`
//! runs it through `bench/walk.py`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use timeglass_sampler::{PySpyOptions, PySpySource, StackSource};

const WALKS_PER_ROUND: usize = 200;
/// The cached walker should cost at most this share of py-spy's.
const TARGET_RATIO: f64 = 0.25;

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGCONT);
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One interpreter under test.
struct Target {
    version: String,
    process: Kill,
    pyspy: PySpySource,
    cached: PySpySource,
    chunked: PySpySource,
    slow: Vec<f64>,
    fast: Vec<f64>,
    chunks: Vec<f64>,
}

fn main() {
    let mut depth = 40;
    let mut rounds = 15;
    let mut coroutines = false;
    let mut pythons = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--depth" => depth = number(args.next()),
            "--rounds" => rounds = number(args.next()),
            "--coroutines" => coroutines = true,
            _ => pythons.push(arg),
        }
    }
    if pythons.is_empty() {
        eprintln!("usage: walk_cost [--depth N] [--rounds N] [--coroutines] PYTHON...");
        std::process::exit(2);
    }
    let mut targets: Vec<Target> = pythons
        .iter()
        .map(|p| start(p, depth, coroutines))
        .collect();
    for target in &targets {
        pause(target, true);
    }
    for round in 0..rounds {
        for target in &mut targets {
            pause(target, false);
            // Each walker goes first, second and third in turn.
            for turn in 0..3 {
                match (round + turn) % 3 {
                    0 => target.slow.push(measure(&mut target.pyspy)),
                    1 => target.fast.push(measure(&mut target.cached)),
                    _ => target.chunks.push(measure(&mut target.chunked)),
                }
            }
            pause(target, true);
        }
    }
    let shape = if coroutines {
        "stack, mostly coroutines"
    } else {
        "stack"
    };
    println!(
        "stack walk of a {depth}-frame {shape} (GIL holder, with lines), {rounds} interleaved \
         rounds of {WALKS_PER_ROUND} walks per walker; µs per walk, median [first-third quartile]:"
    );
    println!(
        "  {:<8} {:>24} {:>24} {:>15} {:>24} {:>15}",
        "python",
        "py-spy's walker",
        "cached walker",
        "cached/py-spy",
        "per-frame reads",
        "per-frame/cached"
    );
    let mut all_met = true;
    for target in &targets {
        let (slow, fast) = (summary(&target.slow), summary(&target.fast));
        let chunks = summary(&target.chunks);
        let ratio = fast.0 / slow.0;
        all_met &= ratio <= TARGET_RATIO;
        println!(
            "  {:<8} {} {} {:>15.3} {} {:>15.3}{}",
            target.version,
            cell(slow),
            cell(fast),
            ratio,
            cell(chunks),
            chunks.0 / fast.0,
            if ratio <= TARGET_RATIO {
                ""
            } else {
                "  (over the target)"
            }
        );
    }
    println!(
        "  target: cached/py-spy <= {TARGET_RATIO} on every version: {}",
        if all_met { "met" } else { "NOT met" }
    );
}

fn cell((median, low, high): (f64, f64, f64)) -> String {
    format!("{median:>8.1} [{low:>6.1}-{high:>6.1}]")
}

fn number(arg: Option<String>) -> usize {
    arg.and_then(|a| a.parse().ok()).unwrap_or_else(|| {
        eprintln!("--depth and --rounds take a number");
        std::process::exit(2)
    })
}

fn start(python: &str, depth: usize, coroutines: bool) -> Target {
    let script = if coroutines {
        // A request's shape: coroutines awaiting coroutines, whose frames
        // live in the coroutine objects, not in the data-stack chunk.
        format!(
            "import asyncio, sys\nsys.setrecursionlimit(10000)\n\
             def spin():\n    while True: pass\n\
             async def down(n):\n    return spin() if n <= 3 else await down(n - 1)\n\
             asyncio.run(down({}))\n",
            depth.saturating_sub(2)
        )
    } else {
        format!(
            "import sys\nsys.setrecursionlimit(10000)\n\
             def spin():\n    while True: pass\n\
             def down(n):\n    return spin() if n <= 2 else down(n - 1)\n\
             down({depth})\n"
        )
    };
    let process = Kill(
        Command::new(python)
            .args(["-c", &script])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {python}: {e}")),
    );
    let pid = process.0.id();
    let pyspy = attach(pid, true, depth);
    let mut cached = attach(pid, false, depth);
    assert_eq!(cached.walker(), "cached", "{python} has no cached walker");
    cached.set_chunk_reads(true);
    let mut chunked = attach(pid, false, depth);
    chunked.set_chunk_reads(false);
    Target {
        version: pyspy.python_version(),
        process,
        pyspy,
        cached,
        chunked,
        slow: Vec::new(),
        fast: Vec::new(),
        chunks: Vec::new(),
    }
}

fn pause(target: &Target, stop: bool) {
    let signal = if stop {
        Signal::SIGSTOP
    } else {
        Signal::SIGCONT
    };
    kill(Pid::from_raw(target.process.0.id() as i32), signal).expect("signal the target");
    if !stop {
        // Let it get back on a CPU before the walks start.
        std::thread::sleep(Duration::from_millis(20));
    }
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
fn measure(source: &mut PySpySource) -> f64 {
    let start = Instant::now();
    for _ in 0..WALKS_PER_ROUND {
        let _ = source.stacks();
    }
    start.elapsed().as_secs_f64() * 1e6 / WALKS_PER_ROUND as f64
}

/// Median, first and third quartile.
fn summary(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.25), at(0.75))
}
