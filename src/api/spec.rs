//! The OpenAPI document: the four API areas combined in one `OpenApiService` ("Storeplane
//! API", the crate's version, server `/`), and the few things poem-openapi cannot say,
//! added in one place after generation ([`spec_json`]): OpenAPI links from
//! `createStore` to the operations on the new store (for stateful testing and
//! generated clients), `nullable` on the fields that can be `null`, and conventional
//! capitalisation of header names.
//!
//! `storeplane openapi` prints [`spec_json`]; `openapi/openapi.json` is its committed
//! copy, and a test fails when they differ. Must not be edited by hand.

use super::blueprints::BlueprintsApi;
use super::session::SessionApi;
use super::stores::StoresApi;
use super::system::SystemApi;
use poem_openapi::{ExtraHeader, OpenApiService, Tags};
use serde_json::{Value, json};
use std::collections::HashMap;

#[derive(Tags)]
pub enum ApiTags {
    /// Stores: create, list, read, delete, retry, and follow their progress.
    Stores,
    /// Engines a store can be built from, with their parameters' JSON Schema.
    Blueprints,
    /// Signing in and out; the signed-in account.
    Auth,
    /// Liveness and readiness probes.
    System,
}

pub type Apis = (StoresApi, BlueprintsApi, SessionApi, SystemApi);

const DESCRIPTION: &str = "Storeplane provisions isolated e-commerce stores (WooCommerce, \
Medusa) onto Kubernetes. Sign in with `POST /api/auth/login` and send the token as \
`Authorization: Bearer <token>`.\n\n\
Errors are RFC 9457 problem details (`application/problem+json`) with `type`, `title`, \
`status`, `detail`, the `request_id`, and for validation problems `errors`: every refused \
field with the reason.\n\n\
`/api` requests are rate limited per client IP (and store creation and sign-in further); \
limited responses carry `RateLimit` and `RateLimit-Policy` \
(draft-ietf-httpapi-ratelimit-headers-09) and a refusal is a 429 with `Retry-After`.\n\n\
Lists are paginated with keyset cursors: pass a page's `next_cursor` to get the next page.";

/// The service, with the operations of every area.
pub fn service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (StoresApi, BlueprintsApi, SessionApi, SystemApi),
        "Storeplane API",
        env!("CARGO_PKG_VERSION"),
    )
    .server("/")
    .description(DESCRIPTION)
    .license(poem_openapi::LicenseObject::new("Apache-2.0"))
    .extra_response_header::<String, _>(ExtraHeader::new("X-Request-Id").description(
        "The request's id (a client's own `X-Request-Id` is kept when it is plain); the \
         server's log lines of the request carry it.",
    ))
    .extra_response_header::<Option<String>, _>(ExtraHeader::new("RateLimit").description(
        "On rate-limited routes: `\"<policy>\";r=<remaining>;t=<seconds until the quota is \
         full again>` for each policy that applied.",
    ))
    .extra_response_header::<Option<String>, _>(
        ExtraHeader::new("RateLimit-Policy").description(
            "On rate-limited routes: `\"<policy>\";q=<quota>;w=<window in seconds>` for each \
         policy that applied.",
        ),
    )
}

/// Headers named as they are usually written.
const HEADER_NAMES: &[&str] = &[
    "X-Request-Id",
    "RateLimit",
    "RateLimit-Policy",
    "Retry-After",
    "WWW-Authenticate",
    "Location",
];

/// Fields that are `null` when they have no value.
const NULLABLE: &[(&str, &str)] = &[
    ("Store", "error_message"),
    ("StoreList", "next_cursor"),
    ("EventList", "next_cursor"),
];

/// The spec as JSON, with the additions poem-openapi cannot express; stable key order
/// and a trailing newline.
pub fn spec_json() -> String {
    postprocess(&service().spec())
}

