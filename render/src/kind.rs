//! What kind of code a frame is: the app's, a library's, or a frame
//! TimeGlass made up. Folding ("my code only"), colours and the graph's
//! opening focus all ask here.

use timeglass_model::Frame;

/// The root of samples that ran only library code, under "my code only".
pub const LIBRARY_ONLY: &str = "(library code)";

/// What kind of code a frame is, for folding and for colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    App,
    Library,
    Synthetic,
}

impl Kind {
    /// The code the dashboard's JSON carries: 0 app, 1 library, 2 synthetic.
    pub fn code(self) -> u8 {
        match self {
            Kind::App => 0,
            Kind::Library => 1,
            Kind::Synthetic => 2,
        }
    }
}

/// The kind of a frame. Files are classed by
/// [`timeglass_wire::is_library_file`], the rule the marker also uses for
/// the callers of SQL statements and HTTP calls.
pub fn kind(frame: &Frame) -> Kind {
    if frame.is_synthetic() {
        return Kind::Synthetic;
    }
    if &*frame.name == LIBRARY_ONLY && frame.filename.is_empty() {
        return Kind::Library;
    }
    match timeglass_wire::is_library_file(&frame.filename, &frame.short) {
        true => Kind::Library,
        false => Kind::App,
    }
}

/// The file a frame is shown with: its short name, or the whole one when
/// it has none.
pub fn file(frame: &Frame) -> &str {
    if frame.short.is_empty() {
        &frame.filename
    } else {
        &frame.short
    }
}
