//! What each recorded process uses: CPU (user + system), resident memory,
//! threads and open file descriptors, read from `/proc`.
//!
//! The writer thread ticks every [`EVERY`]. Each tick reads every process's
//! `/proc/PID/stat` (one `pread` of a file kept open) so CPU deltas always
//! span one tick; only while a request is in flight, or one started since
//! the last tick, does it also read `statm`, count `fd/` and keep a sample.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use timeglass_store::ProcessSample;

/// 10 Hz while requests are in flight.
pub const EVERY: std::time::Duration = std::time::Duration::from_millis(100);

pub struct Resources {
    pid: u32,
    stat: File,
    statm: File,
    /// CPU ticks (user + system) at the last tick, and when.
    last: Option<(u64, Instant)>,
    /// The marker's count of ring records written at the last tick.
    last_records: u64,
    ticks_per_second: f64,
    page_size: u64,
}

/// `(utime + stime, num_threads)` from the text of `/proc/PID/stat`.
fn parse_stat(text: &str) -> Option<(u64, u32)> {
    // The command name may hold spaces and parentheses: fields start after the last `)`.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // After the name, state is field 3 of stat(5): index 0 here; utime 14 → 11,
    // stime 15 → 12, num_threads 20 → 17.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let threads: u32 = fields.get(17)?.parse().ok()?;
    Some((utime + stime, threads))
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("unexpected {what}"))
}

fn sysconf(name: libc::c_int, fallback: u64) -> u64 {
    // SAFETY: sysconf has no preconditions; it returns -1 for unknown names.
    let v = unsafe { libc::sysconf(name) };
    u64::try_from(v).ok().filter(|v| *v > 0).unwrap_or(fallback)
}

impl Resources {
    pub fn open(pid: u32) -> io::Result<Resources> {
        Ok(Resources {
            pid,
            stat: File::open(format!("/proc/{pid}/stat"))?,
            statm: File::open(format!("/proc/{pid}/statm"))?,
            last: None,
            last_records: 0,
            ticks_per_second: sysconf(libc::_SC_CLK_TCK, 100) as f64,
            page_size: sysconf(libc::_SC_PAGESIZE, 4096),
        })
    }

    fn read(file: &File, buf: &mut [u8]) -> io::Result<usize> {
        file.read_at(buf, 0)
    }

    /// One tick: a sample when `busy` (and a previous tick gave a CPU
    /// baseline), `None` otherwise. `records` is how many records the
    /// marker has written to its ring (0 without a marker): a request that
    /// started and ended between two ticks moved it, which makes the tick
    /// busy too (reading it changes nothing in the app's file).
    pub fn tick(
        &mut self,
        busy: bool,
        records: u64,
        ts_ns: u64,
    ) -> io::Result<Option<ProcessSample>> {
        let mut buf = [0u8; 1024];
        let n = Self::read(&self.stat, &mut buf)?;
        let text = std::str::from_utf8(&buf[..n]).map_err(|_| invalid("stat"))?;
        let (ticks, threads) = parse_stat(text).ok_or_else(|| invalid("stat"))?;
        let now = Instant::now();
        let previous = self.last.replace((ticks, now));
        let started = std::mem::replace(&mut self.last_records, records) != records;
        let Some((then_ticks, then)) = previous else {
            return Ok(None);
        };
        if !(busy || started) {
            return Ok(None);
        }
        let elapsed = now.duration_since(then).as_secs_f64();
        let cpu_seconds = ticks.saturating_sub(then_ticks) as f64 / self.ticks_per_second;
        let cpu_percent = if elapsed > 0.0 {
            100.0 * cpu_seconds / elapsed
        } else {
            0.0
        };
        let n = Self::read(&self.statm, &mut buf)?;
        let resident = crate::procfs::resident_pages(&buf[..n]).ok_or_else(|| invalid("statm"))?;
        let fds = std::fs::read_dir(format!("/proc/{}/fd", self.pid))?.count();
        Ok(Some(ProcessSample {
            ts_ns,
            cpu_percent,
            rss_bytes: resident * self.page_size,
            threads,
            fds: u32::try_from(fds).unwrap_or(u32::MAX),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let text = "4242 (uvicorn (app) x) S 1 4242 4242 0 -1 4194560 1200 0 0 0 150 25 0 0 20 0 7 0 123 456789 2048 18446744073709551615";
        assert_eq!(parse_stat(text), Some((175, 7)));
        assert_eq!(parse_stat("4242 (x) S 1"), None);
    }

    #[test]
    fn this_process_samples_itself_when_busy() {
        let pid = std::process::id();
        let mut r = Resources::open(pid).unwrap();
        assert_eq!(
            r.tick(true, 0, 1).unwrap(),
            None,
            "the first tick is the CPU baseline"
        );
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(150) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let s = r.tick(true, 0, 2).unwrap().unwrap();
        assert!(s.cpu_percent > 30.0 && s.cpu_percent < 250.0, "{s:?}");
        assert!(
            s.rss_bytes > 1 << 20 && s.threads >= 1 && s.fds >= 3,
            "{s:?}"
        );
        assert_eq!(r.tick(false, 0, 3).unwrap(), None, "idle: nothing kept");
        assert!(
            r.tick(false, 1, 4).unwrap().is_some(),
            "a request came and went"
        );
    }
}
