//! Golden files of `requests`, `show` and `report` in every table format,
//! over recorded walks run through replay → sampler → join → store
//! (`render/tests/support/pipeline.rs`), by the real `timeglass` binary.
//! `TIMEGLASS_BLESS=1 cargo test -p timeglass-cli --test golden` rewrites
//! them; review the diff of `cli/tests/data/golden/`.

#[path = "../../render/tests/support/pipeline.rs"]
mod pipeline;

use std::path::{Path, PathBuf};
use std::process::Command;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden")
}

fn timeglass(db: &Path, cwd: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_timeglass"))
        .args(args)
        .arg("--db")
        .arg(db)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "timeglass {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn requests_show_and_report_match_their_golden_files() {
    let dir = tempfile::tempdir().unwrap();
    let db = pipeline::store("demo-cpu.jsonl", dir.path());
    let scrub = [(dir.path().to_str().unwrap(), "<tmp>")];
    let cases: &[(&str, &[&str])] = &[
        ("requests.txt", &["requests"]),
        ("requests.json", &["requests", "--format", "json"]),
        ("requests.csv", &["requests", "--format", "csv"]),
        ("requests.jsonl", &["requests", "--format", "jsonl"]),
        (
            "requests-slowest.csv",
            &["requests", "--sort", "duration", "--format", "csv"],
        ),
        ("show-2.txt", &["show", "2"]),
        ("show-2.json", &["show", "2", "--format", "json"]),
        ("show-2.csv", &["show", "2", "--format", "csv"]),
        ("report.txt", &["report"]),
        ("report.md", &["report", "--format", "markdown"]),
        ("report.json", &["report", "--format", "json"]),
        ("report.csv", &["report", "--format", "csv"]),
        ("report.jsonl", &["report", "--format", "jsonl"]),
    ];
    for (file, args) in cases {
        let text = timeglass(&db, dir.path(), args);
        pipeline::golden(&golden_dir(), file, &text, &scrub);
    }
}
