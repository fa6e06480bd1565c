//! From an operation to the malformed requests sent to it.
//!
//! Every case starts from a request the schema says is valid (every path
//! parameter, required query and header parameter and required body field
//! given a value of its type within its bounds) and breaks one thing. The
//! order is fixed: parameters in the schema's order, then the body, each
//! with its kinds in the order of [`Kind`], so two runs are comparable.

use serde_json::{json, Value};

use crate::schema::{Body, Location, Operation, Param, Shape, Type};

/// What a case breaks. The names are stored (`probe_results.kind`) and
/// documented in the README.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A value that is not of the parameter's or field's type
    /// (`not-a-number` for an integer).
    WrongType,
    /// One below `minimum` (or `exclusiveMinimum` itself).
    BelowMinimum,
    /// One above `maximum` (or `exclusiveMaximum` itself).
    AboveMaximum,
    /// A string one character longer than `maxLength`.
    TooLong,
    /// A string one character shorter than `minLength`.
    TooShort,
    /// A value outside the schema's `enum`.
    NotInEnum,
    /// Text with quotes, angle brackets, a percent sign and a non-ASCII
    /// letter, for a free-text string (no enum, format or pattern), fitted
    /// to its lengths: the schema allows it, so an app that assumes more
    /// (a number, an identifier) shows it here.
    UnusualText,
    /// A required query or header parameter, or body field, left out.
    MissingRequired,
    /// A path parameter of the right type and within bounds that names
    /// nothing the app is likely to have (`987654321`, an all-`f` UUID).
    UnknownId,
    /// A required body not sent at all.
    MissingBody,
    /// `{"timeglass_probe": ` with `Content-Type: application/json`.
    InvalidJson,
    /// A valid JSON body sent as `text/plain`.
    WrongContentType,
    /// A body of 2 MiB.
    OversizedBody,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::WrongType => "wrong_type",
            Kind::BelowMinimum => "below_minimum",
            Kind::AboveMaximum => "above_maximum",
            Kind::TooLong => "too_long",
            Kind::TooShort => "too_short",
            Kind::NotInEnum => "not_in_enum",
            Kind::UnusualText => "unusual_text",
            Kind::MissingRequired => "missing_required",
            Kind::UnknownId => "unknown_id",
            Kind::MissingBody => "missing_body",
            Kind::InvalidJson => "invalid_json",
            Kind::WrongContentType => "wrong_content_type",
            Kind::OversizedBody => "oversized_body",
        }
    }
}

/// The size of an `oversized_body` case.
pub const OVERSIZED_BODY_BYTES: usize = 2 * 1024 * 1024;

/// At most this many cases per operation, so that one operation with many
/// fields does not use up `--max-requests` before the others get theirs.
pub const MAX_CASES_PER_OPERATION: usize = 40;

/// Strings longer than this are not built to break a `maxLength` (a URL
/// that long says nothing about the app).
const MAX_TOO_LONG: u64 = 4096;

const UNKNOWN_INT_ID: f64 = 987_654_321.0;
const UNKNOWN_STRING_ID: &str = "timeglass-probe-unknown-id";
const UNKNOWN_UUID: &str = "ffffffff-ffff-4fff-bfff-ffffffffffff";
const NOT_A_MEMBER: &str = "timeglass-probe-not-a-member";
const UNUSUAL_TEXT: &str = "tg' \"<probe>% é";

/// String formats whose values a schema checks, with a value that breaks each.
const FORMATS: &[(&str, &str)] = &[
    ("uuid", "not-a-uuid"),
    ("date", "not-a-date"),
    ("date-time", "not-a-date-time"),
];

/// One request to send.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    pub kind: Kind,
    /// What it breaks: `path:item_id`, `query:limit`, `header:x-token`,
    /// `body`, `body:price`.
    pub target: String,
    pub method: String,
    pub route: String,
    /// Percent-encoded path and query: `/items/not-a-number?limit=5`.
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    /// With its content type.
    pub body: Option<(String, Vec<u8>)>,
}

/// The cases of one operation, in their fixed order, at most
/// [`MAX_CASES_PER_OPERATION`].
pub fn cases(op: &Operation) -> Vec<Case> {
    let mut out = Vec::new();
    for (i, p) in op.params.iter().enumerate() {
        for (kind, value) in param_breaks(p) {
            let target = format!("{}:{}", p.location.as_str(), p.name);
            out.push(build(op, Some((i, value)), BodyCase::Valid, kind, target));
        }
    }
    if let Some(body) = &op.body {
        for (kind, b) in body_breaks(body) {
            out.push(build(op, None, b, kind, "body".to_owned()));
        }
        if let Some(shape) = &body.json {
            for (kind, field, value) in field_breaks(shape) {
                let mut object = valid(shape);
                if let Value::Object(map) = &mut object {
                    match value {
                        Some(v) => map.insert(field.clone(), v),
                        None => map.remove(&field),
                    };
                }
                let b = BodyCase::Json(body.content_type.clone(), object);
                out.push(build(op, None, b, kind, format!("body:{field}")));
            }
        }
    }
    out.truncate(MAX_CASES_PER_OPERATION);
    out
}

