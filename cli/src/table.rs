//! Plain-text tables for the listing commands.

/// Columns padded to their widest cell; `right[i]` right-aligns column `i`
/// (numbers), the others are left-aligned. Each line ends with a newline.
pub(crate) fn render(header: &[&str], right: &[bool], rows: &[Vec<String>]) -> String {
    render_painted(header, right, rows, |_, _, cell| cell)
}

/// [`render`], with `paint(row, column, padded cell)` wrapping each body
/// cell after padding (colours do not count in the width).
pub(crate) fn render_painted(
    header: &[&str],
    right: &[bool],
    rows: &[Vec<String>],
    paint: impl Fn(usize, usize, String) -> String,
) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |row: Option<usize>, cols: &[String]| {
        let last = cols.len().saturating_sub(1);
        let parts: Vec<String> = cols
            .iter()
            .zip(&widths)
            .zip(right)
            .enumerate()
            .map(|(i, ((c, &w), &r))| {
                let padded = match (r, i == last) {
                    (true, _) => format!("{c:>w$}"),
                    // The last column is not padded: lines end without blanks.
                    (false, true) => c.clone(),
                    (false, false) => format!("{c:<w$}"),
                };
                match row {
                    Some(at) => paint(at, i, padded),
                    None => padded,
                }
            })
            .collect();
        format!("{}\n", parts.join("  ").trim_end())
    };
    let mut out = line(
        None,
        &header
            .iter()
            .map(std::string::ToString::to_string)
            .collect::<Vec<_>>(),
    );
    for (i, row) in rows.iter().enumerate() {
        out.push_str(&line(Some(i), row));
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
