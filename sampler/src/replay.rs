//! A recorded process, played back: the stacks a live process gave, one walk
//! per line of a JSON-lines fixture. Lets the join and the store be tested
//! without a live process.

use std::collections::VecDeque;
use std::path::Path;

use crate::{SourceError, StackSource, ThreadStack};

pub struct ReplaySource {
    pid: u32,
    walks: VecDeque<Vec<ThreadStack>>,
}

impl ReplaySource {
    pub fn new(pid: u32, walks: Vec<Vec<ThreadStack>>) -> Self {
        ReplaySource {
            pid,
            walks: walks.into(),
        }
    }

    /// Loads a fixture: one JSON array of [`ThreadStack`] per line.
    pub fn from_jsonl(pid: u32, path: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        let walks = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<Vec<Vec<ThreadStack>>, _>>()?;
        Ok(ReplaySource::new(pid, walks))
    }
}

impl StackSource for ReplaySource {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn stacks(&mut self) -> Result<Vec<ThreadStack>, SourceError> {
        self.walks
            .pop_front()
            .ok_or(SourceError::NoSuchProcess { pid: self.pid })
    }

    fn alive(&self) -> bool {
        !self.walks.is_empty()
    }
}
