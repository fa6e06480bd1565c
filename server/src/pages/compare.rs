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
use crate::html::{count, escape, json_script, ms, page, query_value, render};
use crate::{db, AppState};

#[derive(Template)]
#[template(path = "compare.html")]
struct CompareTemplate<'a> {
    a_options: &'a str,
    b_options: &'a str,
    body: &'a str,
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
    functions: &'a str,
    diff_json: &'a str,
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

    /// The two selects; B lists sessions only.
    fn form(&self, a: Option<&Side>, b: Option<&Side>) -> (String, String) {
        let session = |s: &SessionRow, chosen: Option<&Side>| {
            let side = Side::Session(s.id.0);
            option(
                &side,
                &format!(
                    "session #{} · {} · {} requests",
                    s.id.0,
                    local_time(&s.started_at),
                    count(s.requests)
                ),
                chosen == Some(&side),
            )
        };
        let sessions_a: String = self.sessions.iter().map(|s| session(s, a)).collect();
        let baselines: String = self
            .baselines
            .iter()
            .map(|bl| {
                let side = Side::Baseline(bl.name.clone());
                let from = bl
                    .session_id
                    .map_or("imported".to_string(), |id| format!("of session #{id}"));
                option(
                    &side,
                    &format!("baseline {} · {from}", bl.name),
                    a == Some(&side),
                )
            })
            .collect();
        let a_options = match baselines.is_empty() {
            true => sessions_a,
            false => format!(
                "<optgroup label=\"Sessions\">{sessions_a}</optgroup><optgroup label=\"Baselines\">{baselines}</optgroup>"
            ),
        };
        let b_options = self.sessions.iter().map(|s| session(s, b)).collect();
        (a_options, b_options)
    }
}

