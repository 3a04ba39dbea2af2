//! Deployments from a config file (`NAME`, `NAME:VERSION`, `deploy_id:ID`, aliases) and API keys.

#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_error, smollm2, Server};
use serde_json::json;

#[test]
fn config_file_names_resolve() {
    let Some(model) = smollm2() else { return };
    let dir = std::env::temp_dir().join(format!("ferrite-serve-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("ferrite.toml");
    let path = model.to_str().unwrap();
    std::fs::write(
        &config,
        format!(
            "[engine]\nmax_num_seqs = 4\n\n\
             [[model]]\nname = \"smol\"\nversion = \"2\"\ndeploy_id = \"d-2\"\npath = {path:?}\naliases = [\"tiny\"]\n\n\
             [[model]]\nname = \"smol\"\nversion = \"1\"\ndeploy_id = \"d-1\"\npath = {path:?}\n"
        ),
    )
    .unwrap();
    let s = Server::start(&["--config", config.to_str().unwrap()], &[]);
    let (status, list) = s.get_json("/v1/models");
    assert_eq!(status, 200);
    let ids: Vec<_> = list["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["smol", "smol:1"]);
    for name in ["smol", "smol:1", "smol:2", "deploy_id:d-1", "deploy_id:d-2", "tiny"] {
        let req = json!({"model": name, "prompt": "Hi", "max_tokens": 1});
        let (status, body) = s.post("/v1/completions", &req, None);
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(body["model"], name, "the response names the model as the request did");
        assert_eq!(s.get_json(&format!("/v1/models/{name}")).0, 200, "{name}");
    }
    for name in ["smol:3", "deploy_id:d-3", "Smol"] {
        let (status, body) = s.post("/v1/completions", &json!({"model": name, "prompt": "Hi"}), None);
        assert_eq!(status, 404, "{name}");
        assert_error(&body, "invalid_request_error", Some("model"), Some("model_not_found"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_config_is_a_clear_startup_error() {
    let dir = std::env::temp_dir().join(format!("ferrite-serve-badconfig-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("ferrite.toml");
    std::fs::write(&config, "[[model]]\nname = \"a\"\npath = \"x.gguf\"\ntypo = 1\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(["serve", "--port", "0", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("typo"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn api_keys_from_flags_and_environment() {
    let Some(model) = smollm2() else { return };
    let args = ["--model", model.to_str().unwrap(), "--name", "smol", "--api-key", "k1"];
    let s = Server::start(&args, &[("FERRITE_API_KEYS", "k2, k3")]);
    let req = json!({"model": "smol", "prompt": "Hi", "max_tokens": 1});
    for key in [None, Some("wrong"), Some("k")] {
        let (status, body) = s.post("/v1/completions", &req, key);
        assert_eq!(status, 401, "{key:?}");
        assert_error(&body, "invalid_request_error", None, Some("invalid_api_key"));
    }
    for key in ["k1", "k2", "k3"] {
        assert_eq!(s.post("/v1/openai/completions", &req, Some(key)).0, 200, "{key}");
    }
    assert_eq!(s.get("/v1/models").0, 401);
    assert_eq!(s.get("/health"), (200, "ok".to_string()));
    assert_eq!(s.get("/metrics").0, 200);
}

/// With no --model and no --config, `ferrite serve` serves the built-in chat and embedding
/// models from the models folder (fetching it there when missing; here it is already in place).
#[test]
fn no_arguments_serve_the_default_model() {
    let Some(model) = smollm2() else { return };
    let dir = model.parent().unwrap().to_str().unwrap();
    let s = Server::start(&[], &[("FERRITE_MODELS", dir)]);
    let (status, list) = s.get_json("/v1/models");
    assert_eq!(status, 200);
    assert_eq!(list["data"][0]["id"], "smollm2");
    assert_eq!(list["data"][1]["id"], "minilm");
    let (status, body) = s.post("/v1/embeddings", &json!({"model": "minilm", "input": "hello"}), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"][0]["embedding"].as_array().unwrap().len(), 384);
    let req = json!({"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2});
    let (status, body) = s.post("/v1/chat/completions", &req, None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["usage"]["completion_tokens"], 2);
}