fn postprocess(raw: &str) -> String {
    let mut spec: Value = match serde_json::from_str(raw) {
        Ok(v) => v,
        Err(_) => return format!("{raw}\n"),
    };
    if let Some(paths) = spec.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut().filter_map(Value::as_object_mut) {
            for op in item.values_mut().filter_map(Value::as_object_mut) {
                let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                    continue;
                };
                for resp in responses.values_mut().filter_map(Value::as_object_mut) {
                    if let Some(headers) = resp.get_mut("headers").and_then(Value::as_object_mut) {
                        let renamed: Vec<(String, Value)> = std::mem::take(headers)
                            .into_iter()
                            .map(|(k, v)| {
                                let name = HEADER_NAMES
                                    .iter()
                                    .find(|h| h.eq_ignore_ascii_case(&k))
                                    .map(|h| (*h).to_owned())
                                    .unwrap_or(k);
                                (name, v)
                            })
                            .collect();
                        headers.extend(renamed);
                    }
                }
            }
        }
    }
    if let Some(created) = spec.pointer_mut("/paths/~1api~1stores/post/responses/201")
        && let Some(created) = created.as_object_mut()
    {
        let by_id = |op: &str, description: &str| {
            json!({
                "operationId": op,
                "parameters": {"id": "$response.body#/id"},
                "description": description,
            })
        };
        created.insert(
            "links".into(),
            json!({
                "GetStore": by_id("getStore", "Read the new store by its `id`."),
                "DeleteStore": by_id("deleteStore", "Delete the new store by its `id`."),
                "ListStoreEvents": by_id("listStoreEvents", "The new store's event log."),
                "RetryStore": by_id("retryStore", "Retry the new store when it failed."),
            }),
        );
    }
    if let Some(schemas) = spec.pointer_mut("/components/schemas") {
        plain_refs(schemas);
    }
    // Describe each server-sent event of the stream (OpenAPI 3.2 reads the schema of a
    // `text/event-stream` per event; `data` holds JSON of the named schema).
    if let Some(schema) = spec.pointer_mut(
        "/paths/~1api~1stores~1{id}~1events~1stream/get/responses/200/content/text~1event-stream/schema",
    ) {
        let event = |name: &str, data: &str, with_id: bool| {
            let mut required = vec!["event", "data"];
            let mut properties = json!({
                "event": {"type": "string", "enum": [name]},
                "data": {
                    "type": "string",
                    "description": format!("JSON: a {data}."),
                    // OpenAPI 3.0 has no `contentMediaType`/`contentSchema`: say it
                    // with extensions so strict validators accept the document.
                    "x-content-media-type": "application/json",
                    "x-content-schema": {"$ref": format!("#/components/schemas/{data}")},
                },
            });
            if with_id {
                required.push("id");
                properties["id"] = json!({
                    "type": "string",
                    "description": "The event's id: send it as `Last-Event-ID` to resume.",
                });
            }
            json!({"type": "object", "required": required, "properties": properties})
        };
        *schema = json!({
            "description": "One server-sent event: `store_event` (an Event, with its id), \
                `store` (the Store, after a change) or `deleted` (then the stream ends).",
            "oneOf": [
                event("store_event", "Event", true),
                event("store", "Store", false),
                event("deleted", "StoreDeleted", false),
            ],
        });
    }
    // Request bodies refuse unknown fields (no mass assignment): say so.
    for name in request_schemas(&spec) {
        if let Some(schema) = spec
            .pointer_mut(&format!("/components/schemas/{name}"))
            .and_then(Value::as_object_mut)
        {
            schema.insert("additionalProperties".into(), Value::Bool(false));
        }
    }
    for (schema, field) in NULLABLE {
        if let Some(prop) = spec
            .pointer_mut(&format!("/components/schemas/{schema}/properties/{field}"))
            .and_then(Value::as_object_mut)
        {
            prop.insert("nullable".into(), Value::Bool(true));
        }
    }
    let mut out = serde_json::to_string_pretty(&spec).unwrap_or_else(|_| raw.to_owned());
    out.push('\n');
    out
}

/// Names of the schemas used as request bodies.
fn request_schemas(spec: &Value) -> Vec<String> {
    let mut names = Vec::new();
    let paths = spec.get("paths").and_then(Value::as_object);
    for item in paths.into_iter().flat_map(|p| p.values()) {
        for op in item.as_object().into_iter().flat_map(|m| m.values()) {
            let content = op
                .pointer("/requestBody/content")
                .and_then(Value::as_object);
            for media in content.into_iter().flat_map(|c| c.values()) {
                if let Some(name) = media
                    .pointer("/schema/$ref")
                    .and_then(Value::as_str)
                    .and_then(|r| r.strip_prefix("#/components/schemas/"))
                    && !names.iter().any(|n| n == name)
                {
                    names.push(name.to_owned());
                }
            }
        }
    }
    names
}

