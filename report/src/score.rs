//! The score: one line per benchmark, its value against its thresholds.

use serde::Serialize;

use crate::thresholds::{Better, Thresholds, BENCHMARKS};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Warn,
    Fail,
    /// Nothing to judge (no requests, no probe run, no resource samples).
    NotMeasured,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::NotMeasured => "not measured",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Score {
    pub benchmark: &'static str,
    pub value: Option<f64>,
    /// The fail level: a value past it fails.
    pub threshold: f64,
    /// The warn level: a value past it (but not past `threshold`) warns.
    pub warn: f64,
    /// `ms`, `ratio` (0 to 1), `percent` (100 = one core) or `MB`.
    pub unit: &'static str,
    /// `lower` or `higher`: which way is better.
    pub better: &'static str,
    pub status: Status,
    /// What the value is, or why it was not measured.
    pub note: String,
}

/// A measured value, or why there is none.
pub type Measured = Result<f64, String>;

/// The score of every benchmark, in [`BENCHMARKS`] order; `measure` gives
/// each benchmark's value and a note.
pub fn scores(
    thresholds: &Thresholds,
    mut measure: impl FnMut(&str) -> (Measured, String),
) -> Vec<Score> {
    BENCHMARKS
        .iter()
        .map(|&(name, unit, better, _, _)| {
            let levels = thresholds.levels(name);
            let (value, note) = measure(name);
            let (value, status, note) = match value {
                Ok(v) => (Some(v), judge(v, better, levels.warn, levels.fail), note),
                Err(why) => (None, Status::NotMeasured, why),
            };
            Score {
                benchmark: name,
                value,
                threshold: levels.fail,
                warn: levels.warn,
                unit,
                better: match better {
                    Better::Lower => "lower",
                    Better::Higher => "higher",
                },
                status,
                note,
            }
        })
        .collect()
}

fn judge(value: f64, better: Better, warn: f64, fail: f64) -> Status {
    let (passes, fails) = match better {
        Better::Lower => (value <= warn, value > fail),
        Better::Higher => (value >= warn, value < fail),
    };
    match (passes, fails) {
        (true, _) => Status::Pass,
        (false, true) => Status::Fail,
        (false, false) => Status::Warn,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_judged_against_both_levels() {
        assert_eq!(judge(100.0, Better::Lower, 250.0, 500.0), Status::Pass);
        assert_eq!(judge(250.0, Better::Lower, 250.0, 500.0), Status::Pass);
        assert_eq!(judge(500.0, Better::Lower, 250.0, 500.0), Status::Warn);
        assert_eq!(judge(500.1, Better::Lower, 250.0, 500.0), Status::Fail);
        assert_eq!(judge(1.0, Better::Higher, 0.9, 0.5), Status::Pass);
        assert_eq!(judge(0.5, Better::Higher, 0.9, 0.5), Status::Warn);
        assert_eq!(judge(0.4, Better::Higher, 0.9, 0.5), Status::Fail);
        assert_eq!(judge(0.0, Better::Lower, 0.0, 0.05), Status::Pass);
        assert_eq!(judge(0.01, Better::Lower, 0.0, 0.05), Status::Warn);
    }

    #[test]
    fn unmeasured_benchmarks_say_why() {
        let s = scores(&Thresholds::default(), |name| match name {
            "coverage" => (
                Err("not measured: run `timeglass probe`".into()),
                String::new(),
            ),
            _ => (Ok(0.0), String::new()),
        });
        assert_eq!(s.len(), BENCHMARKS.len());
        let coverage = s.iter().find(|s| s.benchmark == "coverage").unwrap();
        assert_eq!(
            (coverage.status, coverage.value),
            (Status::NotMeasured, None)
        );
        assert!(coverage.note.contains("timeglass probe"));
        let bad_input = s.iter().find(|s| s.benchmark == "bad_input_4xx").unwrap();
        assert_eq!(bad_input.status, Status::Fail);
    }
}
