//! The app's OpenAPI document, read into the little the probe needs: every
//! operation with its parameters and JSON body, each as a [`Shape`] with
//! `$ref`s resolved.
//!
//! oas3 models OpenAPI 3.1, which FastAPI serves. A 3.0 document differs
//! (for what the probe reads) only in `exclusiveMinimum`/`exclusiveMaximum`,
//! booleans beside `minimum`/`maximum` in 3.0 and numbers in 3.1, so those
//! are rewritten to the 3.1 form before oas3 sees the document.

use oas3::spec::{
    ObjectOrReference, ObjectSchema, Parameter, ParameterIn, RequestBody, Schema, SchemaType,
    SchemaTypeSet,
};
use oas3::Spec;
use serde_json::Value;

use crate::ProbeError;

/// One operation: a method on an OpenAPI path template.
#[derive(Clone, Debug, PartialEq)]
pub struct Operation {
    /// Upper case: `GET`.
    pub method: String,
    /// The path template as the schema lists it: `/items/{item_id}`.
    pub route: String,
    /// Path, query and header parameters, in the schema's order.
    pub params: Vec<Param>,
    pub body: Option<Body>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    Path,
    Query,
    Header,
}

impl Location {
    pub fn as_str(self) -> &'static str {
        match self {
            Location::Path => "path",
            Location::Query => "query",
            Location::Header => "header",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: String,
    pub location: Location,
    pub required: bool,
    pub shape: Shape,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Body {
    pub required: bool,
    /// The first media type the schema lists (`application/json` for
    /// FastAPI's pydantic bodies).
    pub content_type: String,
    /// The body's shape when it is JSON, `None` for forms and files.
    pub json: Option<Shape>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    Integer,
    Number,
    String,
    Boolean,
    Array,
    Object,
}

/// What the probe knows of a JSON Schema: its type and the bounds it can
/// break.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Shape {
    /// `None`: any type (or one the probe does not model).
    pub ty: Option<Type>,
    pub format: Option<String>,
    pub pattern: Option<String>,
    pub minimum: Option<f64>,
    pub exclusive_minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub exclusive_maximum: Option<f64>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub enumeration: Vec<Value>,
    /// Object properties in the schema's order.
    pub properties: Vec<(String, Shape)>,
    pub required: Vec<String>,
    pub items: Option<Box<Shape>>,
    pub min_items: Option<u64>,
}

/// Nested models deeper than this are left as "any" (a model that refers to
/// itself would otherwise never end).
const MAX_DEPTH: usize = 6;

/// Every operation of the document, sorted by path then method, so that two
/// runs against the same app send the same requests in the same order.
pub fn operations(text: &str) -> Result<Vec<Operation>, ProbeError> {
    let spec = parse(text)?;
    let mut ops = Vec::new();
    for (route, method, op) in spec.operations() {
        let item = spec.paths.as_ref().and_then(|p| p.get(&route));
        let shared = item.map(|i| i.parameters.as_slice()).unwrap_or_default();
        let params = params(&spec, shared, &op.parameters)?;
        let body = match &op.request_body {
            Some(b) => Some(body(&spec, b)?),
            None => None,
        };
        ops.push(Operation {
            method: method.as_str().to_owned(),
            route,
            params,
            body,
        });
    }
    ops.sort_by(|a, b| (&a.route, &a.method).cmp(&(&b.route, &b.method)));
    Ok(ops)
}

fn parse(text: &str) -> Result<Spec, ProbeError> {
    let mut doc: Value = serde_json::from_str(text)
        .map_err(|e| ProbeError::NotOpenApi(format!("not JSON ({e})")))?;
    let version = match doc.get("openapi") {
        Some(Value::String(v)) => v.clone(),
        _ if doc.get("swagger").is_some() => {
            return Err(ProbeError::NotOpenApi(
                "a Swagger 2.0 document, not OpenAPI 3.x".into(),
            ))
        }
        _ => {
            return Err(ProbeError::NotOpenApi(
                "JSON without an `openapi` version field".into(),
            ))
        }
    };
    if !version.starts_with("3.") {
        return Err(ProbeError::NotOpenApi(format!(
            "OpenAPI version `{version}`; the probe reads 3.x"
        )));
    }
    if version.starts_with("3.0") {
        upgrade_exclusive_bounds(&mut doc);
    }
    serde_json::from_value(doc)
        .map_err(|e| ProbeError::NotOpenApi(format!("OpenAPI {version} that does not parse ({e})")))
}

/// 3.0's `exclusiveMinimum: true` beside `minimum: 5` is 3.1's
/// `exclusiveMinimum: 5` (and `false` means nothing).
fn upgrade_exclusive_bounds(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (flag, bound) in [
                ("exclusiveMinimum", "minimum"),
                ("exclusiveMaximum", "maximum"),
            ] {
                if let Some(Value::Bool(exclusive)) = map.get(flag).cloned() {
                    map.remove(flag);
                    if exclusive {
                        if let Some(b) = map.remove(bound) {
                            map.insert(flag.to_owned(), b);
                        }
                    }
                }
            }
            map.values_mut().for_each(upgrade_exclusive_bounds);
        }
        Value::Array(items) => items.iter_mut().for_each(upgrade_exclusive_bounds),
        _ => {}
    }
}

