//! Brendan Gregg's folded format, as inferno, speedscope and flamegraph.pl
//! read it.

use timeglass_model::StackCount;

/// One line per distinct stack, `outer;...;leaf COUNT`. Lines are sorted as
/// text, the format's own order (identical prefixes sit together, which is
/// what `flamegraph.pl` and inferno expect), so output is stable.
pub fn folded(stacks: &[StackCount]) -> String {
    let mut lines: Vec<String> = stacks
        .iter()
        .filter(|s| s.samples > 0 && !s.stack.is_empty())
        .map(|s| {
            let labels: Vec<String> = s
                .stack
                .iter()
                .map(|f| f.label().replace(';', ":"))
                .collect();
            format!("{} {}", labels.join(";"), s.samples)
        })
        .collect();
    lines.sort();
    let mut out = lines.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use timeglass_model::{Frame, Stack};

    fn frame(name: &str, short: &str, line: u32) -> Frame {
        Frame {
            name: name.into(),
            filename: format!("/abs/{short}").into(),
            short: short.into(),
            line,
        }
    }

    #[test]
    fn folded_lines_are_sorted_labelled_and_counted() {
        let a: Stack = vec![
            frame("<module>", "main.py", 1),
            frame("handler", "app.py", 12),
        ]
        .into();
        let b: Stack = vec![frame("<module>", "main.py", 1), frame("a;b", "x.py", 0)].into();
        let text = folded(&[
            StackCount {
                stack: a,
                samples: 3,
            },
            StackCount {
                stack: b,
                samples: 1,
            },
        ]);
        assert_eq!(
            text,
            "<module> (main.py:1);a:b (x.py) 1\n<module> (main.py:1);handler (app.py:12) 3\n"
        );
        assert_eq!(folded(&[]), "");
    }
}
