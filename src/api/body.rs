//! JSON request bodies with errors that name the field: [`JsonBody<T>`] documents the
//! body with `T`'s schema (like poem-openapi's `Json<T>`) but reads it itself, so that
//! a body that is not JSON is a 400, and unknown fields, missing fields, values of the
//! wrong type and `T`'s own checks ([`CheckBody`]) are a 422 listing every refused
//! field. The body is read up to the configured size limit (413 beyond), and must
//! arrive within [`BODY_READ_TIMEOUT`] (408 after).
//!
//! Owns parsing only; handlers decide what valid input means beyond the schema.

use super::problem::{ApiError, FieldError};
use super::state::BodyLimit;
use poem::{Request, RequestBody};
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{ParseFromJSON, Type};
use serde_json::Value;
use tokio::io::AsyncReadExt as _;

/// Checks a request object beyond its schema's shape (e.g. a name's rules, with a
/// better message than a pattern gives). Returns every refused field.
pub trait CheckBody {
    fn check(_value: &serde_json::Map<String, Value>) -> Vec<FieldError> {
        Vec::new()
    }
}

/// A JSON request body of type `T`.
pub struct JsonBody<T>(pub T);

impl<T: Type + Send> Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = "application/json";

    fn check_content_type(content_type: &str) -> bool {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        essence == "application/json"
            || (essence.starts_with("application/") && essence.ends_with("+json"))
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Type + ParseFromJSON + CheckBody + Send> ParsePayload for JsonBody<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let limit = request
            .data::<BodyLimit>()
            .map(|l| l.0)
            .unwrap_or(64 * 1024);
        let bytes = read_limited(body, limit).await?;
        Ok(JsonBody(parse::<T>(&bytes)?))
    }
}

poem_openapi::impl_apirequest_for_payload!(JsonBody<T>, T: Type + ParseFromJSON + CheckBody + Send);

/// How long a request body may take to arrive. Bodies are small (64 KiB by default):
/// one that trickles in for longer is a client holding a connection and a task open.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

async fn read_limited(body: &mut RequestBody, limit: usize) -> Result<Vec<u8>, ApiError> {
    read_limited_within(body, limit, BODY_READ_TIMEOUT).await
}

async fn read_limited_within(
    body: &mut RequestBody,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Vec<u8>, ApiError> {
    let body = body
        .take()
        .map_err(|_| ApiError::bad_request("the request body is missing", Vec::new()))?;
    let mut reader = body.into_async_read().take(limit as u64 + 1);
    let mut bytes = Vec::new();
    tokio::time::timeout(timeout, reader.read_to_end(&mut bytes))
        .await
        .map_err(|_| ApiError::body_timeout(timeout))?
        .map_err(|e| ApiError::bad_request(format!("could not read the body: {e}"), Vec::new()))?;
    if bytes.len() > limit {
        // Read what the client is still sending (bounded) so it reads the 413 instead
        // of a connection reset mid-upload.
        drain(reader.into_inner()).await;
        return Err(ApiError::payload_too_large(limit));
    }
    Ok(bytes)
}

/// Reads and throws away up to 1 MiB of a refused body for at most 2 s: a client
/// that is still sending then gets the answer rather than a reset connection, and a
/// client sending more than that cannot hold the server.
pub(crate) async fn drain(reader: impl tokio::io::AsyncRead + Unpin) {
    let mut reader = reader.take(1 << 20);
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        tokio::io::copy(&mut reader, &mut tokio::io::sink()),
    )
    .await;
}

/// Parses and checks a body: 400 when it is not a JSON object, 422 with every refused
/// field otherwise.
pub fn parse<T: Type + ParseFromJSON + CheckBody>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "the request body is empty; send a JSON object",
            Vec::new(),
        ));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(
            format!("the request body is not valid JSON: {e}"),
            vec![FieldError {
                field: String::new(),
                message: e.to_string(),
            }],
        )
    })?;
    let Value::Object(object) = value else {
        return Err(ApiError::bad_request(
            format!(
                "the request body must be a JSON object, not {}",
                json_kind(&value)
            ),
            Vec::new(),
        ));
    };
    let mut errors = shape_errors::<T>(&object);
    if errors.is_empty() {
        errors = T::check(&object);
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    T::parse_from_json(Some(Value::Object(object))).map_err(|e| {
        let message = e.into_message();
        // poem-openapi names the field in validator failures: "field `x` verification
        // failed. ...".
        let field = message
            .split_once("field `")
            .and_then(|(_, rest)| rest.split_once('`'))
            .map(|(f, _)| f.to_owned())
            .unwrap_or_default();
        ApiError::field(field, message)
    })
}

