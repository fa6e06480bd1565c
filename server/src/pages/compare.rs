//! The Compare page (`/compare`): two sessions, or a baseline and a
//! session, as `timeglass compare` judges them: the endpoint table, what
//! explains each change, and per endpoint a differential flame graph
//! (`/compare/endpoint`).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use timeglass_compare::check;
use timeglass_compare::compare::{EndpointComparison, Side as Figures};
use timeglass_compare::stats::Statistic;
use timeglass_compare::Comparison;
use timeglass_store::{local_time, BaselineRow, SessionRow, Store};

use crate::compare::{no_endpoint, CompareParams, Compared, Side};
use crate::diff::DiffProfile;
use crate::error::AppError;
use crate::html::{count, json_script, ms, page, query_value, render, Options};
use crate::{db, AppState};

#[derive(Template)]
#[template(path = "compare.html")]
struct CompareTemplate<'a> {
    /// A's sessions and baselines (in groups of their own when there are baselines).
    a_sessions: &'a str,
    a_baselines: &'a str,
    b_options: &'a str,
    body: &'a str,
    /// The one-line error shown instead of a body.
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "compare_endpoint.html")]
struct CompareEndpointTemplate<'a> {
    back: &'a str,
    title: &'a str,
    verdict: &'a str,
    sides: &'a str,
    row: &'a str,
    explained: &'a str,
    diff: &'a str,
}

#[derive(Template)]
#[template(path = "diff.html")]
struct DiffTemplate<'a> {
    unit: &'a str,
    api: &'a str,
    functions: Vec<DiffFunction<'a>>,
    diff_json: &'a str,
}

/// A function of the differential flame graph's table.
struct DiffFunction<'a> {
    function: &'a str,
    self_a: String,
    self_b: String,
    /// Its self time's change in ms, and the stylesheet's class of it.
    change: String,
    class: &'static str,
    inclusive_a: String,
    inclusive_b: String,
}

#[derive(Template)]
#[template(path = "parts/compare_result.html")]
struct ResultTemplate<'a> {
    a: String,
    b: String,
    a_session: i64,
    b_session: i64,
    warnings: &'a [String],
    rows: &'a str,
    method: String,
    explained: &'a str,
    query: &'a str,
}

/// One endpoint's row of a comparison.
#[derive(Template)]
#[template(path = "parts/compare_row.html")]
struct RowTemplate {
    verdict: &'static str,
    name: String,
    /// The p50's change and its interval, when the test found one.
    change: Option<(String, String)>,
    /// Requests, p50, p95, p99, CPU, queries, DB time, N+1s and 5xx, `A → B`.
    figures: Vec<String>,
    /// Its differential flame graph, when both sides served it.
    diff: Option<String>,
}

/// What explains one endpoint's change: reasons, functions and statements.
#[derive(Template)]
#[template(path = "parts/compare_explanation.html")]
struct ExplanationTemplate<'a> {
    name: String,
    verdict: &'static str,
    reasons: &'a [String],
    functions: Vec<DiffFunction<'a>>,
    statements: Vec<StatementChange<'a>>,
}

/// A statement that ran more or less often per request.
struct StatementChange<'a> {
    sql: &'a str,
    a: String,
    b: String,
}

/// What the pickers offer.
struct Choices {
    sessions: Vec<SessionRow>,
    baselines: Vec<BaselineRow>,
}

impl Choices {
    fn read(store: &Store) -> Result<Choices, AppError> {
        Ok(Choices {
            sessions: store.sessions()?,
            baselines: store.baselines()?,
        })
    }

    /// The selects' options: A's sessions, A's baselines, B's sessions.
    fn form(&self, a: Option<&Side>, b: Option<&Side>) -> [String; 3] {
        let sessions: Vec<(String, String)> = self
            .sessions
            .iter()
            .map(|s| {
                let label = format!(
                    "session #{} · {} · {} requests",
                    s.id.0,
                    local_time(&s.started_at),
                    count(s.requests)
                );
                (Side::Session(s.id.0).value(), label)
            })
            .collect();
        let baselines: Vec<(String, String)> = self
            .baselines
            .iter()
            .map(|bl| {
                let from = bl
                    .session_id
                    .map_or("imported".to_string(), |id| format!("of session #{id}"));
                let label = format!("baseline {} · {from}", bl.name);
                (Side::Baseline(bl.name.clone()).value(), label)
            })
            .collect();
        let options = |options: &[(String, String)], chosen: Option<&Side>| {
            render(&Options {
                options,
                current: &chosen.map_or(String::new(), Side::value),
            })
        };
        [
            options(&sessions, a),
            options(&baselines, a),
            options(&sessions, b),
        ]
    }
}

