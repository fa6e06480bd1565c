//! Golden expectations: the cases of a small FastAPI-style schema, one line
//! each, in sending order. `TIMEGLASS_BLESS=1 cargo test -p timeglass-probe`
//! rewrites the expected file after a deliberate change.

use std::fmt::Write;
use std::path::Path;

use timeglass_probe::{cases, plan, schema};

fn render(case: &cases::Case) -> String {
    let mut line = format!(
        "{} {} {} {} {}",
        case.method,
        case.route,
        case.kind.as_str(),
        case.target,
        case.path_and_query
    );
    for (name, value) in &case.headers {
        write!(line, " [{name}: {value}]").unwrap();
    }
    if let Some((content_type, body)) = &case.body {
        if body.len() > 200 {
            write!(line, " <{content_type}, {} bytes>", body.len()).unwrap();
        } else {
            write!(line, " <{content_type}> {}", String::from_utf8_lossy(body)).unwrap();
        }
    }
    line
}

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    if std::env::var_os("TIMEGLASS_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; bless it with TIMEGLASS_BLESS=1", path.display()));
    assert_eq!(
        actual, expected,
        "cases of {name} changed; bless with TIMEGLASS_BLESS=1"
    );
}

fn small() -> Vec<schema::Operation> {
    let text = include_str!("data/small_openapi.json");
    schema::operations(text).unwrap()
}

#[test]
fn every_case_of_a_small_schema_in_order() {
    let ops = small();
    let listed: Vec<String> = ops
        .iter()
        .map(|o| format!("{} {}", o.method, o.route))
        .collect();
    assert_eq!(
        listed,
        [
            "GET /health",
            "POST /items",
            "DELETE /items/{item_id}",
            "GET /items/{item_id}",
            "GET /search",
            "GET /users/{user_id}"
        ]
    );
    let mut out = String::new();
    for op in &ops {
        for case in cases::cases(op) {
            out.push_str(&render(&case));
            out.push('\n');
        }
    }
    golden("small_openapi.cases", &out);
}

#[test]
fn unsafe_methods_are_skipped_and_max_requests_cuts_in_order() {
    let ops = small();
    let p = plan(&ops, false, 500);
    let skipped: Vec<_> = p
        .operations
        .iter()
        .map(|o| {
            (
                o.method.as_str(),
                o.skipped.map(timeglass_probe::Skip::as_str),
                o.cases.len(),
            )
        })
        .collect();
    assert_eq!(
        skipped,
        [
            ("GET", Some("nothing to break"), 0),
            ("POST", Some("unsafe method"), 0),
            ("DELETE", Some("unsafe method"), 0),
            ("GET", None, 5),
            ("GET", None, 7),
            ("GET", None, 2),
        ]
    );
    assert!(!p.truncated);

    let cut = plan(&ops, true, 10);
    assert!(cut.truncated);
    assert_eq!(cut.requests(), 10);
    let counts: Vec<_> = cut
        .operations
        .iter()
        .map(|o| (o.cases.len(), o.skipped))
        .collect();
    assert_eq!(
        counts,
        [
            (0, Some(plan_skip("nothing to break"))),
            (10, None),
            (0, Some(plan_skip("max requests reached"))),
            (0, Some(plan_skip("max requests reached"))),
            (0, Some(plan_skip("max requests reached"))),
            (0, Some(plan_skip("max requests reached"))),
        ]
    );
}

fn plan_skip(text: &str) -> timeglass_probe::Skip {
    use timeglass_probe::Skip;
    [Skip::UnsafeMethod, Skip::MaxRequests, Skip::NothingToBreak]
        .into_iter()
        .find(|s| s.as_str() == text)
        .unwrap()
}
