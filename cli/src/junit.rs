//! JUnit XML for `timeglass check --format junit`: one test suite, one test
//! case per endpoint, a `<failure>` saying what regressed. Written by hand:
//! the format is a handful of elements, and every text goes through
//! [`escape`] (no JUnit crate is available from this project's registry).

use timeglass_compare::{Comparison, Outcome};

use crate::compare::explanations;

pub(crate) fn render(c: &Comparison, outcomes: &[Outcome]) -> String {
    let failures = outcomes.iter().filter(|o| o.failed).count();
    let suite = format!(
        "timeglass check: session {} against baseline session {}",
        c.b_session, c.a_session
    );
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"timeglass\" tests=\"{}\" failures=\"{failures}\">\n",
        outcomes.len()
    ));
    out.push_str(&format!(
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\">\n",
        escape(&suite),
        outcomes.len()
    ));
    for (o, e) in outcomes.iter().zip(&c.endpoints) {
        out.push_str(&format!(
            "    <testcase classname=\"timeglass.endpoints\" name=\"{}\">\n",
            escape(&o.endpoint)
        ));
        if o.failed {
            let mut body = o.failures.clone();
            body.extend(
                explanations(e)
                    .into_iter()
                    .filter(|l| !o.failures.contains(l)),
            );
            out.push_str(&format!(
                "      <failure message=\"{}\" type=\"regression\">{}</failure>\n",
                escape(&o.failures.join("; ")),
                escape(&body.join("\n"))
            ));
        } else {
            out.push_str(&format!(
                "      <system-out>{}</system-out>\n",
                escape(&o.note)
            ));
        }
        out.push_str("    </testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// Text for an XML attribute or element: the five special characters as
/// entities, and characters XML 1.0 cannot carry at all dropped.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\t' | '\r' => out.push(ch),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_and_control_characters_are_escaped_or_dropped() {
        assert_eq!(
            escape("a<b & \"c\" 'd'>\u{1}\ne"),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;&#10;e"
        );
    }
}
