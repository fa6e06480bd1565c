//! Records a live process's walks as a `ReplaySource` fixture: one JSON
//! array of thread stacks per line, as `ReplaySource::from_jsonl` reads them.
//!
//! `record_walks PID COUNT INTERVAL_MS OUT.jsonl` walks PID (every thread,
//! with lines) COUNT times, INTERVAL_MS apart, and writes the walks that
//! had a stack. The fixtures under `render/tests/data/walks/` were recorded
//! this way from `fixtures/demo_app.py` serving requests.

use std::io::Write;
use std::time::Duration;

use timeglass_sampler::{PySpyOptions, PySpySource, StackSource};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [pid, count, interval, out] = &args[..] else {
        eprintln!("usage: record_walks PID COUNT INTERVAL_MS OUT.jsonl");
        std::process::exit(2);
    };
    let number = |s: &str| -> u64 {
        s.parse().unwrap_or_else(|_| {
            eprintln!("record_walks: `{s}` is not a number");
            std::process::exit(2)
        })
    };
    let options = PySpyOptions {
        gil_only: false,
        lines: true,
        pyspy_walker: false,
    };
    let mut source = PySpySource::attach(number(pid) as u32, options).unwrap_or_else(|e| {
        eprintln!("record_walks: cannot attach to {pid}: {e}");
        std::process::exit(1)
    });
    let mut file = std::fs::File::create(out).expect("the output file can be created");
    for _ in 0..number(count) {
        match source.stacks() {
            Ok(stacks) if !stacks.is_empty() => {
                let line = serde_json::to_string(&stacks).expect("stacks serialize");
                writeln!(file, "{line}").expect("the output file can be written");
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("record_walks: {e}");
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(number(interval)));
    }
}