fn bad_ref(e: impl std::fmt::Display) -> ProbeError {
    ProbeError::NotOpenApi(format!(
        "a schema with a `$ref` that does not resolve ({e})"
    ))
}

/// Path-level parameters, overridden by the operation's of the same name
/// and location. Cookie parameters are not probed.
fn params(
    spec: &Spec,
    shared: &[ObjectOrReference<Parameter>],
    own: &[ObjectOrReference<Parameter>],
) -> Result<Vec<Param>, ProbeError> {
    let mut out: Vec<Param> = Vec::new();
    for p in shared.iter().chain(own) {
        let p = p.resolve(spec).map_err(bad_ref)?;
        let location = match p.location {
            ParameterIn::Path => Location::Path,
            ParameterIn::Query => Location::Query,
            ParameterIn::Header => Location::Header,
            ParameterIn::Cookie => continue,
        };
        let shape = match &p.schema {
            Some(s) => shape(spec, s, 0)?,
            None => Shape::default(),
        };
        let param = Param {
            required: location == Location::Path || p.required.unwrap_or(false),
            name: p.name,
            location,
            shape,
        };
        match out
            .iter_mut()
            .find(|o| o.name == param.name && o.location == param.location)
        {
            Some(existing) => *existing = param,
            None => out.push(param),
        }
    }
    Ok(out)
}

fn body(spec: &Spec, b: &ObjectOrReference<RequestBody>) -> Result<Body, ProbeError> {
    let b = b.resolve(spec).map_err(bad_ref)?;
    let json = b.content.iter().find(|(t, _)| is_json(t));
    let (content_type, media) = match json.or_else(|| b.content.iter().next()) {
        Some((t, m)) => (t.clone(), Some(m)),
        None => ("application/json".to_owned(), None),
    };
    let json = match media.and_then(|m| m.schema.as_ref()) {
        Some(s) if is_json(&content_type) => Some(shape(spec, s, 0)?),
        None if is_json(&content_type) => Some(Shape::default()),
        _ => None,
    };
    Ok(Body {
        required: b.required.unwrap_or(false),
        content_type,
        json,
    })
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence == "application/json" || essence.ends_with("+json")
}

fn shape(spec: &Spec, schema: &Schema, depth: usize) -> Result<Shape, ProbeError> {
    if depth > MAX_DEPTH {
        return Ok(Shape::default());
    }
    // `Schema::resolve` follows references down to an inline schema.
    match schema.resolve(spec).map_err(bad_ref)? {
        Schema::Object(o) => match *o {
            ObjectOrReference::Object(object) => object_shape(spec, &object, depth),
            ObjectOrReference::Ref { ref_path, .. } => Err(bad_ref(ref_path)),
        },
        Schema::Boolean(_) => Ok(Shape::default()),
    }
}