/// `a=…&b=…` of a comparison.
fn sides_query(a: &Side, b: &Side) -> String {
    format!(
        "a={}&b={}",
        query_value(&a.value()),
        query_value(&b.value())
    )
}

/// A page, or the same page's form with the one-line error under it (400).
fn page_or_error(
    title: &str,
    choices: &Choices,
    sides: Option<(&Side, &Side)>,
    body: Result<String, AppError>,
) -> Response {
    let [a_sessions, a_baselines, b_options] = choices.form(sides.map(|s| s.0), sides.map(|s| s.1));
    let (status, body, error) = match body {
        Ok(body) => (StatusCode::OK, body, None),
        Err(e) => (e.status(), String::new(), Some(e.to_string())),
    };
    let html = render(&CompareTemplate {
        a_sessions: &a_sessions,
        a_baselines: &a_baselines,
        b_options: &b_options,
        body: &body,
        error,
    });
    (status, page(title, "compare", &html)).into_response()
}

/// `GET /compare?a=…&b=…`.
pub(crate) async fn compare(
    State(state): State<AppState>,
    Query(params): Query<CompareParams>,
) -> Result<Response, AppError> {
    db::read(state.db, move |store| {
        let choices = Choices::read(store)?;
        let sides = match params.sides(&choices.sessions) {
            Ok(sides) => sides,
            Err(e) => return Ok(page_or_error("Compare", &choices, None, Err(e))),
        };
        let body = Compared::read(store, &sides.0, &sides.1)
            .map(|c| result(&c.comparison, &sides.0, &sides.1));
        let shown = Some((&sides.0, &sides.1));
        Ok(page_or_error("Compare", &choices, shown, body))
    })
    .await
}

fn result(c: &Comparison, a: &Side, b: &Side) -> String {
    let query = sides_query(a, b);
    let rows: String = c.endpoints.iter().map(|e| row(e, &query)).collect();
    let explained: String = c.endpoints.iter().map(explanation).collect();
    render(&ResultTemplate {
        a: a.describe(),
        b: b.describe(),
        a_session: c.a_session,
        b_session: c.b_session,
        warnings: &c.warnings,
        rows: &rows,
        method: format!(
            "Verdicts: {}, {:.0}% confidence, at least {:.0}% and {} apart",
            c.method.test,
            c.method.confidence * 100.0,
            c.method.min_ratio * 100.0,
            ms(c.method.min_abs_ms)
        ),
        explained: &explained,
        query: &query,
    })
}

/// `A → B` of one figure, or the one side there is.
fn pair(a: Option<&Figures>, b: Option<&Figures>, f: impl Fn(&Figures) -> String) -> String {
    match (a.map(&f), b.map(&f)) {
        (Some(x), Some(y)) if x == y => x,
        (Some(x), Some(y)) => format!("{x} → {y}"),
        (Some(x), None) | (None, Some(x)) => x,
        (None, None) => "—".into(),
    }
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or("—".into(), ms)
}

/// The p50 change with its interval, as the test found it.
fn change(e: &EndpointComparison) -> Option<(String, String)> {
    let t = e.tests.iter().find(|t| t.statistic == Statistic::P50)?;
    let ratio = t.ratio?;
    let pct = |r: f64| format!("{:+.0}%", (r - 1.0) * 100.0);
    let interval = match (t.low, t.high) {
        (Some(l), Some(h)) => format!("interval {} to {}", pct(l), pct(h)),
        _ => "too few requests for an interval".into(),
    };
    Some((pct(ratio), interval))
}

fn row(e: &EndpointComparison, query: &str) -> String {
    let (a, b) = (e.a.as_ref(), e.b.as_ref());
    let diff = (a.is_some() && b.is_some()).then(|| {
        let mut href = format!(
            "/compare/endpoint?{query}&method={}",
            query_value(&e.method)
        );
        if let Some(route) = &e.route {
            href.push_str(&format!("&route={}", query_value(route)));
        }
        href
    });
    render(&RowTemplate {
        verdict: e.verdict.as_str(),
        name: e.name(),
        change: change(e),
        figures: vec![
            pair(a, b, |s| count(s.requests)),
            pair(a, b, |s| opt_ms(s.p50_ms)),
            pair(a, b, |s| opt_ms(s.p95_ms)),
            pair(a, b, |s| opt_ms(s.p99_ms)),
            pair(a, b, |s| opt_ms(s.cpu_ms_per_request)),
            pair(a, b, |s| check::round(s.queries_per_request)),
            pair(a, b, |s| ms(s.db_ms_per_request)),
            pair(a, b, |s| s.n_plus_one.to_string()),
            pair(a, b, |s| format!("{:.1}%", s.error_rate_5xx * 100.0)),
        ],
        diff,
    })
}

