//! The JSON of the two timeline formats (speedscope's evented profile, the
//! Chrome trace), written by hand where a request makes hundreds of
//! thousands of events: serde's derived writer escaped every key and
//! formatted every time as a float, which was most of those exports' cost
//! (callgrind). The output is byte for byte what serde_json wrote: texts
//! are escaped by serde_json (each distinct one once), and times are
//! written as serde_json writes the same `f64`.

use serde::Serialize;

/// `value` as serde_json writes it.
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("a value of the export serializes")
}

/// Below this many nanoseconds, `ns / 10^places` is a float whose shortest
/// form (zmij's, which serde_json writes) is its exact decimal: the float's
/// spacing there is finer than `10^-places`, so no shorter decimal rounds
/// to it (2^52 ns is 52 days).
const EXACT_NS: u64 = 1 << 52;

/// Writes `ns / 10^places` (a time in microseconds or milliseconds) as
/// serde_json writes the `f64` `ns as f64 / 10^places`: `1.5`, `12.0`,
/// `0.001`, with an exponent below `1e-5` (`1e-6`).
pub(crate) fn decimal(out: &mut String, ns: u64, places: u32) {
    let scale = 10u64.pow(places);
    // Values under 1e-5 are written with an exponent: left to zmij.
    let tiny = ns != 0 && ns.saturating_mul(100_000) < scale;
    if ns >= EXACT_NS || tiny {
        let value = ns as f64 / scale as f64;
        out.push_str(zmij::Buffer::new().format_finite(value));
        return;
    }
    let (whole, mut fraction) = (ns / scale, ns % scale);
    out.push_str(itoa::Buffer::new().format(whole));
    out.push('.');
    if fraction == 0 {
        out.push('0');
        return;
    }
    let mut digits = places as usize;
    while fraction % 10 == 0 {
        fraction /= 10;
        digits -= 1;
    }
    let mut buffer = itoa::Buffer::new();
    let text = buffer.format(fraction);
    for _ in text.len()..digits {
        out.push('0');
    }
    out.push_str(text);
}

/// Writes an integer.
pub(crate) fn integer(out: &mut String, v: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(v));
}

/// A JSON array written one element at a time.
pub(crate) struct List<'a> {
    out: &'a mut String,
    empty: bool,
}

impl<'a> List<'a> {
    /// Opens the array (`[`) at the end of `out`.
    pub(crate) fn open(out: &'a mut String) -> List<'a> {
        out.push('[');
        List { out, empty: true }
    }

    /// The buffer, after a comma if an element came before.
    pub(crate) fn next(&mut self) -> &mut String {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        self.out
    }

    pub(crate) fn close(self) {
        self.out.push(']');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(ns: u64, places: u32) -> String {
        let mut out = String::new();
        decimal(&mut out, ns, places);
        out
    }

    #[test]
    fn times_are_written_as_serde_json_writes_the_float() {
        let mut values: Vec<u64> = (0..20_000).collect();
        // A pseudo-random walk over every magnitude up to past the exact range.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for shift in 0..60 {
            for _ in 0..200 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                values.push(x >> (63 - shift));
            }
        }
        for edge in [
            EXACT_NS - 1,
            EXACT_NS,
            EXACT_NS + 1,
            9,
            10,
            99,
            100,
            999,
            1_000,
        ] {
            values.push(edge);
        }
        values.push(u64::MAX);
        for places in [3, 6] {
            for &ns in &values {
                let want = to_json(&(ns as f64 / 10f64.powi(places as i32)));
                assert_eq!(written(ns, places), want, "{ns} ns / 10^{places}");
            }
        }
    }

    #[test]
    fn a_list_puts_commas_between_its_elements() {
        let mut out = String::from("x");
        let mut list = List::open(&mut out);
        for i in 0..3 {
            integer(list.next(), i);
        }
        list.close();
        assert_eq!(out, "x[0,1,2]");
        let mut out = String::new();
        List::open(&mut out).close();
        assert_eq!(out, "[]");
    }
}