/// Unknown members, missing required members and members of the wrong JSON type,
/// according to `T`'s schema.
fn shape_errors<T: Type>(object: &serde_json::Map<String, Value>) -> Vec<FieldError> {
    let mut registry = Registry::new();
    T::register(&mut registry);
    let schema = match T::schema_ref() {
        MetaSchemaRef::Reference(name) => registry.schemas.get(&name).cloned(),
        MetaSchemaRef::Inline(schema) => Some(*schema),
    };
    let Some(schema) = schema else {
        return Vec::new();
    };
    let allowed: Vec<&str> = schema.properties.iter().map(|(name, _)| *name).collect();
    let mut errors = Vec::new();
    for key in object.keys() {
        if !allowed.contains(&key.as_str()) {
            errors.push(FieldError {
                field: key.clone(),
                message: format!("unknown field; allowed fields: {}", allowed.join(", ")),
            });
        }
    }
    for required in &schema.required {
        if !object.contains_key(*required) {
            errors.push(FieldError {
                field: (*required).to_owned(),
                message: "is required".into(),
            });
        }
    }
    for (name, prop) in &schema.properties {
        let Some(value) = object.get(*name) else {
            continue;
        };
        let expected = match prop {
            MetaSchemaRef::Inline(s) => s.ty,
            MetaSchemaRef::Reference(r) => registry
                .schemas
                .get(r)
                .map(|s: &MetaSchema| s.ty)
                .unwrap_or(""),
        };
        let optional = !schema.required.contains(name);
        if value.is_null() && optional {
            continue;
        }
        let ok = match expected {
            "string" => value.is_string(),
            "object" => value.is_object(),
            "array" => value.is_array(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            _ => true,
        };
        if !ok {
            errors.push(FieldError {
                field: (*name).to_owned(),
                message: format!(
                    "must be {} {expected}, not {}",
                    article(expected),
                    json_kind(value)
                ),
            });
        }
    }
    errors
}

fn article(kind: &str) -> &'static str {
    if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::dto::{CreateStoreRequest, LoginRequest};

    #[tokio::test]
    async fn a_body_that_trickles_in_is_cut_off_with_408() {
        // The sender stays open and sends part of a body, never the rest.
        let (mut tx, rx) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut tx, b"{\"name\":")
            .await
            .unwrap();
        let mut body = RequestBody::new(poem::Body::from_async_read(rx));
        let started = std::time::Instant::now();
        let e = read_limited_within(&mut body, 1024, std::time::Duration::from_millis(100))
            .await
            .unwrap_err();
        assert_eq!(e.status.as_u16(), 408);
        assert!(e.to_string().contains("did not arrive within 100ms"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        drop(tx);
        // A whole body arrives within the time.
        let mut body = RequestBody::new(poem::Body::from_string("{}".into()));
        assert_eq!(read_limited(&mut body, 1024).await.unwrap(), b"{}");
    }

    #[test]
    fn malformed_json_is_400() {
        let e = parse::<CreateStoreRequest>(b"{\"name\":").err().unwrap();
        assert_eq!(e.status.as_u16(), 400);
        let e = parse::<CreateStoreRequest>(b"[1]").err().unwrap();
        assert_eq!(e.status.as_u16(), 400);
        let e = parse::<CreateStoreRequest>(b"").err().unwrap();
        assert_eq!(e.status.as_u16(), 400);
    }

    #[test]
    fn unknown_missing_and_mistyped_fields_are_named() {
        let e = parse::<CreateStoreRequest>(br#"{"name":"a","engine":"x","user_id":"u"}"#)
            .err()
            .unwrap();
        assert_eq!(e.status.as_u16(), 422);
        assert_eq!(e.errors[0].field, "user_id");
        assert!(e.errors[0].message.contains("unknown field"));
        let e = parse::<CreateStoreRequest>(br#"{"name":1}"#).err().unwrap();
        let fields: Vec<_> = e.errors.iter().map(|f| f.field.as_str()).collect();
        assert!(fields.contains(&"engine"), "{fields:?}");
        assert!(fields.contains(&"name"), "{fields:?}");
        let e = parse::<CreateStoreRequest>(br#"{"name":"a","engine":"x","params":[]}"#)
            .err()
            .unwrap();
        assert_eq!(e.errors[0].field, "params");
        let e = parse::<LoginRequest>(br#"{"email":"a@b.c"}"#)
            .err()
            .unwrap();
        assert_eq!(e.errors[0].field, "password");
    }

    #[test]
    fn hostile_names_are_refused_with_the_field() {
        for name in [
            "Shop",
            "a b",
            "-a",
            "a-",
            "ünï",
            "a;rm -rf",
            &"a".repeat(41),
            "",
        ] {
            let body = serde_json::json!({"name": name, "engine": "woocommerce"}).to_string();
            let e = parse::<CreateStoreRequest>(body.as_bytes()).err().unwrap();
            assert_eq!(e.status.as_u16(), 422, "{name}");
            assert_eq!(e.errors[0].field, "name", "{name}");
        }
        let ok = parse::<CreateStoreRequest>(br#"{"name":"shop-1","engine":"woocommerce"}"#);
        assert!(ok.is_ok());
    }
}
