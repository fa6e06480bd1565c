//! The score's thresholds: documented defaults, overridden by
//! `[tool.timeglass.thresholds]` in the app's `pyproject.toml` or
//! `[thresholds]` in `timeglass.toml`.
//!
//! Each benchmark has a warn level and a fail level. A plain number sets
//! the fail level (`p99_latency = 800`); a table sets either or both
//! (`p90_latency = { warn = 100, fail = 250 }`). A warn level beyond the
//! fail level is brought back to it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ReportError;

/// Which way a benchmark gets better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

/// The benchmarks of the score, in the order the report lists them:
/// `(name, unit, direction, default warn, default fail)`.
pub const BENCHMARKS: &[(&str, &str, Better, f64, f64)] = &[
    ("p90_latency", "ms", Better::Lower, 250.0, 500.0),
    ("p99_latency", "ms", Better::Lower, 500.0, 1000.0),
    ("error_rate_5xx", "ratio", Better::Lower, 0.001, 0.01),
    ("bad_input_4xx", "ratio", Better::Higher, 1.0, 0.95),
    ("db_time_share", "ratio", Better::Lower, 0.5, 0.8),
    ("n_plus_one", "ratio", Better::Lower, 0.0, 0.05),
    ("loop_blocks", "ratio", Better::Lower, 0.0, 0.01),
    ("peak_cpu", "percent", Better::Lower, 80.0, 100.0),
    ("peak_rss", "MB", Better::Lower, 512.0, 1024.0),
    ("coverage", "ratio", Better::Higher, 0.9, 0.5),
];

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Levels {
    pub warn: f64,
    pub fail: f64,
}

/// Every benchmark's levels, and the file they were read from.
#[derive(Clone, Debug, PartialEq)]
pub struct Thresholds {
    levels: BTreeMap<&'static str, Levels>,
    /// `None`: the defaults, no file had any.
    pub source: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Setting {
    Fail(f64),
    Levels {
        warn: Option<f64>,
        fail: Option<f64>,
    },
}

#[derive(Deserialize, Default)]
struct Section {
    #[serde(default)]
    thresholds: BTreeMap<String, Setting>,
}

#[derive(Deserialize)]
struct Pyproject {
    tool: Option<PyprojectTool>,
}

#[derive(Deserialize)]
struct PyprojectTool {
    timeglass: Option<Section>,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        let levels = BENCHMARKS
            .iter()
            .map(|&(name, _, _, warn, fail)| (name, Levels { warn, fail }))
            .collect();
        Thresholds {
            levels,
            source: None,
        }
    }
}

impl Thresholds {
    pub fn levels(&self, benchmark: &str) -> Levels {
        self.levels[benchmark]
    }

    /// The thresholds of the first of `dirs` that has `timeglass.toml`, or a
    /// `pyproject.toml` with a `[tool.timeglass]` table; the defaults if none.
    pub fn find(dirs: &[&Path]) -> Result<Thresholds, ReportError> {
        for dir in dirs {
            let own = dir.join("timeglass.toml");
            if let Some(text) = read(&own)? {
                let section: Section = parse(&own, &text)?;
                return Thresholds::default().apply(section, own);
            }
            let pyproject = dir.join("pyproject.toml");
            if let Some(text) = read(&pyproject)? {
                let parsed: Pyproject = parse(&pyproject, &text)?;
                if let Some(section) = parsed.tool.and_then(|t| t.timeglass) {
                    return Thresholds::default().apply(section, pyproject);
                }
            }
        }
        Ok(Thresholds::default())
    }

    fn apply(mut self, section: Section, path: PathBuf) -> Result<Thresholds, ReportError> {
        for (name, setting) in section.thresholds {
            let bad = |why: String| ReportError::Config {
                path: path.clone(),
                message: why,
            };
            let Some(&(known, _, better, _, _)) = BENCHMARKS.iter().find(|b| b.0 == name) else {
                let names: Vec<&str> = BENCHMARKS.iter().map(|b| b.0).collect();
                return Err(bad(format!(
                    "unknown threshold `{name}`; known: {}",
                    names.join(", ")
                )));
            };
            let level = self
                .levels
                .get_mut(known)
                .expect("every benchmark has levels");
            let (warn, fail) = match setting {
                Setting::Fail(fail) => (None, Some(fail)),
                Setting::Levels { warn, fail } => (warn, fail),
            };
            for v in [warn, fail].into_iter().flatten() {
                if !v.is_finite() || v < 0.0 {
                    return Err(bad(format!(
                        "`{name}` must be a number of at least 0, not {v}"
                    )));
                }
            }
            if let Some(fail) = fail {
                level.fail = fail;
            }
            if let Some(warn) = warn {
                level.warn = warn;
            }
            // A warn level past the fail level would never be seen.
            level.warn = match better {
                Better::Lower => level.warn.min(level.fail),
                Better::Higher => level.warn.max(level.fail),
            };
        }
        self.source = Some(path);
        Ok(self)
    }
}

