//! Plain-text tables for the listing commands.

/// Local wall-clock time of an RFC 3339 timestamp, to the millisecond.
pub fn local_time(rfc3339: &str) -> String {
    rfc3339
        .parse::<jiff::Timestamp>()
        .map(|t| {
            t.to_zoned(jiff::tz::TimeZone::system())
                .strftime("%Y-%m-%d %H:%M:%S%.3f")
                .to_string()
        })
        .unwrap_or_else(|_| rfc3339.to_string())
}

/// Columns padded to their widest cell; `right[i]` right-aligns column `i`
/// (numbers), the others are left-aligned. Each line ends with a newline.
pub fn render(header: &[&str], right: &[bool], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: &[String]| {
        let parts: Vec<String> = cols
            .iter()
            .zip(&widths)
            .zip(right)
            .map(|((c, &w), &r)| {
                if r {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        format!("{}\n", parts.join("  ").trim_end())
    };
    let mut out = line(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let rows = vec![
            vec!["7".to_string(), "GET".to_string()],
            vec!["12".to_string(), "POST".to_string()],
        ];
        assert_eq!(
            render(&["ID", "METHOD"], &[true, false], &rows),
            "ID  METHOD\n 7  GET\n12  POST\n"
        );
    }
}
