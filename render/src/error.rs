/// A renderer that could not produce its output.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot draw the flame graph: {0}")]
    Flame(#[from] std::io::Error),
    #[error("no samples: there is no flame graph to draw")]
    NoSamples,
    #[error("cannot write the table: {0}")]
    Table(String),
}

impl RenderError {
    pub(crate) fn table(e: impl std::fmt::Display) -> RenderError {
        RenderError::Table(e.to_string())
    }
}
