/// A renderer that could not produce its output.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot draw the flame graph: {0}")]
    Flame(#[from] std::io::Error),
    #[error("no samples: there is no flame graph to draw")]
    NoSamples,
}