fn object_shape(spec: &Spec, o: &ObjectSchema, depth: usize) -> Result<Shape, ProbeError> {
    // `Optional[int]` is `anyOf: [{type: integer}, {type: null}]`, and a
    // model field is often `allOf: [{$ref}]`: the first alternative that is
    // not null stands for the whole.
    if o.schema_type.is_none() {
        for alternative in o.all_of.iter().chain(&o.any_of).chain(&o.one_of) {
            let s = shape(spec, alternative, depth + 1)?;
            if s.ty.is_some() {
                return Ok(merge_bounds(s, o));
            }
        }
    }
    let ty = o.schema_type.as_ref().and_then(main_type);
    let mut properties = Vec::new();
    for (name, s) in &o.properties {
        properties.push((name.clone(), shape(spec, s, depth + 1)?));
    }
    let items = match &o.items {
        Some(i) => Some(Box::new(shape(spec, i, depth + 1)?)),
        None => None,
    };
    Ok(merge_bounds(
        Shape {
            ty,
            format: o.format.clone(),
            pattern: o.pattern.clone(),
            enumeration: o.enum_values.clone(),
            properties,
            required: o.required.clone(),
            items,
            min_items: o.min_items,
            ..Shape::default()
        },
        o,
    ))
}

/// The bounds written beside the type (or beside an `anyOf`) apply to it.
fn merge_bounds(mut s: Shape, o: &ObjectSchema) -> Shape {
    let num = |n: &Option<serde_json::Number>| n.as_ref().and_then(serde_json::Number::as_f64);
    s.minimum = num(&o.minimum).or(s.minimum);
    s.maximum = num(&o.maximum).or(s.maximum);
    s.exclusive_minimum = num(&o.exclusive_minimum).or(s.exclusive_minimum);
    s.exclusive_maximum = num(&o.exclusive_maximum).or(s.exclusive_maximum);
    s.min_length = o.min_length.or(s.min_length);
    s.max_length = o.max_length.or(s.max_length);
    if s.enumeration.is_empty() {
        s.enumeration = o.enum_values.clone();
    }
    s
}

fn main_type(set: &SchemaTypeSet) -> Option<Type> {
    let of = |t: &SchemaType| match t {
        SchemaType::Integer => Some(Type::Integer),
        SchemaType::Number => Some(Type::Number),
        SchemaType::String => Some(Type::String),
        SchemaType::Boolean => Some(Type::Boolean),
        SchemaType::Array => Some(Type::Array),
        SchemaType::Object => Some(Type::Object),
        SchemaType::Null => None,
    };
    match set {
        SchemaTypeSet::Single(t) => of(t),
        SchemaTypeSet::Multiple(ts) => ts.iter().find_map(of),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_openapi_is_refused_with_what_was_found() {
        let err = |text: &str| operations(text).unwrap_err().to_string();
        assert!(err("{\"status\": \"ok\"}").contains("without an `openapi` version"));
        assert!(err("{\"swagger\": \"2.0\"}").contains("Swagger 2.0"));
        assert!(err("{\"openapi\": \"2.5\"}").contains("reads 3.x"));
        assert!(err("<html>").contains("not JSON"));
    }

    #[test]
    fn a_3_0_document_is_read_with_its_exclusive_bounds() {
        let doc = r#"{"openapi": "3.0.3", "info": {"title": "t", "version": "1"},
            "paths": {"/n": {"get": {"parameters": [{"name": "n", "in": "query",
            "required": true, "schema": {"type": "integer", "minimum": 0,
            "exclusiveMinimum": true, "maximum": 10}}],
            "responses": {"200": {"description": "ok"}}}}}}"#;
        let ops = operations(doc).unwrap();
        let shape = &ops[0].params[0].shape;
        assert_eq!(
            (shape.minimum, shape.exclusive_minimum, shape.maximum),
            (None, Some(0.0), Some(10.0))
        );
    }

    #[test]
    fn a_3_0_exclusive_bound_becomes_a_3_1_one() {
        let mut doc = serde_json::json!({"a": {"minimum": 1, "exclusiveMinimum": true,
            "maximum": 9, "exclusiveMaximum": false}});
        upgrade_exclusive_bounds(&mut doc);
        assert_eq!(
            doc,
            serde_json::json!({"a": {"exclusiveMinimum": 1, "maximum": 9}})
        );
    }
}
