//! The renderers class frames by the table the marker's test also checks
//! (`fixtures/data/library_frames.tsv`).

use timeglass_model::Frame;
use timeglass_render::{kind, Kind};

#[test]
fn frames_are_classed_as_the_shared_table_says() {
    let table = include_str!("../../fixtures/data/library_frames.tsv");
    let mut rows = 0;
    for line in table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let [filename, short, expected] = line.split('\t').collect::<Vec<_>>()[..] else {
            panic!("a row has three columns: {line:?}");
        };
        let frame = Frame {
            name: "f".into(),
            filename: filename.into(),
            short: short.into(),
            line: 1,
        };
        let expected = match expected {
            "library" => Kind::Library,
            "app" => Kind::App,
            other => panic!("unknown kind {other:?}"),
        };
        assert_eq!(kind(&frame), expected, "{filename}");
        rows += 1;
    }
    assert!(rows >= 15, "the table lost rows: {rows}");
}

#[test]
fn synthetic_frames_are_neither() {
    assert_eq!(kind(&Frame::synthetic("[background]")), Kind::Synthetic);
}