/// Reasons, functions and statements of one endpoint, when it changed.
fn explanation(e: &EndpointComparison) -> String {
    render(&ExplanationTemplate {
        name: e.name(),
        verdict: e.verdict.as_str(),
        reasons: &e.reasons,
        functions: e
            .functions
            .iter()
            .map(|f| DiffFunction {
                function: &f.function,
                self_a: format!("{:.1}", f.self_a_ms),
                self_b: format!("{:.1}", f.self_b_ms),
                change: format!("{:+.1}", f.self_change()),
                class: if f.self_change() > 0.0 { "up" } else { "down" },
                inclusive_a: format!("{:.1}", f.inclusive_a_ms),
                inclusive_b: format!("{:.1}", f.inclusive_b_ms),
            })
            .collect(),
        statements: e
            .statements
            .iter()
            .map(|s| StatementChange {
                sql: &s.normalized,
                a: check::round(s.a_per_request),
                b: check::round(s.b_per_request),
            })
            .collect(),
    })
}

/// `GET /compare/endpoint?a=…&b=…&method=…&route=…`.
pub(crate) async fn endpoint(
    State(state): State<AppState>,
    Query(params): Query<CompareParams>,
) -> Result<Response, AppError> {
    db::read(state.db, move |store| {
        let choices = Choices::read(store)?;
        let sides = match params.sides(&choices.sessions) {
            Ok(sides) => sides,
            Err(e) => return Ok(page_or_error("Compare", &choices, None, Err(e))),
        };
        let body = endpoint_body(store, &params, &sides.0, &sides.1);
        let shown = Some((&sides.0, &sides.1));
        Ok(page_or_error("Compare an endpoint", &choices, shown, body))
    })
    .await
}

fn endpoint_body(
    store: &Store,
    params: &CompareParams,
    a: &Side,
    b: &Side,
) -> Result<String, AppError> {
    let (method, route) = params.endpoint()?;
    let c = Compared::read(store, a, b)?;
    let no = || no_endpoint(&method, route.as_deref());
    let e = c
        .comparison
        .endpoints
        .iter()
        .find(|e| e.method == method && e.route == route)
        .ok_or_else(no)?;
    let diff = c.endpoint_diff(&method, route.as_deref()).ok_or_else(no)?;
    let query = sides_query(a, b);
    let mut api = format!(
        "/api/v1/compare/endpoint?{query}&method={}",
        query_value(&method)
    );
    if let Some(r) = &route {
        api.push_str(&format!("&route={}", query_value(r)));
    }
    let title = format!("{} {}", method, route.as_deref().unwrap_or("(no route)"));
    Ok(render(&CompareEndpointTemplate {
        back: &format!("/compare?{query}"),
        title: &title,
        verdict: e.verdict.as_str(),
        sides: &format!("B: {} against A: {}", b.describe(), a.describe()),
        row: &row(e, &query),
        explained: &explanation(e),
        diff: &diff_section(&diff, "per request, on average", &api),
    }))
}

/// The differential flame graph section, with its data and functions.
pub(crate) fn diff_section(diff: &DiffProfile, unit: &str, api: &str) -> String {
    let functions = diff
        .functions
        .iter()
        .filter(|f| f.self_a_ms > 0.0 || f.self_b_ms > 0.0)
        .take(25)
        .map(|f| {
            let d = f.self_change();
            DiffFunction {
                function: &f.function,
                self_a: ms(f.self_a_ms),
                self_b: ms(f.self_b_ms),
                change: format!("{d:+.2}"),
                class: match crate::diff::changed(f.self_a_ms, f.self_b_ms) {
                    false => "same",
                    true if d > 0.0 => "up",
                    true => "down",
                },
                inclusive_a: ms(f.inclusive_a_ms),
                inclusive_b: ms(f.inclusive_b_ms),
            }
        })
        .collect();
    render(&DiffTemplate {
        unit,
        api,
        functions,
        diff_json: &json_script(diff),
    })
}
