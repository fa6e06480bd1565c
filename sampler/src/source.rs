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
    /// What the OS says the thread is doing: on a CPU (running or
    /// runnable, `R`), off it (sleeping or blocked), or `None` when it was
    /// not asked. Unlike `active`, no guess from the leaf frame.
    #[serde(default)]
    pub on_cpu: Option<bool>,
    /// Outermost frame first.
    pub frames: Vec<Frame>,
}

/// A suspended coroutine's await chain, read from the coroutine object
/// without running it: the frames stay put until it resumes.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AwaitChain {
    /// The frames of the coroutines and generators along `cr_await` /
    /// `gi_yieldfrom`, outermost (the coroutine asked for) first.
    pub frames: Vec<Frame>,
    /// The type of the object the innermost one waits on when it is not a
    /// coroutine or generator (`_asyncio.Future`, `_asyncio.Task`,
    /// `_GatheringFuture`), as `tp_name` says.
    pub awaits: Option<String>,
    /// That object is a future that is already done: the chain can resume
    /// as soon as the event loop gets to it.
    pub ready: bool,
    /// The coroutine was running (not suspended) when it was read.
    pub running: bool,
    /// Address of the object it waits on (0 when none): whether that future
    /// is done can be asked again while the chain stays put.
    #[serde(default)]
    pub awaited: u64,
}

/// What the garbage collector was doing, read from outside the process
/// (the interpreter's `gc` state; no callback runs in the app).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Collector {
    /// A collection is running (on the thread that holds the GIL).
    pub collecting: bool,
    /// Collections finished so far, all generations together.
    pub collections: u64,
}

/// Where stacks come from: a live process or a recording.
pub trait StackSource: Send {
    /// The process being read.
    fn pid(&self) -> u32;
    /// One stack per Python thread, right now (or only the GIL holder's,
    /// as the source was configured).
    fn stacks(&mut self) -> Result<Vec<ThreadStack>, SourceError>;
    /// The GIL holder's stack plus those of the native threads `tids` (the
    /// threads running a request), each once, without reading other
    /// threads where the source can avoid it.
    fn stacks_with(&mut self, tids: &[u32]) -> Result<Vec<ThreadStack>, SourceError> {
        let _ = tids;
        self.stacks()
    }
    /// The await chain of the suspended coroutine object at `address`;
    /// `Ok(None)` when this source cannot read await chains.
    fn await_chain(&mut self, address: u64) -> Result<Option<AwaitChain>, SourceError> {
        let _ = address;
        Ok(None)
    }
    /// Whether the future (or its iterator) at `address`, which an await
    /// chain waits on, is done; `Ok(None)` when this source cannot tell.
    fn awaited_done(&mut self, address: u64) -> Result<Option<bool>, SourceError> {
        let _ = address;
        Ok(None)
    }
    /// Where the interpreter's GIL state lives (see
    /// `Walker::gil_region`), to tell a thread waiting for the GIL from one
    /// blocked elsewhere; `None` when this source does not know.
    fn gil_region(&self) -> Option<std::ops::Range<u64>> {
        None
    }
    /// The collector's state right now; `None` when this source cannot
    /// read it (or the read failed: the next tick asks again).
    fn collector(&mut self) -> Option<Collector> {
        None
    }
    /// Whether the process still exists; sampling stops once it does not.
    fn alive(&self) -> bool;
}
