//! How pages show a request's memory: resident memory (RSS) around it.
//! Kept apart from the other renderers so it can move with them.

use timeglass_store::{MemoryRow, RequestRow};

use crate::html::{bytes, escape};
use crate::leak::LeakHint;
use crate::stats::Spread;

/// A signed change in bytes: `+3.1 MiB`, `−812.0 KiB`, `±0 B`.
pub(crate) fn delta(d: i64) -> String {
    match d {
        0 => "±0 B".to_string(),
        d if d > 0 => format!("+{}", bytes(d as u64)),
        d => format!("−{}", bytes(d.unsigned_abs())),
    }
}

/// The list's cell: peak RSS, with start, end and change in its tooltip.
pub(crate) fn list_cell(r: &RequestRow) -> String {
    let m = &r.memory;
    match m.rss_peak_bytes {
        Some(peak) => format!(
            "<span title=\"{}\">{}</span>",
            escape(&rss_title(m)),
            bytes(peak)
        ),
        None => "<span class=\"muted\" title=\"not measured\">—</span>".to_string(),
    }
}

/// The list's cell: bytes allocated (sampled); a dash when not sampled.
pub(crate) fn alloc_cell(r: &RequestRow) -> String {
    match r.memory.alloc_bytes {
        Some(b) => format!(
            "<span title=\"bytes allocated, estimated from allocations sampled every ~512 KiB\">{}</span>",
            bytes(b)
        ),
        None => "<span class=\"muted\" title=\"not sampled: record with timeglass run --memory\">—</span>"
            .to_string(),
    }
}

/// The summary card's allocation tile, `(value, note)`; `None` when its
/// process did not sample allocations.
pub(crate) fn alloc_summary(m: &MemoryRow) -> Option<(String, String)> {
    let b = m.alloc_bytes?;
    Some((
        bytes(b),
        "<span title=\"Python allocations (PyMem and PyObject) its threads made while running it, \
         estimated from allocations sampled every ~512 KiB\">sampled · see the Memory flame graph</span>"
            .to_string(),
    ))
}

fn rss_title(m: &MemoryRow) -> String {
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

/// The summary card's memory tile, `(value, note)`: peak RSS, then start
/// → end; `None` when nothing was read.
pub(crate) fn summary(m: &MemoryRow) -> Option<(String, String)> {
    let peak = m.rss_peak_bytes?;
    let at = |b: Option<u64>| b.map_or("—".to_string(), bytes);
    let change = m
        .rss_delta_bytes()
        .map_or(String::new(), |d| format!(" ({})", delta(d)));
    let note = format!(
        "<span title=\"The app process's resident memory (RSS) at the start and end of this \
         request; the value is the highest reading while it ran. Under concurrency RSS moves \
         for every request in flight at once.\">RSS {} → {}{change}</span>",
        at(m.rss_start_bytes),
        at(m.rss_end_bytes)
    );
    Some((bytes(peak), note))
}

/// The summary card's garbage-collection tile, `(value, note)`; `None`
/// when no collection ran on its threads while they ran it.
pub(crate) fn gc_summary(m: &MemoryRow) -> Option<(String, String)> {
    let note = match m.gc_collections {
        0 => return None,
        1 => "1 collection on its threads".to_string(),
        n => format!("{n} collections on its threads"),
    };
    Some((crate::html::ms(m.gc_pause_ms), note))
}

/// The endpoint tile's note under an average (`what` says of what): its p95.
pub(crate) fn spread_note(spread: Option<&Spread>, what: &str) -> String {
    match spread {
        Some(s) => format!(
            "<div class=\"note\" title=\"{what}, over {} requests\">average · p95 {}</div>",
            s.requests,
            bytes(s.p95)
        ),
        None => "<div class=\"note\">not recorded</div>".to_string(),
    }
}

/// The endpoint view's leak hint, or nothing.
pub(crate) fn leak_card(hint: Option<&LeakHint>) -> String {
    let Some(h) = hint else {
        return String::new();
    };
    let sites = match h.sites.is_empty() {
        true => "<p class=\"muted\">Record with <code>timeglass run --memory</code> to see where it allocates.</p>".to_string(),
        false => {
            let items: String = h
                .sites
                .iter()
                .map(|s| {
                    format!(
                        "<li><code>{}</code> <span class=\"muted\">{}</span></li>",
                        escape(&s.frame),
                        bytes(s.bytes)
                    )
                })
                .collect();
            format!("<p>Where this endpoint allocates most:</p><ol class=\"leak-sites\">{items}</ol>")
        }
    };
    format!(
        "<section class=\"card leak\" id=\"leak\"><h2><span class=\"badge leak-badge\">leak?</span> \
         Memory keeps climbing</h2><p>The process's resident memory at the end of this \
         endpoint's requests rose {} over its last {} requests (trend test z = {:.1}). RSS is \
         the whole process's: another endpoint leaking meanwhile climbs here too.</p>{sites}</section>",
        delta(h.rise_bytes),
        h.requests,
        h.z
    )
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
    fn a_request_without_readings_shows_a_dash() {
        let m = MemoryRow::default();
        assert_eq!(summary(&m), None);
        let m = MemoryRow {
            rss_start_bytes: Some(80 << 20),
            rss_end_bytes: Some(82 << 20),
            rss_peak_bytes: Some(90 << 20),
            ..MemoryRow::default()
        };
        let (value, note) = summary(&m).unwrap();
        assert_eq!(value, "90.0 MiB");
        assert!(
            note.ends_with(">RSS 80.0 MiB → 82.0 MiB (+2.0 MiB)</span>"),
            "{note}"
        );
    }
}
