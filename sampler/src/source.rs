use timeglass_model::Frame;

use crate::SourceError;

/// The stack of one thread at one instant.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ThreadStack {
    /// Native (kernel) thread id, when the source knows it.
    pub tid: Option<u32>,
    /// `pthread_self()` of the thread (py-spy's `thread_id`).
    pub pthread_id: u64,
    /// Running on a CPU (not blocked in a wait or a select).
    pub active: bool,
    /// Holds the GIL.
    pub owns_gil: bool,
    /// Outermost frame first.
    pub frames: Vec<Frame>,
}

/// Where stacks come from: a live process or a recording.
pub trait StackSource: Send {
    /// The process being read.
    fn pid(&self) -> u32;
    /// One stack per Python thread, right now.
    fn stacks(&mut self) -> Result<Vec<ThreadStack>, SourceError>;
    /// Whether the process still exists; sampling stops once it does not.
    fn alive(&self) -> bool;
}
