//! `--since`/`--until` and the API's `since`/`until`: an RFC 3339 time or a
//! time before now (`90s`, `10m`, `2h`, `1d`).

use jiff::Timestamp;

use crate::ReportError;

/// Nanoseconds since the Unix epoch of `text`, relative times counted back
/// from `now_unix_ns`.
pub fn parse_time(text: &str, now_unix_ns: i128) -> Result<i128, ReportError> {
    let text = text.trim();
    if let Some(ago) = relative_ns(text) {
        return Ok(now_unix_ns - ago);
    }
    text.parse::<Timestamp>()
        .map(jiff::Timestamp::as_nanosecond)
        .map_err(|_| ReportError::BadTime(text.to_string()))
}

/// `10m` → 600 s in nanoseconds; `None` for anything else.
fn relative_ns(text: &str) -> Option<i128> {
    let unit = text.chars().last()?;
    let seconds: i128 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return None,
    };
    let number = &text[..text.len() - 1];
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i128 = number.parse().ok().filter(|n| *n <= 10_000_000)?;
    Some(n * seconds * 1_000_000_000)
}

pub fn now_unix_ns() -> i128 {
    Timestamp::now().as_nanosecond()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i128 = 1_790_000_000_000_000_000;

    #[test]
    fn relative_times_count_back_from_now() {
        let s = 1_000_000_000;
        assert_eq!(parse_time("90s", NOW).unwrap(), NOW - 90 * s);
        assert_eq!(parse_time("10m", NOW).unwrap(), NOW - 600 * s);
        assert_eq!(parse_time("2h", NOW).unwrap(), NOW - 7_200 * s);
        assert_eq!(parse_time(" 1d ", NOW).unwrap(), NOW - 86_400 * s);
    }

    #[test]
    fn rfc_3339_times_are_absolute() {
        let t = parse_time("2026-09-21T14:13:20.5Z", NOW).unwrap();
        assert_eq!(t, 1_790_000_000_500_000_000);
        let offset = parse_time("2026-09-21T16:13:20.5+02:00", NOW).unwrap();
        assert_eq!(t, offset);
    }

    #[test]
    fn anything_else_is_a_bad_time() {
        for bad in [
            "",
            "m",
            "10",
            "-5m",
            "10x",
            "1.5h",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "99999999999d",
        ] {
            let err = parse_time(bad, NOW).unwrap_err();
            assert!(matches!(err, ReportError::BadTime(_)), "{bad}: {err}");
        }
    }
}
