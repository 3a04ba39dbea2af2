//! Every error a client can cause gets the right status and an OpenAI error body.

#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_error, raw, raw_post, raw_response, Server};
use serde_json::{json, Value};

const CHAT: &str = "/v1/chat/completions";
const INVALID: &str = "invalid_request_error";

fn chat(extra: Value) -> Value {
    let mut req = json!({"model": "smol", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2});
    for (k, v) in extra.as_object().unwrap() {
        req[k] = v.clone();
    }
    req
}

#[test]
fn request_errors() {
    let Some(s) = Server::smollm2("smol", &[]) else { return };
    // Not JSON, wrong type, unknown field.
    let (status, body) = s.post_text(CHAT, "{\"model\": \"smol\", ", None);
    assert_eq!(status, 400, "{body}");
    assert_error(&body, INVALID, None, None);
    let (status, body) = s.post(CHAT, &chat(json!({"temperature": "hot"})), None);
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("invalid type"), "{body}");
    let (status, body) = s.post(CHAT, &chat(json!({"foo": 1})), None);
    assert_eq!(status, 400);
    assert_error(&body, INVALID, Some("foo"), None);
    assert_eq!(body["error"]["message"], "Unrecognized request argument supplied: foo");
    // Validation.
    let (status, body) = s.post(CHAT, &chat(json!({"n": 0})), None);
    assert_eq!(status, 400);
    assert_error(&body, INVALID, Some("n"), None);
    let (status, body) = s.post(CHAT, &chat(json!({"temperature": 3})), None);
    assert_eq!(status, 400);
    assert_error(&body, INVALID, Some("temperature"), None);
    let (status, body) = s.post(CHAT, &chat(json!({"messages": []})), None);
    assert_eq!(status, 400);
    assert_error(&body, INVALID, Some("messages"), None);
    let (status, body) = s.post("/v1/completions", &json!({"model": "smol", "prompt": "a", "suffix": "b"}), None);
    assert_eq!(status, 400);
    assert_error(&body, INVALID, Some("suffix"), None);
    // Validation errors of streamed requests are plain HTTP errors too, not SSE.
    let (status, body) = s.post(CHAT, &chat(json!({"n": 0, "stream": true})), None);
    assert_eq!(status, 400);
    assert_error(&body, INVALID, Some("n"), None);
    // Unknown model.
    let (status, body) = s.post(CHAT, &chat(json!({"model": "gpt-9"})), None);
    assert_eq!(status, 404);
    assert_error(&body, INVALID, Some("model"), Some("model_not_found"));
    // A prompt longer than the context.
    let long = "hello ".repeat(20_000);
    let (status, body) = s.post(CHAT, &chat(json!({"messages": [{"role": "user", "content": long}]})), None);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "context_length_exceeded", "{body}");
    let (status, body) = s.post("/v1/completions", &json!({"model": "smol", "prompt": long}), None);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "context_length_exceeded", "{body}");
}

#[test]
fn http_level_errors() {
    let Some(s) = Server::smollm2("smol", &[]) else { return };
    // No JSON content type.
    let body = chat(json!({})).to_string();
    let (status, text) = raw_response(raw(&s.addr, &raw_post(CHAT, &body, None)));
    assert_eq!(status, 400, "{text}");
    assert_error(&serde_json::from_str(&text).unwrap(), INVALID, None, None);
    let (status, _) = raw_response(raw(&s.addr, &raw_post(CHAT, &body, Some("text/plain"))));
    assert_eq!(status, 400);
    // Too large: just over 32 MiB, so the server has read the whole body when it answers (a
    // client still sending when the server closes could miss the answer).
    let frame = |n: usize| format!("{{\"model\": \"smol\", \"prompt\": \"{}\"}}", "a".repeat(n));
    let huge = frame((32 << 20) + 10 - frame(0).len());
    let (status, body) = s.post_text("/v1/completions", &huge, None);
    assert_eq!(status, 413);
    assert_error(&body, INVALID, None, None);
    // Unknown path, wrong method.
    let (status, body) = s.post("/v1/nothing", &json!({}), None);
    assert_eq!(status, 404);
    assert_error(&body, INVALID, None, Some("unknown_url"));
    let (status, body) = s.get_json(CHAT);
    assert_eq!(status, 405);
    assert_error(&body, INVALID, None, Some("method_not_allowed"));
    // Features the model does not have: a clear error, never a silent 200.
    let (status, body) = s.post("/v1/embeddings", &json!({"model": "smol", "input": "hi"}), None);
    assert_eq!(status, 400);
    assert_error(&body, INVALID, Some("model"), None);
    assert!(body["error"]["message"].as_str().unwrap().contains("does not support embeddings"), "{body}");
    let (status, body) = s.post("/v1/openai/images/generations", &json!({"model": "smol", "prompt": "a cat"}), None);
    assert_eq!(status, 400);
    assert_error(&body, INVALID, Some("model"), None);
    assert!(body["error"]["message"].as_str().unwrap().contains("model smol does not generate images"), "{body}");
    let (status, body) = s.post("/v1/embeddings", &json!({"model": "bert", "input": "hi"}), None);
    assert_eq!(status, 404);
    assert_error(&body, INVALID, Some("model"), Some("model_not_found"));
}
