//! HTML helpers: escaping, filling the templates of `flamegraph-templates/`,
//! and the formats pages show values in.

use axum::response::Html;

const LAYOUT: &str = include_str!("../../flamegraph-templates/layout.html");
const STYLE: &str = include_str!("../../flamegraph-templates/style.css");

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Replaces each `{{name}}` in `template` with its value, in one pass (a
/// value containing `{{` is left alone). Values must already be HTML.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            break;
        };
        let name = after[..end].trim();
        let value = values.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        out.push_str(value.unwrap_or_else(|| panic!("template value `{name}` missing")));
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// A whole page: `body` (HTML) inside the layout.
pub fn page(title: &str, body: &str) -> Html<String> {
    Html(fill(
        LAYOUT,
        &[("title", &escape(title)), ("style", STYLE), ("body", body)],
    ))
}

/// Percent-encodes a query-string value.
pub fn query_value(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Local wall-clock time of a stored RFC 3339 timestamp, to the millisecond.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_replaces_once_and_escape_escapes() {
        let out = fill("<p>{{a}} {{ b }}</p>", &[("a", "{{b}}"), ("b", "x")]);
        assert_eq!(out, "<p>{{b}} x</p>");
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(query_value("/a b&c"), "%2Fa%20b%26c");
    }
}