/// The table `name` of the TimeGlass configuration of the first of `dirs`
/// that has one (`[name]` of `timeglass.toml`, `[tool.timeglass.name]` of
/// `pyproject.toml`), found as [`Thresholds::find`] finds its file; `None`
/// when that file has no such table, or no directory has a configuration.
pub fn find_section(
    dirs: &[&Path],
    name: &str,
) -> Result<Option<(PathBuf, toml::Value)>, ReportError> {
    for dir in dirs {
        let own = dir.join("timeglass.toml");
        if let Some(text) = read(&own)? {
            let mut table: toml::Table = parse(&own, &text)?;
            return Ok(table.remove(name).map(|v| (own, v)));
        }
        let pyproject = dir.join("pyproject.toml");
        if let Some(text) = read(&pyproject)? {
            let mut table: toml::Table = parse(&pyproject, &text)?;
            let timeglass = table
                .remove("tool")
                .and_then(|mut t| t.as_table_mut().and_then(|t| t.remove("timeglass")));
            if let Some(mut timeglass) = timeglass {
                let section = timeglass.as_table_mut().and_then(|t| t.remove(name));
                return Ok(section.map(|v| (pyproject, v)));
            }
        }
    }
    Ok(None)
}

fn read(path: &Path) -> Result<Option<String>, ReportError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ReportError::Config {
            path: path.to_owned(),
            message: e.to_string(),
        }),
    }
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, ReportError> {
    toml::from_str(text).map_err(|e| ReportError::Config {
        path: path.to_owned(),
        message: e.message().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn defaults_without_a_file() {
        let dir = dir_with(&[("pyproject.toml", "[project]\nname = 'app'\n")]);
        let t = Thresholds::find(&[dir.path()]).unwrap();
        assert_eq!(t, Thresholds::default());
        assert_eq!(
            t.levels("p99_latency"),
            Levels {
                warn: 500.0,
                fail: 1000.0
            }
        );
    }

    #[test]
    fn pyproject_tool_table_overrides_and_says_where() {
        let dir = dir_with(&[(
            "pyproject.toml",
            "[tool.timeglass.thresholds]\np99_latency = 300\np90_latency = { warn = 50, fail = 80 }\ncoverage = { fail = 0.95 }\n",
        )]);
        let t = Thresholds::find(&[dir.path()]).unwrap();
        assert_eq!(
            t.source.as_deref(),
            Some(dir.path().join("pyproject.toml").as_path())
        );
        assert_eq!(
            t.levels("p99_latency"),
            Levels {
                warn: 300.0,
                fail: 300.0
            }
        );
        assert_eq!(
            t.levels("p90_latency"),
            Levels {
                warn: 50.0,
                fail: 80.0
            }
        );
        assert_eq!(
            t.levels("coverage"),
            Levels {
                warn: 0.95,
                fail: 0.95
            }
        );
        assert_eq!(
            t.levels("peak_rss"),
            Levels {
                warn: 512.0,
                fail: 1024.0
            }
        );
    }

    #[test]
    fn timeglass_toml_wins_and_earlier_dirs_win() {
        let first = dir_with(&[]);
        let second = dir_with(&[
            ("timeglass.toml", "[thresholds]\npeak_rss = 2048\n"),
            (
                "pyproject.toml",
                "[tool.timeglass.thresholds]\npeak_rss = 1\n",
            ),
        ]);
        let t = Thresholds::find(&[first.path(), second.path()]).unwrap();
        assert_eq!(t.levels("peak_rss").fail, 2048.0);
        assert_eq!(t.source.unwrap(), second.path().join("timeglass.toml"));
    }

    #[test]
    fn bad_files_are_errors_naming_the_file() {
        for (text, says) in [
            ("[thresholds]\np99 = 3\n", "unknown threshold `p99`"),
            ("[thresholds]\np99_latency = 'fast'\n", "timeglass.toml"),
            ("[thresholds]\np99_latency = -1\n", "at least 0"),
            ("[thresholds\n", "timeglass.toml"),
        ] {
            let dir = dir_with(&[("timeglass.toml", text)]);
            let err = Thresholds::find(&[dir.path()]).unwrap_err().to_string();
            assert!(
                err.contains(says) && err.contains("timeglass.toml"),
                "{text}: {err}"
            );
        }
    }
}