fn option(side: &Side, label: &str, selected: bool) -> String {
    format!(
        "<option value=\"{}\"{}>{}</option>",
        escape(&side.value()),
        if selected { " selected" } else { "" },
        escape(label)
    )
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
    let (a_options, b_options) = choices.form(sides.map(|s| s.0), sides.map(|s| s.1));
    let (status, body) = match body {
        Ok(body) => (StatusCode::OK, body),
        Err(e) => (
            e.status(),
            format!(
                "<p class=\"compare-error\" role=\"alert\">{}</p>",
                escape(&e.to_string())
            ),
        ),
    };
    let html = render(&CompareTemplate {
        a_options: &a_options,
        b_options: &b_options,
        body: &body,
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
    let explained = match explained.is_empty() {
        true => {
            "<p class=\"muted\">Nothing changed beyond the noise: every endpoint is the same.</p>"
                .to_string()
        }
        false => explained,
    };
    format!(
        "<p class=\"compare-sides\">B: <strong>{b}</strong> against A: <strong>{a}</strong> <span class=\"muted\">(A's session {sa}, B's session {sb})</span></p>\
         {warnings}\
         <section class=\"card\"><h2>Endpoints</h2>\
         <table class=\"list compare-table\"><thead><tr><th>Endpoint</th><th>Verdict</th><th class=\"num\">Change</th>\
         <th class=\"num\">Requests</th><th class=\"num\">p50</th><th class=\"num\">p95</th><th class=\"num\">p99</th>\
         <th class=\"num\" title=\"CPU time per request\">CPU/req</th><th class=\"num\">Queries/req</th>\
         <th class=\"num\" title=\"Time waiting on SQL per request\">DB/req</th><th class=\"num\" title=\"Requests flagged as likely N+1s\">N+1</th>\
         <th class=\"num\">5xx</th><th></th></tr></thead><tbody>{rows}</tbody></table>\
         <p class=\"legend muted\">A → B where they differ. {method}.</p></section>\
         <section class=\"card\" id=\"explained\"><h2>What explains the changes</h2>{explained}</section>\
         <p class=\"muted raw\">Raw data: <a href=\"/api/v1/compare?{query}\">JSON</a>, the same as <code>timeglass compare --format json</code></p>",
        a = escape(&a.describe()),
        b = escape(&b.describe()),
        sa = c.a_session,
        sb = c.b_session,
        warnings = warnings(c),
        method = escape(&format!(
            "Verdicts: {}, {:.0}% confidence, at least {:.0}% and {} apart",
            c.method.test,
            c.method.confidence * 100.0,
            c.method.min_ratio * 100.0,
            ms(c.method.min_abs_ms)
        )),
    )
}

fn warnings(c: &Comparison) -> String {
    c.warnings
        .iter()
        .map(|w| {
            format!(
                "<p class=\"compare-warning\">{}; the figures may not compare.</p>",
                escape(w)
            )
        })
        .collect()
}

fn verdict(e: &EndpointComparison) -> String {
    let v = e.verdict.as_str();
    format!("<span class=\"verdict verdict-{v}\">{v}</span>")
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
fn change(e: &EndpointComparison) -> String {
    let Some(t) = e.tests.iter().find(|t| t.statistic == Statistic::P50) else {
        return "<span class=\"muted\">—</span>".into();
    };
    let Some(ratio) = t.ratio else {
        return "<span class=\"muted\">—</span>".into();
    };
    let pct = |r: f64| format!("{:+.0}%", (r - 1.0) * 100.0);
    let interval = match (t.low, t.high) {
        (Some(l), Some(h)) => format!("interval {} to {}", pct(l), pct(h)),
        _ => "too few requests for an interval".into(),
    };
    format!(
        "<span title=\"p50 B/A, {interval}\">{} p50</span>",
        pct(ratio)
    )
}

fn row(e: &EndpointComparison, query: &str) -> String {
    let (a, b) = (e.a.as_ref(), e.b.as_ref());
    let diff = match (a, b) {
        (Some(_), Some(_)) => {
            let mut href = format!(
                "/compare/endpoint?{query}&method={}",
                query_value(&e.method)
            );
            if let Some(route) = &e.route {
                href.push_str(&format!("&route={}", query_value(route)));
            }
            format!(
                "<a class=\"diff-link\" href=\"{}\">Diff flame graph →</a>",
                escape(&href)
            )
        }
        _ => String::new(),
    };
    format!(
        "<tr class=\"v-{verdict_class}\" data-endpoint=\"{name}\"><td class=\"code\">{name}</td><td>{verdict}</td>\
         <td class=\"num\">{change}</td><td class=\"num\">{requests}</td><td class=\"num\">{p50}</td>\
         <td class=\"num\">{p95}</td><td class=\"num\">{p99}</td><td class=\"num\">{cpu}</td>\
         <td class=\"num\">{queries}</td><td class=\"num\">{db}</td><td class=\"num\">{n1}</td>\
         <td class=\"num\">{e5}</td><td>{diff}</td></tr>",
        verdict_class = e.verdict.as_str(),
        name = escape(&e.name()),
        verdict = verdict(e),
        change = change(e),
        requests = pair(a, b, |s| count(s.requests)),
        p50 = pair(a, b, |s| opt_ms(s.p50_ms)),
        p95 = pair(a, b, |s| opt_ms(s.p95_ms)),
        p99 = pair(a, b, |s| opt_ms(s.p99_ms)),
        cpu = pair(a, b, |s| opt_ms(s.cpu_ms_per_request)),
        queries = pair(a, b, |s| check::round(s.queries_per_request)),
        db = pair(a, b, |s| ms(s.db_ms_per_request)),
        n1 = pair(a, b, |s| s.n_plus_one.to_string()),
        e5 = pair(a, b, |s| format!("{:.1}%", s.error_rate_5xx * 100.0)),
    )
}

/// Reasons, functions and statements of one endpoint, when it changed.
fn explanation(e: &EndpointComparison) -> String {
    let mut items: Vec<String> = e.reasons.iter().map(|r| escape(r)).collect();
    for f in &e.functions {
        items.push(format!(
            "<code>{}</code> <strong class=\"{cls}\">{:+.1} ms</strong> per request (self {:.1} → {:.1} ms, inclusive {:.1} → {:.1} ms)",
            escape(&f.function),
            f.self_change(),
            f.self_a_ms,
            f.self_b_ms,
            f.inclusive_a_ms,
            f.inclusive_b_ms,
            cls = if f.self_change() > 0.0 { "up" } else { "down" },
        ));
    }
    for s in &e.statements {
        items.push(format!(
            "<code>{}</code> ran {}x instead of {}x per request",
            escape(&s.normalized),
            check::round(s.b_per_request),
            check::round(s.a_per_request)
        ));
    }
    if items.is_empty() {
        return String::new();
    }
    let list: String = items.iter().map(|i| format!("<li>{i}</li>")).collect();
    format!(
        "<h3 class=\"explained-endpoint\">{} {}</h3><ul class=\"explained\">{list}</ul>",
        escape(&e.name()),
        verdict(e)
    )
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
    let title = format!(
        "{} {}",
        escape(&method),
        escape(route.as_deref().unwrap_or("(no route)"))
    );
    Ok(render(&CompareEndpointTemplate {
        back: &format!("/compare?{query}"),
        title: &title,
        verdict: &verdict(e),
        sides: &format!(
            "B: {} against A: {}",
            escape(&b.describe()),
            escape(&a.describe())
        ),
        row: &row(e, &query),
        explained: &explanation(e),
        diff: &diff_section(&diff, "per request, on average", &api),
    }))
}

/// The differential flame graph section, with its data and functions.
pub(crate) fn diff_section(diff: &DiffProfile, unit: &str, api: &str) -> String {
    let functions: String = diff
        .functions
        .iter()
        .filter(|f| f.self_a_ms > 0.0 || f.self_b_ms > 0.0)
        .take(25)
        .map(|f| {
            let d = f.self_change();
            let cls = match crate::diff::changed(f.self_a_ms, f.self_b_ms) {
                false => "same",
                true if d > 0.0 => "up",
                true => "down",
            };
            format!(
                "<tr><td class=\"code fn-name\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num {cls}\">{:+.2} ms</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                escape(&f.function),
                ms(f.self_a_ms),
                ms(f.self_b_ms),
                d,
                ms(f.inclusive_a_ms),
                ms(f.inclusive_b_ms),
            )
        })
        .collect();
    render(&DiffTemplate {
        unit,
        api,
        functions: &functions,
        diff_json: &json_script(diff),
    })
}
