//! The OpenAPI 3.1 document of the served API: paths from the route table, body schemas from
//! the `ferrite` types (schemars, JSON Schema 2020-12 as OpenAPI 3.1 uses). Served at
//! `GET /openapi.json`, printed by `ferrite openapi`, and committed as
//! `crates/ferrite/openapi.json` (a test fails when that file is stale).

use crate::ErrorBody;
use schemars::generate::SchemaSettings;
use schemars::SchemaGenerator;
use serde_json::{json, Map, Value};

use super::routes::{Route, API_PREFIXES, ROUTES};

/// The document, as JSON.
pub fn document() -> Value {
    let mut generator = SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .into_generator();
    let mut paths = Map::new();
    for r in ROUTES {
        let path = if r.api { format!("{}{}", API_PREFIXES[0], r.path) } else { r.path.to_string() };
        let item = paths.entry(path).or_insert_with(|| json!({}));
        item[r.method.openapi_key()] = operation(r, &mut generator);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ferrite",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!(
                "OpenAI-compatible inference API. Every `{}` path is also served under `{}`. When the server has API \
                 keys, `{}` paths need `Authorization: Bearer KEY`.",
                API_PREFIXES[0], API_PREFIXES[1], API_PREFIXES[0]
            ),
        },
        "paths": paths,
        "components": {
            "schemas": generator.take_definitions(true),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    })
}

/// The document as committed: pretty JSON, keys sorted, with a final newline.
pub fn document_text() -> String {
    let mut text = serde_json::to_string_pretty(&sorted(document())).unwrap_or_default();
    text.push('\n');
    text
}

/// `v` with every object's keys in sorted order, so the text does not depend on whether some
/// crate in the build enabled serde_json's `preserve_order` (feature unification).
fn sorted(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

fn operation(r: &Route, generator: &mut SchemaGenerator) -> Value {
    let error = Value::from(generator.subschema_for::<ErrorBody>());
    let error_json = json!({"content": {"application/json": {"schema": error}}});
    let ok = match (r.response, r.stream) {
        (Some(body), None) => {
            json!({"description": "Success.", "content": {"application/json": {"schema": Value::from(body(generator))}}})
        }
        (Some(body), Some(chunk)) => json!({
            "description": "Success: one JSON body; with `stream: true`, server-sent events instead: one \
                            `data: {chunk}` event per chunk, a `data: {\"error\": ...}` event on a failure, then \
                            `data: [DONE]`.",
            "content": {
                "application/json": {"schema": Value::from(body(generator))},
                "text/event-stream": {"schema": Value::from(chunk(generator))},
            },
        }),
        (None, _) => json!({"description": "Success.", "content": {"text/plain": {"schema": {"type": "string"}}}}),
    };
    let mut responses = json!({"200": ok});
    if r.api {
        responses["401"] = json!({"description": "Missing or wrong API key."});
        responses["401"]["content"] = error_json["content"].clone();
    }
    if r.request.is_some() || r.path.contains("{id}") {
        responses["400"] = json!({"description": "Invalid request (bad JSON, unknown field, out-of-range value)."});
        responses["404"] = json!({"description": "Unknown model (`model_not_found`)."});
        responses["400"]["content"] = error_json["content"].clone();
        responses["404"]["content"] = error_json["content"].clone();
    }
    if r.request.is_some() {
        responses["503"] = json!({"description": "The engine's queue is full (`overloaded`)."});
        responses["503"]["content"] = error_json["content"].clone();
    }
    let mut op = json!({"operationId": r.operation_id, "summary": r.summary, "responses": responses});
    if let Some(body) = r.request {
        op["requestBody"] =
            json!({"required": true, "content": {"application/json": {"schema": Value::from(body(generator))}}});
    }
    if r.path.contains("{id}") {
        op["parameters"] = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}]);
    }
    if r.api {
        op["security"] = json!([{}, {"bearer": []}]);
    }
    op
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The command that rewrites the committed document.
    const REGENERATE: &str = "cargo run -p ferrite-server -- openapi > crates/ferrite/openapi.json";

    /// The committed document must be what the code generates.
    #[test]
    fn committed_openapi_json_is_current() {
        let committed = include_str!("../../openapi.json");
        assert!(
            committed == document_text(),
            "crates/ferrite/openapi.json is stale; regenerate it with\n    {REGENERATE}"
        );
    }

    #[test]
    fn every_route_is_documented() {
        let doc = document();
        for r in ROUTES {
            let path = if r.api { format!("/v1{}", r.path) } else { r.path.to_string() };
            assert!(doc["paths"][&path][r.method.openapi_key()].is_object(), "{path}");
        }
        for name in ["ChatCompletionRequest", "ChatCompletionChunk", "CompletionResponse", "ErrorBody", "Usage"] {
            assert!(doc["components"]["schemas"][name].is_object(), "{name}");
        }
    }
}