/// What to do with the body of one case.
enum BodyCase {
    /// The valid body, if the operation has one.
    Valid,
    None,
    Json(String, Value),
    Raw(String, Vec<u8>),
}

/// A parameter's value: `None` leaves it out.
type ParamValue = Option<String>;

fn param_breaks(p: &Param) -> Vec<(Kind, ParamValue)> {
    let mut out: Vec<(Kind, ParamValue)> = scalar_breaks(&p.shape, p.location == Location::Path)
        .into_iter()
        .map(|(k, v)| (k, Some(text(&v))))
        .collect();
    match p.location {
        Location::Path => {
            if let Some(id) = unknown_id(&p.shape) {
                out.push((Kind::UnknownId, Some(id)));
            }
        }
        _ if p.required => out.push((Kind::MissingRequired, None)),
        _ => {}
    }
    out
}

/// Wrong type, bounds and enum breaks of a scalar, as JSON values. In a
/// URL every value is text, so a string parameter has no wrong type there,
/// and an empty path segment would not reach the route at all.
fn scalar_breaks(s: &Shape, in_path: bool) -> Vec<(Kind, Value)> {
    let mut out = Vec::new();
    match s.ty {
        Some(Type::Integer | Type::Number) => out.push((Kind::WrongType, json!("not-a-number"))),
        Some(Type::Boolean) => out.push((Kind::WrongType, json!("not-a-bool"))),
        Some(Type::String) => {
            let format = s.format.as_deref();
            if let Some((_, bad)) = FORMATS.iter().find(|(f, _)| Some(*f) == format) {
                out.push((Kind::WrongType, json!(bad)));
            }
        }
        _ => {}
    }
    let integer = s.ty == Some(Type::Integer);
    let step = |n: f64, by: f64| number(if integer { n + by } else { n + by * 0.5 }, integer);
    if let Some(min) = s.exclusive_minimum {
        out.push((Kind::BelowMinimum, number(min, integer)));
    } else if let Some(min) = s.minimum {
        out.push((Kind::BelowMinimum, step(min, -1.0)));
    }
    if let Some(max) = s.exclusive_maximum {
        out.push((Kind::AboveMaximum, number(max, integer)));
    } else if let Some(max) = s.maximum {
        out.push((Kind::AboveMaximum, step(max, 1.0)));
    }
    if let Some(max) = s.max_length.filter(|&m| m < MAX_TOO_LONG) {
        out.push((Kind::TooLong, json!("x".repeat(max as usize + 1))));
    }
    if let Some(min) = s.min_length.filter(|&m| m > 0 && !(in_path && m == 1)) {
        out.push((Kind::TooShort, json!("x".repeat(min as usize - 1))));
    }
    if !s.enumeration.is_empty() {
        let outside = match s.ty {
            Some(Type::Integer | Type::Number) => {
                let max = s
                    .enumeration
                    .iter()
                    .filter_map(Value::as_f64)
                    .fold(0.0, f64::max);
                number(max.floor() + 1000.0, true)
            }
            _ => json!(NOT_A_MEMBER),
        };
        out.push((Kind::NotInEnum, outside));
    }
    let free_text = s.ty == Some(Type::String)
        && s.enumeration.is_empty()
        && s.format.is_none()
        && s.pattern.is_none();
    if free_text && !in_path {
        out.push((Kind::UnusualText, json!(fit(UNUSUAL_TEXT, s))));
    }
    out
}

/// A syntactically valid id the app is unlikely to know: the largest of
/// `987654321` and the bounds allow, an all-`f` UUID, or a telling string
/// fitted to the length bounds. Enums and booleans have none.
fn unknown_id(s: &Shape) -> Option<String> {
    if !s.enumeration.is_empty() {
        return None;
    }
    match s.ty {
        Some(Type::Integer | Type::Number) => {
            let (lo, hi) = bounds(s);
            let id = UNKNOWN_INT_ID.min(hi).max(lo);
            Some(text(&number(id, s.ty == Some(Type::Integer))))
        }
        Some(Type::Boolean) => None,
        _ if s.format.as_deref() == Some("uuid") => Some(UNKNOWN_UUID.to_owned()),
        _ => Some(fit(UNKNOWN_STRING_ID, s)),
    }
}

fn body_breaks(b: &Body) -> Vec<(Kind, BodyCase)> {
    let mut out = Vec::new();
    if b.required {
        out.push((Kind::MissingBody, BodyCase::None));
    }
    if let Some(shape) = &b.json {
        let broken = br#"{"timeglass_probe": "#.to_vec();
        out.push((
            Kind::InvalidJson,
            BodyCase::Raw(b.content_type.clone(), broken),
        ));
        let valid = serde_json::to_vec(&valid(shape)).expect("JSON values serialize");
        out.push((
            Kind::WrongContentType,
            BodyCase::Raw("text/plain".into(), valid),
        ));
    }
    let wrapper = r#"{"timeglass_probe_padding":""}"#.len();
    let padding = "x".repeat(OVERSIZED_BODY_BYTES - wrapper);
    let big = serde_json::to_vec(&json!({ "timeglass_probe_padding": padding })).expect("JSON");
    out.push((
        Kind::OversizedBody,
        BodyCase::Raw(b.content_type.clone(), big),
    ));
    out
}