/// poem-openapi documents a field of a named type as `allOf: [{$ref}, {description}]`;
/// generators (openapi-python-client among them) cannot take `allOf` of an enum. Such a
/// field becomes `{$ref, description}`.
fn plain_refs(node: &mut Value) {
    match node {
        Value::Object(map) => {
            let reference = match map.get("allOf").and_then(Value::as_array) {
                Some(all) if all.len() == 2 => {
                    let extra_is_description = all[1]
                        .as_object()
                        .is_some_and(|o| o.keys().all(|k| k == "description"));
                    all[0].get("$ref").filter(|_| extra_is_description).cloned()
                }
                _ => None,
            };
            if let Some(reference) = reference {
                map.remove("allOf");
                map.insert("$ref".into(), reference);
            }
            for v in map.values_mut() {
                plain_refs(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(plain_refs),
        _ => {}
    }
}

/// operationId → path template (`getStore` → `/api/stores/{id}`), for metrics labels.
pub fn route_templates(spec: &str) -> HashMap<String, String> {
    let mut routes = HashMap::new();
    let Ok(spec) = serde_json::from_str::<Value>(spec) else {
        return routes;
    };
    if let Some(paths) = spec.get("paths").and_then(Value::as_object) {
        for (path, item) in paths {
            for op in item.as_object().into_iter().flat_map(|m| m.values()) {
                if let Some(id) = op.get("operationId").and_then(Value::as_str) {
                    routes.insert(id.to_owned(), path.clone());
                }
            }
        }
    }
    routes
}

/// Path template → its methods (`/api/stores/{id}` → `GET, DELETE`), for the `Allow`
/// header of 405 responses.
pub fn route_methods(spec: &str) -> Vec<(String, String)> {
    let Ok(spec) = serde_json::from_str::<Value>(spec) else {
        return Vec::new();
    };
    let Some(paths) = spec.get("paths").and_then(Value::as_object) else {
        return Vec::new();
    };
    paths
        .iter()
        .map(|(path, item)| {
            let methods: Vec<String> = item
                .as_object()
                .map(|m| m.keys().map(|k| k.to_ascii_uppercase()).collect())
                .unwrap_or_default();
            (path.clone(), methods.join(", "))
        })
        .collect()
}

/// Whether a concrete path matches a template with `{param}` segments.
pub fn matches_template(template: &str, path: &str) -> bool {
    let (mut t, mut p) = (template.split('/'), path.split('/'));
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(ts), Some(ps)) if ts.starts_with('{') && ts.ends_with('}') && !ps.is_empty() => {}
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn templates_match_concrete_paths() {
        assert!(matches_template("/api/stores/{id}", "/api/stores/abc"));
        assert!(!matches_template(
            "/api/stores/{id}",
            "/api/stores/abc/events"
        ));
        assert!(!matches_template("/api/stores/{id}", "/api/stores/"));
        assert!(matches_template("/api/stores", "/api/stores"));
        let methods = route_methods(&spec_json());
        let (_, m) = methods
            .iter()
            .find(|(p, _)| p == "/api/stores/{id}")
            .unwrap();
        assert_eq!(m, "GET, DELETE");
    }

    use super::*;

    #[test]
    fn spec_has_every_operation_with_links_and_problem_responses() {
        let spec: Value = serde_json::from_str(&spec_json()).unwrap();
        let routes = route_templates(&spec_json());
        for op in [
            "listStores",
            "getStore",
            "createStore",
            "deleteStore",
            "retryStore",
            "listStoreEvents",
            "streamStoreEvents",
            "listBlueprints",
            "getBlueprint",
            "login",
            "logout",
            "getMe",
            "health",
            "ready",
        ] {
            assert!(routes.contains_key(op), "operation {op} is missing");
        }
        assert_eq!(routes["getStore"], "/api/stores/{id}");
        let created = &spec["paths"]["/api/stores"]["post"]["responses"];
        assert!(created["201"]["links"]["GetStore"].is_object());
        assert!(created["201"]["headers"]["Location"].is_object());
        assert!(created["409"]["content"]["application/problem+json"].is_object());
        assert!(created["429"]["headers"]["Retry-After"].is_object());
        assert_eq!(
            spec["components"]["schemas"]["Store"]["properties"]["error_message"]["nullable"],
            true
        );
        assert!(spec["components"]["securitySchemes"]["BearerAuth"].is_object());
        for body in ["CreateStoreRequest", "LoginRequest"] {
            assert_eq!(
                spec["components"]["schemas"][body]["additionalProperties"],
                false
            );
        }
        assert!(
            !spec_json().contains("\"allOf\""),
            "fields of named types are plain $refs"
        );
    }
}
