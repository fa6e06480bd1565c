//! Detecting torn stacks.
//!
//! Reads are not atomic: a walk that races with the interpreter can come back
//! cut short (it reached a frame that was just freed) or with the frames of
//! two tasks mixed. A whole stack always starts at its thread's entry point:
//! `<module>` for the main thread, `threading.py`'s `_bootstrap` for threads
//! it started. A stack whose outermost frame is neither, and is not the root
//! this thread has shown most of the time, is flagged torn.

use std::collections::HashMap;

use timeglass_model::{Frame, Text};

/// Samples a thread must have before its own most common root is trusted.
const LEARN_AFTER: u32 = 20;

#[derive(Default)]
pub struct TornDetector {
    /// Per thread: outermost (name, filename) seen, with counts.
    roots: HashMap<u64, HashMap<(Text, Text), u32>>,
}

fn is_standard_root(frame: &Frame) -> bool {
    &*frame.name == "<module>"
        || (&*frame.name == "_bootstrap" && frame.filename.ends_with("threading.py"))
}

impl TornDetector {
    /// Whether the stack of `thread` looks torn.
    pub fn is_torn(&mut self, thread: u64, frames: &[Frame]) -> bool {
        let Some(root) = frames.first() else {
            return true;
        };
        let counts = self.roots.entry(thread).or_default();
        let key = (root.name.clone(), root.filename.clone());
        *counts.entry(key.clone()).or_insert(0) += 1;
        if is_standard_root(root) {
            return false;
        }
        // A thread started by something other than `threading` (a C
        // extension, `_thread.start_new_thread`) has its own stable root.
        let total: u32 = counts.values().sum();
        if total < LEARN_AFTER {
            // Not enough evidence yet: trust a root only if it is the one
            // this thread has shown every time so far.
            return counts.len() > 1;
        }
        let best = counts.iter().max_by_key(|(_, n)| **n).map(|(k, _)| k);
        best != Some(&key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, file: &str) -> Frame {
        Frame {
            name: name.into(),
            filename: file.into(),
            short: "".into(),
            line: 1,
        }
    }

    #[test]
    fn standard_roots_are_whole() {
        let mut d = TornDetector::default();
        assert!(!d.is_torn(1, &[f("<module>", "uvicorn"), f("run", "server.py")]));
        assert!(!d.is_torn(2, &[f("_bootstrap", "/usr/lib/python3.11/threading.py")]));
    }

    #[test]
    fn empty_or_cut_short_stacks_are_torn() {
        let mut d = TornDetector::default();
        assert!(d.is_torn(1, &[]));
        d.is_torn(1, &[f("<module>", "main.py")]);
        // A main-thread stack that starts in the middle of the app.
        for _ in 0..30 {
            assert!(!d.is_torn(1, &[f("<module>", "main.py"), f("handler", "app.py")]));
        }
        assert!(
            !d.is_torn(7, &[f("worker", "ext.py")]),
            "a new thread's first root is trusted"
        );
        assert!(
            d.is_torn(7, &[f("handler", "app.py")]),
            "a different root on the same thread is not"
        );
    }

    #[test]
    fn a_thread_with_its_own_root_is_learned() {
        let mut d = TornDetector::default();
        for _ in 0..LEARN_AFTER {
            assert!(!d.is_torn(9, &[f("loop", "native_ext.py")]));
        }
        assert!(d.is_torn(9, &[f("inner", "native_ext.py")]));
        assert!(!d.is_torn(9, &[f("loop", "native_ext.py")]));
    }
}
