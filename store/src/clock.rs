//! Monotonic → wall-clock conversion and the one timestamp format we store.
//!
//! Timestamps are formatted with `jiff` rather than by hand: the civil
//! calendar arithmetic is easy to get subtly wrong, and `jiff` is already a
//! workspace dependency. Every stored timestamp is UTC with exactly three
//! fractional digits (`2024-05-01T12:00:00.123Z`), so the fixed-width strings
//! sort in time order and an index on them serves newest-first listings.

use jiff::fmt::temporal::DateTimePrinter;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// One reading of the monotonic and the wall clock taken together by the
/// recorder; maps the marker's monotonic request times to wall-clock time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockMap {
    pub mono_ns: u64,
    /// Nanoseconds since the Unix epoch.
    pub unix_ns: i64,
}

impl ClockMap {
    /// Wall-clock nanoseconds since the epoch for a monotonic reading.
    pub fn unix_ns_at(&self, mono_ns: u64) -> i128 {
        i128::from(self.unix_ns) + i128::from(mono_ns) - i128::from(self.mono_ns)
    }
}

/// RFC 3339, UTC, millisecond precision (truncated toward the past).
pub(crate) fn rfc3339_ms(unix_ns: i128) -> String {
    let ms = unix_ns.div_euclid(1_000_000);
    let ts = i64::try_from(ms)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        // Out of jiff's range (years beyond ±9999) only with a corrupt clock map.
        .unwrap_or(if ms < 0 {
            Timestamp::MIN
        } else {
            Timestamp::MAX
        });
    print(ts)
}

pub(crate) fn now_rfc3339_ms() -> String {
    let now = Timestamp::now();
    rfc3339_ms(now.as_nanosecond())
}

/// Local wall-clock time of a stored timestamp, to the millisecond, for
/// people (the CLI's tables, the dashboard); the text as it is when it is not
/// a timestamp.
pub fn local_time(rfc3339: &str) -> String {
    rfc3339.parse::<Timestamp>().map_or_else(
        |_| rfc3339.to_string(),
        |t| {
            t.to_zoned(jiff::tz::TimeZone::system())
                .strftime("%Y-%m-%d %H:%M:%S%.3f")
                .to_string()
        },
    )
}

fn print(ts: Timestamp) -> String {
    let mut out = String::with_capacity(24);
    DateTimePrinter::new()
        .precision(Some(3))
        .print_timestamp(&ts, &mut out)
        .expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_monotonic_to_wall_clock_in_ms() {
        let clock = ClockMap {
            mono_ns: 5_000_000_000,
            unix_ns: 1_714_564_800_000_000_000, // 2024-05-01T12:00:00Z
        };
        let at = clock.unix_ns_at(5_000_000_000 + 1_234_567_890);
        assert_eq!(rfc3339_ms(at), "2024-05-01T12:00:01.234Z");
        // Before the reading, and truncation toward the past.
        let before = clock.unix_ns_at(5_000_000_000 - 1);
        assert_eq!(rfc3339_ms(before), "2024-05-01T11:59:59.999Z");
    }

    #[test]
    fn whole_seconds_keep_three_digits() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
    }
}
