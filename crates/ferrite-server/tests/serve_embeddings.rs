//! `POST /v1/embeddings` and `ferrite embed` on the real all-MiniLM-L6-v2 folder.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{assert_error, Server};
use ferrite_tensor::model_files::{test_model, MINILM};
use serde_json::{json, Value};

/// The first components of the normalised vector of "A man is eating food." (sentence-transformers).
const KNOWN: [f64; 5] = [0.03324, 0.00441, -0.00628, 0.04838, -0.1387];

fn assert_known(v: &[Value]) {
    assert_eq!(v.len(), 384);
    for (got, want) in v.iter().zip(KNOWN) {
        assert!((got.as_f64().unwrap() - want).abs() < 1e-4, "{got} vs {want}");
    }
}

#[test]
fn embeddings_endpoint() {
    let Some(dir) = test_model(MINILM) else { return };
    let s = Server::start(&["--model", dir.to_str().unwrap(), "--name", "minilm"], &[]);
    for path in ["/v1/embeddings", "/v1/openai/embeddings"] {
        let (status, body) = s.post(path, &json!({"model": "minilm", "input": ["A man is eating food.", "hi"]}), None);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["object"], "list");
        assert_eq!(body["model"], "minilm");
        assert_eq!(body["data"][1]["index"], 1);
        assert_eq!(body["data"][0]["object"], "embedding");
        assert_known(body["data"][0]["embedding"].as_array().unwrap());
        assert_eq!(body["usage"]["prompt_tokens"], 11);
        assert_eq!(body["usage"]["total_tokens"], 11);
    }
    let (status, body) =
        s.post("/v1/embeddings", &json!({"model": "minilm", "input": "hi", "encoding_format": "base64"}), None);
    assert_eq!(status, 200, "{body}");
    // 384 f32 = 1536 bytes = 2048 base64 characters.
    assert_eq!(body["data"][0]["embedding"].as_str().unwrap().len(), 2048);
    let long = "word ".repeat(600);
    let (status, body) = s.post("/v1/embeddings", &json!({"model": "minilm", "input": long}), None);
    assert_eq!(status, 400, "{body}");
    assert_error(&body, "invalid_request_error", Some("input"), None);
    let (status, body) = s.post("/v1/embeddings", &json!({"model": "minilm", "input": "a", "dimensions": 999}), None);
    assert_eq!(status, 400, "{body}");
    assert_error(&body, "invalid_request_error", Some("dimensions"), None);
    let (status, body) = s.post("/v1/embeddings", &json!({"model": "minilm", "input": "a", "foo": 1}), None);
    assert_eq!(status, 400, "{body}");
    let chat = json!({"model": "minilm", "messages": [{"role": "user", "content": "Hi"}]});
    let (status, body) = s.post("/v1/chat/completions", &chat, None);
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("does not support chat completions"), "{body}");
}

/// Malformed `input`s get 400 bodies naming `input`; a full embedding queue (here `--max-queue
/// 0`, so every request finds it full) gets 503 `overloaded`, as the chat path does.
#[test]
fn embeddings_input_errors_and_full_queue() {
    let Some(dir) = test_model(MINILM) else { return };
    let s = Server::start(&["--model", dir.to_str().unwrap(), "--name", "minilm"], &[]);
    for (input, says) in [
        (json!([1, "a"]), "input must be an array of token ids"),
        (json!([{"text": "a"}]), "input must be a string, an array of strings"),
        (json!({"text": "a"}), "invalid type: map"),
    ] {
        let (status, body) = s.post("/v1/embeddings", &json!({"model": "minilm", "input": input}), None);
        assert_eq!(status, 400, "{body}");
        assert_error(&body, "invalid_request_error", Some("input"), None);
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains(says) && !msg.contains("prompt"), "{body}");
    }
    drop(s);
    let full = Server::start(&["--model", dir.to_str().unwrap(), "--name", "minilm", "--max-queue", "0"], &[]);
    let (status, body) = full.post("/v1/embeddings", &json!({"model": "minilm", "input": "hi"}), None);
    assert_eq!(status, 503, "{body}");
    assert_error(&body, "server_error", None, Some("overloaded"));
    assert!(body["error"]["message"].as_str().unwrap().contains("embedding queue is full"), "{body}");
}

#[test]
fn embed_command() {
    let Some(dir) = test_model(MINILM) else { return };
    let out = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(["embed", "--threads", "2", "--model", dir.to_str().unwrap(), "A man is eating food.", "Hello"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_known(lines[0].as_array().unwrap());
}
