//! The frame walker over random "remote memory": whatever a process's
//! memory holds, a walk ends in stacks or an error, never a panic or a hang,
//! and never asks for an unbounded read.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    timeglass_sampler::fuzz_walk(data);
});
