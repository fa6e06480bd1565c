//! How pages show a request's memory: resident memory (RSS) around it.
//! Kept apart from the other renderers so it can move with them.

use timeglass_store::MemoryRow;

use askama::Template;

use crate::html::{bytes, render};
use crate::leak::LeakHint;

/// A signed change in bytes: `+3.1 MiB`, `−812.0 KiB`, `±0 B`.
pub(crate) fn delta(d: i64) -> String {
    match d {
        0 => "±0 B".to_string(),
        d if d > 0 => format!("+{}", bytes(d as u64)),
        d => format!("−{}", bytes(d.unsigned_abs())),
    }
}

/// `start → end (change)` of the process's RSS around a request, for the
/// summary card's memory tile.
pub(crate) fn rss_change(m: &MemoryRow) -> String {
    let at = |b: Option<u64>| b.map_or("—".to_string(), bytes);
    let change = m
        .rss_delta_bytes()
        .map_or(String::new(), |d| format!(" ({})", delta(d)));
    format!(
        "{} → {}{change}",
        at(m.rss_start_bytes),
        at(m.rss_end_bytes)
    )
}

/// The list's tooltip of peak RSS: start, end and change.
pub(crate) fn rss_title(m: &MemoryRow) -> String {
    let at = |b: Option<u64>| b.map_or("—".to_string(), bytes);
    let change = m
        .rss_delta_bytes()
        .map_or(String::new(), |d| format!(" ({})", delta(d)));
    format!(
        "process RSS: {} at start, {} at end{change}, peak {}",
        at(m.rss_start_bytes),
        at(m.rss_end_bytes),
        at(m.rss_peak_bytes)
    )
}

/// The summary card's garbage-collection tile, `(pause, collections)`; `None`
/// when no collection ran on its threads while they ran it.
pub(crate) fn gc_summary(m: &MemoryRow) -> Option<(String, String)> {
    let note = match m.gc_collections {
        0 => return None,
        1 => "1 collection on its threads".to_string(),
        n => format!("{n} collections on its threads"),
    };
    Some((crate::html::ms(m.gc_pause_ms), note))
}

#[derive(Template)]
#[template(path = "parts/leak.html")]
struct LeakTemplate<'a> {
    hint: Option<&'a LeakHint>,
    rise: String,
    z: String,
    /// Where the endpoint allocates most, and how much.
    sites: Vec<(&'a str, String)>,
}

/// The endpoint view's leak hint, or nothing.
pub(crate) fn leak_card(hint: Option<&LeakHint>) -> String {
    render(&LeakTemplate {
        hint,
        rise: hint.map_or(String::new(), |h| delta(h.rise_bytes)),
        z: hint.map_or(String::new(), |h| format!("{:.1}", h.z)),
        sites: hint.map_or(Vec::new(), |h| {
            h.sites
                .iter()
                .map(|s| (s.frame.as_str(), bytes(s.bytes)))
                .collect()
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_carry_their_sign() {
        assert_eq!(delta(3 << 20), "+3.0 MiB");
        assert_eq!(delta(-(812 << 10)), "−812.0 KiB");
        assert_eq!(delta(0), "±0 B");
    }

    #[test]
    fn a_request_without_readings_shows_dashes() {
        let m = MemoryRow {
            rss_start_bytes: Some(80 << 20),
            rss_end_bytes: Some(82 << 20),
            rss_peak_bytes: Some(90 << 20),
            ..MemoryRow::default()
        };
        assert_eq!(rss_change(&m), "80.0 MiB → 82.0 MiB (+2.0 MiB)");
        assert_eq!(rss_change(&MemoryRow::default()), "— → —");
    }
}
