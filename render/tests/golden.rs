//! Golden files of every profile and table format, over recorded walks run
//! through replay → sampler → join → store (`support/pipeline.rs`).
//! `TIMEGLASS_BLESS=1 cargo test -p timeglass-render --test golden`
//! rewrites them; review the diff of `render/tests/data/golden/`.

#[path = "support/pipeline.rs"]
mod pipeline;

use std::path::{Path, PathBuf};

use prost::Message;
use timeglass_render::pprof::Profile;
use timeglass_render::{
    requests_table, statements_table, Format, Recording, Subject, TableFormat, View,
};
use timeglass_store::{SessionId, Store};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden")
}

fn subjects() -> Vec<(&'static str, Subject)> {
    vec![
        ("request-1", Subject::Request(1)),
        ("request-2", Subject::Request(2)),
        (
            "route",
            Subject::Route {
                method: "GET".into(),
                route: "/items/{item_id}".into(),
                session: Some(SessionId(1)),
            },
        ),
        ("session", Subject::Session(SessionId(1))),
    ]
}

/// pprof is binary: its golden file is the decoded message.
fn pprof_text(bytes: &[u8]) -> String {
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut raw).unwrap();
    format!("{:#?}\n", Profile::decode(raw.as_slice()).unwrap())
}

fn json_pretty(bytes: &[u8]) -> String {
    let value: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    serde_json::to_string_pretty(&value).unwrap() + "\n"
}

#[test]
fn every_profile_format_of_every_fixture_matches_its_golden_file() {
    let mut fixtures: Vec<_> = std::fs::read_dir(pipeline::walks_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".jsonl"))
        .collect();
    fixtures.sort();
    assert!(
        fixtures.len() >= 2,
        "the recorded walks are missing: {fixtures:?}"
    );
    for fixture in fixtures {
        let dir = tempfile::tempdir().unwrap();
        let db = pipeline::store(&fixture, dir.path());
        let store = Store::open_existing(&db).unwrap();
        let stem = fixture.trim_end_matches(".jsonl");
        let out = golden_dir().join(stem);
        for (name, subject) in subjects() {
            let recording = Recording::load(&store, subject).unwrap();
            assert!(!recording.requests.is_empty() || name == "session");
            for format in Format::ALL {
                let bytes = format.render(&recording, View::default()).unwrap();
                let text = match format {
                    Format::Pprof => pprof_text(&bytes),
                    Format::Speedscope | Format::Chrome => json_pretty(&bytes),
                    Format::Folded | Format::Svg => String::from_utf8(bytes).unwrap(),
                };
                let file = format!("{name}.{}", format.extension().replace(".gz", ".txt"));
                pipeline::golden(&out, &file, &text, &[]);
            }
        }
        let rows = store
            .requests(&timeglass_store::RequestQuery {
                limit: 100,
                session: None,
            })
            .unwrap();
        for (format, ext) in [(TableFormat::Csv, "csv"), (TableFormat::Jsonl, "jsonl")] {
            let table = requests_table(&rows);
            let text = String::from_utf8(format.render(&table).unwrap()).unwrap();
            pipeline::golden(&out, &format!("requests.{ext}"), &text, &[]);
            let table = statements_table(
                2,
                &store.request_queries(2).unwrap(),
                &store.request_calls(2).unwrap(),
            );
            let text = String::from_utf8(format.render(&table).unwrap()).unwrap();
            pipeline::golden(&out, &format!("statements-2.{ext}"), &text, &[]);
        }
    }
}

#[test]
fn the_pipeline_charges_every_walk_to_its_request() {
    let dir = tempfile::tempdir().unwrap();
    let db = pipeline::store("demo-cpu.jsonl", dir.path());
    let store = Store::open_existing(&db).unwrap();
    let one = store.request(1).unwrap().unwrap();
    let two = store.request(2).unwrap().unwrap();
    assert!(one.samples > 0 && two.samples > 0, "{one:?} {two:?}");
    assert_eq!(store.request_queries(2).unwrap().len(), 1);
    let speedscope = Format::Speedscope
        .render(
            &Recording::load(&store, Subject::Request(2)).unwrap(),
            View::default(),
        )
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&speedscope).unwrap();
    let frames = doc["shared"]["frames"].as_array().unwrap();
    let sql = frames
        .iter()
        .position(|f| f["name"].as_str().unwrap().starts_with("[sql] SELECT"))
        .expect("the statement is on the timeline");
    let opened = doc["profiles"][0]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["frame"] == sql && e["type"] == "O")
        .unwrap();
    // It started 1 ms into request 2, as the marker's event said.
    assert_eq!(opened["at"], 1.0);
}
