//! The gate: a comparison judged against thresholds. An endpoint fails
//! when its latency or CPU time is slower beyond `max_slower` (by the
//! test of `stats.rs`), when it runs more than `max_queries_added` more
//! statements per request, or, with `fail_on_n_plus_one`, when it flags
//! more N+1s. New and gone endpoints never fail. An endpoint whose
//! latency changed by no more than a busier machine explains is unsure: it
//! fails only with `fail_on_unsure`.
//!
//! Thresholds come from `[tool.timeglass.check]` of `pyproject.toml` or
//! `[check]` of `timeglass.toml`, found as `timeglass report` finds its
//! thresholds; flags override them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::compare::{Comparison, EndpointComparison, Verdict};
use crate::stats::TestOptions;
use crate::CompareError;

/// The documented defaults.
pub mod defaults {
    /// 10% slower fails.
    pub const MAX_SLOWER: f64 = 0.10;
    /// One more statement per request fails.
    pub const MAX_QUERIES_ADDED: f64 = 0.0;
    pub const FAIL_ON_N_PLUS_ONE: bool = false;
    pub const FAIL_ON_UNSURE: bool = false;
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Gate {
    /// A ratio: 0.10 is 10%.
    pub max_slower: f64,
    pub max_queries_added: f64,
    pub fail_on_n_plus_one: bool,
    pub fail_on_unsure: bool,
    /// The file thresholds were read from; `None`: defaults and flags.
    pub source: Option<PathBuf>,
}

impl Default for Gate {
    fn default() -> Gate {
        Gate {
            max_slower: defaults::MAX_SLOWER,
            max_queries_added: defaults::MAX_QUERIES_ADDED,
            fail_on_n_plus_one: defaults::FAIL_ON_N_PLUS_ONE,
            fail_on_unsure: defaults::FAIL_ON_UNSURE,
            source: None,
        }
    }
}

/// `[tool.timeglass.check]`, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct CheckSection {
    /// `"10%"` or `0.1`.
    max_slower: Option<Ratio>,
    max_queries_added: Option<f64>,
    /// `["n-plus-one", "unsure"]`.
    #[serde(default)]
    fail_on: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Ratio {
    Number(f64),
    Text(String),
}

impl Gate {
    /// The gate of the first of `dirs` with a TimeGlass configuration.
    pub fn find(dirs: &[&Path]) -> Result<Gate, CompareError> {
        let Some((path, section)) = timeglass_report::thresholds::find_section(dirs, "check")?
        else {
            return Ok(Gate::default());
        };
        let bad = |message: String| CompareError::Config {
            path: path.clone(),
            message,
        };
        let section: CheckSection = section
            .try_into()
            .map_err(|e: toml::de::Error| bad(format!("[check]: {}", e.message())))?;
        let mut gate = Gate::default();
        if let Some(r) = section.max_slower {
            gate.max_slower = match r {
                Ratio::Number(n) => n,
                Ratio::Text(t) => parse_ratio(&t).map_err(bad)?,
            };
        }
        if let Some(q) = section.max_queries_added {
            gate.max_queries_added = q;
        }
        for f in section.fail_on {
            match f.as_str() {
                "n-plus-one" => gate.fail_on_n_plus_one = true,
                "unsure" => gate.fail_on_unsure = true,
                other => {
                    return Err(bad(format!(
                        "fail-on: unknown `{other}` (known: n-plus-one, unsure)"
                    )))
                }
            }
        }
        gate.source = Some(path);
        Ok(gate)
    }

    /// The test options that decide "slower beyond `max_slower`".
    pub fn test_options(&self) -> TestOptions {
        TestOptions {
            min_ratio: self.max_slower,
            ..TestOptions::default()
        }
    }

    /// Each endpoint's outcome.
    pub fn judge(&self, c: &Comparison) -> Vec<Outcome> {
        c.endpoints.iter().map(|e| self.outcome(e)).collect()
    }

    fn outcome(&self, e: &EndpointComparison) -> Outcome {
        let mut failures = Vec::new();
        if matches!(e.verdict, Verdict::New | Verdict::Gone) {
            return Outcome {
                endpoint: e.name(),
                failed: false,
                failures,
                note: format!("{} endpoint: not compared", e.verdict.as_str()),
            };
        }
        if e.timing_slower() {
            failures.extend(e.latency_reasons().cloned());
        }
        if e.queries_added > self.max_queries_added + 1e-9 {
            failures.push(format!(
                "{:+.1} queries per request (at most {} allowed)",
                e.queries_added, self.max_queries_added
            ));
        }
        if self.fail_on_n_plus_one && e.n_plus_one_added {
            failures.push("more requests flagged as likely N+1s".into());
        }
        let note = if e.verdict == Verdict::Unsure {
            if self.fail_on_unsure {
                failures.extend(e.latency_reasons().cloned());
            }
            "unsure: latency moved no more than the busier machine explains".to_string()
        } else {
            e.verdict.as_str().to_string()
        };
        Outcome {
            endpoint: e.name(),
            failed: !failures.is_empty(),
            failures,
            note,
        }
    }
}

/// One endpoint judged by the gate.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outcome {
    pub endpoint: String,
    pub failed: bool,
    /// What regressed, and where.
    pub failures: Vec<String>,
    /// The verdict, or why it was not compared.
    pub note: String,
}

/// A count per request as people say it: `3`, `1.5`.
pub fn round(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r.fract() == 0.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

/// `10%` or `0.1`.
pub fn parse_ratio(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let (number, scale) = match t.strip_suffix('%') {
        Some(n) => (n.trim(), 100.0),
        None => (t, 1.0),
    };
    number
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v / scale)
        .ok_or_else(|| format!("`{text}` is not a share: give `10%` or `0.1`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_parse_as_percent_or_fraction() {
        assert_eq!(parse_ratio("10%"), Ok(0.1));
        assert_eq!(parse_ratio("0.25"), Ok(0.25));
        assert!(parse_ratio("fast").is_err());
        assert!(parse_ratio("-5%").is_err());
    }

    #[test]
    fn the_check_table_of_pyproject_sets_the_gate() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("pyproject.toml"),
            "[tool.timeglass.check]\nmax-slower = \"25%\"\nmax-queries-added = 2\nfail-on = [\"n-plus-one\"]\n",
        )
        .unwrap();
        let g = Gate::find(&[dir.path()]).unwrap();
        assert_eq!(
            (g.max_slower, g.max_queries_added, g.fail_on_n_plus_one),
            (0.25, 2.0, true)
        );
        assert_eq!(g.source.unwrap(), dir.path().join("pyproject.toml"));
        std::fs::write(
            dir.path().join("pyproject.toml"),
            "[tool.timeglass.check]\nmax-slowr = 1\n",
        )
        .unwrap();
        let err = Gate::find(&[dir.path()]).unwrap_err().to_string();
        assert!(
            err.contains("pyproject.toml") && err.contains("max-slowr"),
            "{err}"
        );
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(Gate::find(&[empty.path()]).unwrap(), Gate::default());
        std::fs::write(
            dir.path().join("pyproject.toml"),
            "[tool.timeglass.check]\nfail-on = [\"unsure\"]\n",
        )
        .unwrap();
        let g = Gate::find(&[dir.path()]).unwrap();
        assert!(g.fail_on_unsure && !g.fail_on_n_plus_one);
    }
}
