//! The profile formats an export can be written in, by name.

use crate::chrome::chrome;
use crate::error::RenderError;
use crate::folded::folded;
use crate::pprof::pprof;
use crate::recording::Recording;
use crate::speedscope::speedscope;
use crate::svg::svg;
use crate::view::View;
use timeglass_model::StackCount;

/// A profile format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Brendan Gregg's folded stacks: `outer;...;leaf COUNT` per line.
    Folded,
    /// inferno's standalone flame graph.
    Svg,
    /// speedscope's JSON file format.
    Speedscope,
    /// The Trace Event Format (Perfetto, Chrome's trace viewer).
    Chrome,
    /// pprof's gzipped `profile.proto`.
    Pprof,
}

impl Format {
    pub const ALL: [Format; 5] = [
        Format::Folded,
        Format::Svg,
        Format::Speedscope,
        Format::Chrome,
        Format::Pprof,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Format::Folded => "folded",
            Format::Svg => "svg",
            Format::Speedscope => "speedscope",
            Format::Chrome => "chrome",
            Format::Pprof => "pprof",
        }
    }

    pub fn parse(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The usual file name ending.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Folded => "folded",
            Format::Svg => "svg",
            Format::Speedscope => "speedscope.json",
            Format::Chrome => "trace.json",
            Format::Pprof => "pb.gz",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Folded => "text/plain; charset=utf-8",
            Format::Svg => "image/svg+xml",
            Format::Speedscope | Format::Chrome => "application/json",
            Format::Pprof => "application/octet-stream",
        }
    }

    /// The recording in this format. Folded and SVG merge every request's
    /// stacks, counted in samples as the dashboard's flame graphs count them.
    pub fn render(self, recording: &Recording, view: View) -> Result<Vec<u8>, RenderError> {
        Ok(match self {
            Format::Folded => folded(&samples(recording, view)).into_bytes(),
            Format::Svg => svg(&recording.title(), &samples(recording, view), false)?
                .ok_or(RenderError::NoSamples)?
                .into_bytes(),
            Format::Speedscope => speedscope(recording, view).into_bytes(),
            Format::Chrome => chrome(recording, view).into_bytes(),
            Format::Pprof => pprof(recording, view),
        })
    }
}

/// Every stack of the recording as the view shows it, summed in samples.
pub fn samples(recording: &Recording, view: View) -> Vec<StackCount> {
    let all = recording
        .requests
        .iter()
        .flat_map(|t| view.apply(&t.stacks))
        .chain(view.apply(&recording.outside.stacks))
        .map(|sc| (sc.stack, sc.samples));
    crate::view::merge(all)
}
