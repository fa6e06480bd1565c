//! inferno's standalone SVG flame graph, as the dashboard offers it for
//! download.

use inferno::flamegraph::color::{MultiPalette, Palette};
use inferno::flamegraph::{self, Direction, Options};
use timeglass_model::StackCount;

use crate::error::RenderError;
use crate::folded::folded;

/// inferno's standalone flame graph (click to zoom, Ctrl-F to search), as
/// an SVG document; `icicle` puts the root at the top. `None` without samples.
pub fn svg(
    title: &str,
    stacks: &[StackCount],
    icicle: bool,
) -> Result<Option<String>, RenderError> {
    let folded = folded(stacks);
    if folded.is_empty() {
        return Ok(None);
    }
    let mut options = Options::default();
    options.title = title.to_string();
    options.count_name = "samples".to_string();
    options.colors = Palette::Multi(MultiPalette::Python);
    // The same function gets the same colour in every graph.
    options.hash = true;
    if icicle {
        options.direction = Direction::Inverted;
    }
    let mut out = Vec::new();
    flamegraph::from_lines(&mut options, folded.lines(), &mut out).map_err(RenderError::Flame)?;
    Ok(Some(String::from_utf8_lossy(&out).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use timeglass_model::Frame;

    #[test]
    fn no_samples_no_svg() {
        assert!(svg("t", &[], false).unwrap().is_none());
        let one = StackCount {
            stack: vec![Frame {
                name: "main".into(),
                filename: "/abs/app.py".into(),
                short: "app.py".into(),
                line: 1,
            }]
            .into(),
            samples: 1,
        };
        let svg = svg("t", &[one], true).unwrap().unwrap();
        assert!(svg.contains("<svg") && svg.contains("main (app.py:1)"));
    }
}
