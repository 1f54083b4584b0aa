//! Store parameters: filling in a blueprint's JSON Schema defaults, validating against the
//! schema (draft 2020-12, with the `jsonschema` crate) so that every violation is listed
//! with its JSON-pointer path, and turning `--set key=value` assignments into a parameter
//! document.
//!
//! Pure functions over `serde_json::Value`; no IO, no rendering.

use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt;

/// One way the parameters break the schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParamError {
    /// JSON pointer to the offending value, e.g. `/storage/database`; empty for the
    /// parameter document itself.
    pub path: String,
    /// What is wrong, in words a person can act on.
    pub message: String,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "parameters: {}", self.message)
        } else {
            write!(f, "parameter {}: {}", self.path, self.message)
        }
    }
}

/// Every violation found, sorted by path. Never empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct ParamErrors {
    pub errors: Vec<ParamError>,
}

impl fmt::Display for ParamErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ParamErrors {
    pub fn single(path: impl Into<String>, message: impl Into<String>) -> Self {
        ParamErrors {
            errors: vec![ParamError {
                path: path.into(),
                message: message.into(),
            }],
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &ParamError> {
        self.errors.iter()
    }
}

/// Returns `params` with every missing property that has a `default` filled in, in the
/// schema's property order (unknown user keys follow, so validation can name them).
/// Nested objects without a default of their own are created so their properties'
/// defaults apply.
pub fn fill_defaults(schema: &Value, params: &Value) -> Value {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return params.clone();
    };
    let Value::Object(given) = params else {
        return params.clone();
    };
    let mut out = Map::with_capacity(props.len().max(given.len()));
    for (key, sub) in props {
        match given.get(key) {
            Some(v) => {
                out.insert(key.clone(), fill_defaults(sub, v));
            }
            None => {
                if let Some(d) = sub.get("default") {
                    out.insert(key.clone(), fill_defaults(sub, d));
                } else if is_object_schema(sub) {
                    out.insert(key.clone(), fill_defaults(sub, &Value::Object(Map::new())));
                }
            }
        }
    }
    for (key, v) in given {
        if !props.contains_key(key) {
            out.insert(key.clone(), v.clone());
        }
    }
    Value::Object(out)
}

fn is_object_schema(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("object")
        || schema.get("properties").is_some()
}

/// Checks `instance` (defaults already filled) against the compiled schema and lists every
/// violation. `schema` is the same schema as JSON, used to word the messages.
pub fn check(
    validator: &jsonschema::Validator,
    schema: &Value,
    instance: &Value,
) -> Result<(), ParamErrors> {
    let mut errors = Vec::new();
    for err in validator.iter_errors(instance) {
        let path = err.instance_path().as_str().to_owned();
        let schema_path = err.schema_path().as_str().to_owned();
        let owner = parent_pointer(&schema_path);
        let owner_schema = schema.pointer(owner);
        match err.kind() {
            jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
                let known = owner_schema
                    .and_then(|s| s.get("properties"))
                    .and_then(Value::as_object)
                    .map(|p| p.keys().cloned().collect::<Vec<_>>().join(", "))
                    .unwrap_or_default();
                for name in unexpected {
                    errors.push(ParamError {
                        path: format!("{path}/{}", escape_pointer(name)),
                        message: if known.is_empty() {
                            format!("unknown parameter `{name}`; this object takes none")
                        } else {
                            format!("unknown parameter `{name}`; known here: {known}")
                        },
                    });
                }
            }
            kind => {
                let mut message = err.to_string();
                let wants_hint = matches!(
                    kind,
                    jsonschema::error::ValidationErrorKind::Pattern { .. }
                        | jsonschema::error::ValidationErrorKind::Format { .. }
                );
                if wants_hint
                    && let Some(desc) = owner_schema
                        .and_then(|s| s.get("description"))
                        .and_then(Value::as_str)
                {
                    message.push_str(" (expected: ");
                    message.push_str(desc.trim_end_matches('.'));
                    message.push(')');
                }
                errors.push(ParamError { path, message });
            }
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    errors.sort_by(|a, b| a.path.cmp(&b.path).then_with(|| a.message.cmp(&b.message)));
    errors.dedup();
    Err(ParamErrors { errors })
}

fn parent_pointer(pointer: &str) -> &str {
    match pointer.rfind('/') {
        Some(i) => &pointer[..i],
        None => "",
    }
}

fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Builds a parameter document from `key=value` assignments, like `helm --set`: dotted
/// keys nest (`storage.database=20Gi`), values are read as YAML scalars (`2` is a number,
/// `true` a boolean, anything that is not a scalar stays a string), later assignments win.
/// Returns one message per malformed assignment.
pub fn from_assignments<S: AsRef<str>>(assignments: &[S]) -> Result<Value, Vec<String>> {
    let mut root = Map::new();
    let mut problems = Vec::new();
    for a in assignments {
        let a = a.as_ref();
        let Some((key, raw)) = a.split_once('=') else {
            problems.push(format!(
                "`--set {a}` has no `=`; write it as key=value, e.g. plan=large"
            ));
            continue;
        };
        let segments: Vec<&str> = key.split('.').collect();
        if segments.iter().any(|s| s.trim().is_empty()) {
            problems.push(format!(
                "`--set {a}`: the key `{key}` has an empty part; write dotted keys like storage.database"
            ));
            continue;
        }
        if let Err(msg) = assign(&mut root, &segments, scalar(raw)) {
            problems.push(format!("`--set {a}`: {msg}"));
        }
    }
    if problems.is_empty() {
        Ok(Value::Object(root))
    } else {
        Err(problems)
    }
}

/// A `--set` value: a YAML null, boolean or number becomes one; a quoted YAML string
/// (`'2'`, `"true"`) is that string; anything else is the text exactly as typed. (Read
/// as YAML, `#x` would be a comment — null — and a line separator inside a value would
/// fold into a space.)
fn scalar(raw: &str) -> Value {
    let quoted = raw.starts_with(['\'', '"']);
    match serde_yaml::from_str::<Value>(raw) {
        Ok(v @ (Value::Bool(_) | Value::Number(_))) => v,
        Ok(Value::Null) if matches!(raw.trim(), "null" | "Null" | "NULL" | "~") => Value::Null,
        Ok(v @ Value::String(_)) if quoted => v,
        _ => Value::String(raw.to_owned()),
    }
}

fn assign(map: &mut Map<String, Value>, segments: &[&str], value: Value) -> Result<(), String> {
    let (first, rest) = segments.split_first().expect("at least one segment");
    if rest.is_empty() {
        if matches!(map.get(*first), Some(Value::Object(_))) {
            return Err(format!(
                "`{first}` was already given nested keys; it cannot also be a value"
            ));
        }
        map.insert((*first).to_owned(), value);
        return Ok(());
    }
    let entry = map
        .entry((*first).to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    match entry {
        Value::Object(inner) => assign(inner, rest, value),
        _ => Err(format!(
            "`{first}` was already given a value; it cannot also have nested keys"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "plan": {"type": "string", "enum": ["small", "large"], "default": "small"},
                "replicas": {"type": "integer", "minimum": 1, "default": 1},
                "email": {"type": "string", "pattern": "^[^@]+@[^@]+$", "default": "a@b",
                          "description": "An email address."},
                "storage": {
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {
                        "database": {"type": "string", "default": "10Gi"},
                        "content": {"type": "string", "default": "5Gi"}
                    }
                }
            }
        })
    }

    fn validate(params: Value) -> Result<Value, ParamErrors> {
        let s = schema();
        let v = jsonschema::draft202012::new(&s).unwrap();
        let filled = fill_defaults(&s, &params);
        check(&v, &s, &filled).map(|()| filled)
    }

    #[test]
    fn defaults_fill_nested_objects_in_schema_order() {
        let got = validate(json!({"storage": {"content": "1Gi"}, "plan": "large"})).unwrap();
        assert_eq!(
            serde_json::to_string(&got).unwrap(),
            r#"{"plan":"large","replicas":1,"email":"a@b","storage":{"database":"10Gi","content":"1Gi"}}"#
        );
    }

    #[test]
    fn every_violation_is_listed_with_its_path() {
        let errs = validate(json!({
            "plan": "huge",
            "replicas": "two",
            "email": "nope",
            "colour": "red",
            "storage": {"database": 10, "size": "1Gi"}
        }))
        .unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/colour",
                "/email",
                "/plan",
                "/replicas",
                "/storage/database",
                "/storage/size"
            ],
            "{errs}"
        );
        let text = errs.to_string();
        assert!(
            text.contains("unknown parameter `colour`; known here: plan, replicas, email, storage"),
            "{text}"
        );
        assert!(
            text.contains("unknown parameter `size`; known here: database, content"),
            "{text}"
        );
        assert!(text.contains("(expected: An email address)"), "{text}");
        assert!(text.contains(r#""two" is not of type "integer""#), "{text}");
        assert!(text.contains("10 is not of type \"string\""), "{text}");
        assert_eq!(text.lines().count(), 6);
    }

    #[test]
    fn assignments_nest_and_read_yaml_scalars() {
        let v = from_assignments(&[
            "plan=large",
            "replicas=2",
            "storage.database=20Gi",
            "flag=true",
            "title=a: b",
            "empty=",
            "list=[1, 2]",
            "none=~",
            "text='2'",
        ])
        .unwrap();
        assert_eq!(
            v,
            json!({"plan": "large", "replicas": 2, "storage": {"database": "20Gi"},
                   "flag": true, "title": "a: b", "empty": "", "list": "[1, 2]",
                   "none": null, "text": "2"})
        );
    }

    #[test]
    fn assigned_text_is_kept_as_typed() {
        for raw in [
            "#not-a-comment",
            "a #b",
            "a\u{2028}b",
            "a\u{85}b",
            "line\nbreak",
            "trailing ",
            " leading",
            "it's",
            "- item",
        ] {
            let v = from_assignments(&[format!("x={raw}")]).unwrap();
            assert_eq!(v, json!({"x": raw}), "{raw:?}");
        }
    }

    #[test]
    fn malformed_assignments_are_each_reported() {
        let errs = from_assignments(&["noequals", "a..b=1", "x=1", "x.y=2"]).unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].contains("has no `=`"));
        assert!(errs[1].contains("empty part"));
        assert!(errs[2].contains("already given a value"));
    }
}
