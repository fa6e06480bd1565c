//! HTML helpers: rendering the templates of `server/templates/`,
//! and the formats pages show values in.

use askama::Template;
use axum::response::Html;

#[derive(Template)]
#[template(path = "layout.html")]
struct LayoutTemplate<'a> {
    title: &'a str,
    /// The menu's current section.
    nav: &'a str,
    body: &'a str,
}

/// The `<option>`s of a `<select>`, `(value, label)`; the one whose value is
/// `current` is selected.
#[derive(Template)]
#[template(path = "parts/options.html")]
pub(crate) struct Options<'a> {
    pub options: &'a [(String, String)],
    pub current: &'a str,
}

/// What stands in for a part of a page that could not be rendered.
#[derive(Template)]
#[template(path = "parts/broken.html")]
struct BrokenTemplate {
    error: String,
}

/// A page or section from its template (`server/templates/`,
/// `flamegraph-templates/`): askama checks at compile time that the template
/// and its struct name the same values, and escapes every value the template
/// does not mark `|safe` (those are HTML the server built). Rendering into a
/// `String` cannot fail but through a value's `Display`, which ours never do;
/// should one, the page says so instead of panicking.
pub(crate) fn render<T: Template>(template: &T) -> String {
    template.render().unwrap_or_else(|e| {
        let error = e.to_string();
        BrokenTemplate { error }.render().unwrap_or_default()
    })
}

/// A whole page: `body` (HTML) inside the layout; `nav` is the current
/// section (`requests`, `routes`) for the menu.
pub(crate) fn page(title: &str, nav: &str, body: &str) -> Html<String> {
    Html(render(&LayoutTemplate { title, nav, body }))
}

/// Percent-encodes a path, keeping its `/` separators.
pub(crate) fn path_value(path: &str) -> String {
    path.split('/')
        .map(query_value)
        .collect::<Vec<_>>()
        .join("/")
}

/// The endpoint view of `method route`.
pub(crate) fn route_href(method: &str, route: &str) -> String {
    format!(
        "/routes/{}/{}",
        query_value(method),
        path_value(route.trim_start_matches('/'))
    )
}

/// Milliseconds the way people read them: `0.42 ms`, `12.3 ms`, `456 ms`, `1.23 s`.
pub(crate) fn ms(value: f64) -> String {
    match value {
        v if v >= 1000.0 => format!("{:.2} s", v / 1000.0),
        v if v >= 100.0 => format!("{v:.0} ms"),
        v if v >= 10.0 => format!("{v:.1} ms"),
        v => format!("{v:.2} ms"),
    }
}

/// A number with thousands separators: `12,345`.
pub(crate) fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes as `512 B`, `16.0 KiB`, `2.5 MiB`.
pub(crate) fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// JSON for a `<script type="application/json">` element: `<` is escaped so
/// no value can close the element.
pub(crate) fn json_script(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value)
        .expect("dashboard data serializes")
        .replace('<', "\\u003c")
}

/// Percent-encodes a query-string value.
pub(crate) fn query_value(value: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_escapes_text_and_keeps_html() {
        let Html(out) = page("<b>&", "routes", "<p>{{x}}</p>");
        assert!(
            out.contains("<title>&#60;b&#62;&#38; · TimeGlass</title>"),
            "{out}"
        );
        assert!(out.contains("<main>\n<p>{{x}}</p>\n</main>"), "{out}");
        assert!(
            out.contains("<a href=\"/routes\" aria-current=\"page\">"),
            "{out}"
        );
        assert_eq!(query_value("/a b&c"), "%2Fa%20b%26c");
        assert_eq!(
            route_href("GET", "/items/{id}"),
            "/routes/GET/items/%7Bid%7D"
        );
        assert_eq!(
            [0.421, 12.34, 456.7, 1234.0].map(ms),
            ["0.42 ms", "12.3 ms", "457 ms", "1.23 s"]
        );
        assert_eq!(
            [0, 999, 1000, 1234567].map(count),
            ["0", "999", "1,000", "1,234,567"]
        );
        assert_eq!(json_script(&"</script>"), "\"\\u003c/script>\"");
    }
}