/// Breaks of a JSON object body's own fields: a required one left out
/// (`None`), or one given a bad value.
fn field_breaks(s: &Shape) -> Vec<(Kind, String, Option<Value>)> {
    let mut out = Vec::new();
    for (name, field) in &s.properties {
        if s.required.contains(name) {
            out.push((Kind::MissingRequired, name.clone(), None));
        }
        let wrong = match field.ty {
            Some(Type::String) => Some(json!(12345)),
            Some(Type::Array) => Some(json!("not-a-list")),
            Some(Type::Object) => Some(json!("not-an-object")),
            _ => None,
        };
        if let Some(w) = wrong {
            out.push((Kind::WrongType, name.clone(), Some(w)));
        }
        for (kind, value) in scalar_breaks(field, false) {
            out.push((kind, name.clone(), Some(value)));
        }
    }
    out
}

fn build(
    op: &Operation,
    broken_param: Option<(usize, ParamValue)>,
    body: BodyCase,
    kind: Kind,
    target: String,
) -> Case {
    let value_of = |i: usize, p: &Param| -> ParamValue {
        match &broken_param {
            Some((j, v)) if *j == i => v.clone(),
            _ if p.required => Some(text(&valid(&p.shape))),
            _ => None,
        }
    };
    let mut path = op.route.clone();
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    let mut headers = Vec::new();
    for (i, p) in op.params.iter().enumerate() {
        let Some(v) = value_of(i, p) else { continue };
        match p.location {
            Location::Path => {
                let encoded = percent_encoding::utf8_percent_encode(&v, SEGMENT).to_string();
                path = path.replace(&format!("{{{}}}", p.name), &encoded);
            }
            Location::Query => {
                query.append_pair(&p.name, &v);
            }
            Location::Header => headers.push((p.name.clone(), v)),
        }
    }
    let query = query.finish();
    if !query.is_empty() {
        path = format!("{path}?{query}");
    }
    let body = match body {
        BodyCase::Valid => op.body.as_ref().and_then(|b| {
            let shape = b.json.as_ref()?;
            Some((
                b.content_type.clone(),
                serde_json::to_vec(&valid(shape)).ok()?,
            ))
        }),
        BodyCase::None => None,
        BodyCase::Json(t, v) => Some((t, serde_json::to_vec(&v).expect("JSON values serialize"))),
        BodyCase::Raw(t, bytes) => Some((t, bytes)),
    };
    Case {
        kind,
        target,
        method: op.method.clone(),
        route: op.route.clone(),
        path_and_query: path,
        headers,
        body,
    }
}

/// What a path segment must escape: everything but unreserved characters.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A value the schema accepts: the first enum member, 1 moved into the
/// bounds, a string fitted to its lengths, required object fields filled.
pub fn valid(s: &Shape) -> Value {
    if let Some(first) = s.enumeration.first() {
        return first.clone();
    }
    match s.ty {
        Some(Type::Integer | Type::Number) => {
            let (lo, hi) = bounds(s);
            number(1f64.max(lo).min(hi), s.ty == Some(Type::Integer))
        }
        Some(Type::Boolean) => json!(true),
        Some(Type::Array) => {
            let item = s.items.as_deref().map(valid).unwrap_or(json!("probe"));
            Value::Array(vec![item; s.min_items.unwrap_or(0) as usize])
        }
        Some(Type::Object) => Value::Object(
            s.properties
                .iter()
                .filter(|(name, _)| s.required.contains(name))
                .map(|(name, field)| (name.clone(), valid(field)))
                .collect(),
        ),
        _ if s.format.as_deref() == Some("uuid") => json!("00000000-0000-4000-8000-000000000001"),
        _ => json!(fit("probe", s)),
    }
}

/// The closed range a number must be in (exclusive bounds made inclusive
/// by one, which is exact for integers and safe for numbers).
fn bounds(s: &Shape) -> (f64, f64) {
    let lo = s.minimum.or(s.exclusive_minimum.map(|m| m + 1.0));
    let hi = s.maximum.or(s.exclusive_maximum.map(|m| m - 1.0));
    (lo.unwrap_or(f64::MIN), hi.unwrap_or(f64::MAX))
}

fn fit(base: &str, s: &Shape) -> String {
    let mut v = base.to_owned();
    if let Some(min) = s.min_length {
        while (v.chars().count() as u64) < min {
            v.push('x');
        }
    }
    if let Some(max) = s.max_length {
        v = v.chars().take(max as usize).collect();
    }
    v
}

fn number(n: f64, integer: bool) -> Value {
    if integer {
        json!(n as i64)
    } else {
        json!(n)
    }
}

/// A value as it goes into a URL or a header.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
