//! The sampler: reads a Python process's stacks from outside and tags each
//! one with the request its thread was running at that instant.
//!
//! * [`StackSource`] is the seam: [`PySpySource`] reads a live process,
//!   [`ReplaySource`] plays recorded stacks back for tests.
//! * [`RequestSlots`] tells which request a thread runs: the marker's shared
//!   slot table in production, a script in tests.
//! * [`Sampler`] runs the loop: jittered ticks at the configured rate while a
//!   request is in flight, a low idle rate otherwise; each tick reads the
//!   slots, walks the stacks, reads the slots again, and emits [`Sample`]s.
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod cpu;
mod leaf;
pub mod procfs;
mod pyspy;
mod replay;
mod sampler;
mod source;
mod timer;
mod torn;
mod walk;

pub use pyspy::{PySpyOptions, PySpySource, SourceError, SUPPORTED_PYTHONS};
pub use replay::ReplaySource;
pub use sampler::{Activity, RequestSlots, SampleSink, Sampler, SamplerOptions, SamplerStats};
pub use source::{AwaitChain, Collector, StackSource, ThreadStack};
pub use timeglass_model::Sample;
pub use torn::TornDetector;
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub use walk::fuzz_walk;
