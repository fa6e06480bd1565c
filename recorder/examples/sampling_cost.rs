//! What the process sampling of issue 10 costs the recorder: the CPU time
//! of one busy tick of [`Resources`] (a `pread` of `/proc/PID/stat` and of
//! `statm`, and counting `fd/`), the path taken 10 times a second while
//! requests are in flight, against a process with as many open files as a
//! uvicorn worker serving a database app.
//!
//!     cargo run --release -p timeglass-recorder --example sampling_cost [TICKS]
//!
//! It prints the thread CPU time per tick and the share of one core at the
//! writer's rate ([`resources::EVERY`]).

use std::time::Duration;

use timeglass_recorder::resources::{self, Resources};

/// Open files of the process sampled: a uvicorn worker with a database
/// pool has a few dozen (its sockets, the pool, the marker's ring).
const FILES: usize = 40;

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() {
    let ticks: u64 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let _files: Vec<std::fs::File> = (0..FILES)
        .map(|_| std::fs::File::open("/proc/self/stat").expect("open"))
        .collect();
    let mut r = Resources::open(std::process::id()).expect("/proc");
    r.tick(true, 0, 0).expect("baseline tick");
    let start = thread_cpu();
    let mut kept = 0u64;
    for i in 1..=ticks {
        kept += u64::from(r.tick(true, i, i).expect("tick").is_some());
    }
    let per_tick = (thread_cpu() - start).as_secs_f64() / ticks as f64;
    assert_eq!(kept, ticks, "every busy tick keeps a sample");
    let rate = 1.0 / resources::EVERY.as_secs_f64();
    println!(
        "{ticks} busy ticks, {FILES} open files: {:.1} us CPU a tick; at {rate:.0} Hz {:.4}% of a core",
        per_tick * 1e6,
        per_tick * rate * 100.0
    );
}
