//! `ferrite generate` (greedy, 16 tokens) must print exactly what llama.cpp's `llama-simple`
//! prints for the same prompt (scripts/golden_greedy.py made tests/golden/greedy_*.json).

#![allow(clippy::unwrap_used)]

use std::process::Command;

use ferrite_tensor::model_files::{test_model, GEMMA3, QWEN25, SMOLLM2};
use serde_json::Value;

fn check(model_file: &str, golden: &str) {
    let Some(path) = test_model(model_file) else { return };
    let gold: Value = serde_json::from_str(golden).expect("golden json");
    let n = gold["n_predict"].as_u64().expect("n_predict");
    for case in gold["cases"].as_array().expect("cases") {
        let prompt = case["prompt"].as_str().expect("prompt");
        let out = Command::new(env!("CARGO_BIN_EXE_ferrite"))
            .args(["generate", "--model"])
            .arg(&path)
            .args(["--prompt", prompt, "--max-tokens", &n.to_string()])
            .output()
            .expect("run ferrite");
        assert!(out.status.success(), "ferrite failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).expect("utf-8 output");
        let text = text.strip_suffix('\n').unwrap_or(&text);
        assert_eq!(text, case["continuation"].as_str().unwrap(), "{model_file}: prompt {prompt:?}");
    }
}

#[test]
fn smollm2_greedy_matches_llama_cpp() {
    check(SMOLLM2, include_str!("golden/greedy_SmolLM2-135M-Instruct.Q4_1.json"));
}

#[test]
fn qwen25_greedy_matches_llama_cpp() {
    check(QWEN25, include_str!("golden/greedy_qwen2.5-coder-0.5b-instruct-q4_k_m.json"));
}

#[test]
fn gemma3_greedy_matches_llama_cpp() {
    check(GEMMA3, include_str!("golden/greedy_gemma-3-270m-q4_k_m.json"));
}

/// Weights stay memory-mapped and quantized: peak RSS under 1.5x the GGUF file plus the KV cache.
#[test]
fn smollm2_resident_size_is_bounded() {
    let Some(path) = test_model(SMOLLM2) else { return };
    let out = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(["generate", "--model"])
        .arg(&path)
        .args(["--prompt", "Once upon a time", "--max-tokens", "64"])
        .output()
        .expect("run ferrite");
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    let field = |k: &str| -> u64 {
        let at = log.find(k).unwrap_or_else(|| panic!("{k} not logged: {log}")) + k.len();
        log[at..].split_whitespace().next().unwrap().parse().unwrap()
    };
    let (peak, kv) = (field("peak_rss_bytes="), field("kv_cache_bytes="));
    let file = std::fs::metadata(&path).unwrap().len();
    eprintln!("peak RSS {peak} B, file {file} B, KV cache {kv} B");
    assert!(peak as f64 <= 1.5 * file as f64 + kv as f64, "peak RSS {peak} > 1.5 x {file} + {kv}");
}

#[test]
fn bad_arguments_give_clear_errors() {
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_ferrite")).args(args).output().expect("run ferrite");
    let out = run(&["generate", "--model", "/nonexistent.gguf", "--prompt", "x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("error"), "{}", String::from_utf8_lossy(&out.stderr));
    let bad = std::env::temp_dir().join("ferrite-not-a-model.gguf");
    std::fs::write(&bad, b"GGUF\x03\x00\x00\x00garbage").unwrap();
    let out = run(&["generate", "--model", bad.to_str().unwrap(), "--prompt", "x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("malformed"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `ferrite devices` lists each backend's devices (or why there are none), and `--device cuda`
/// on a machine without an NVIDIA driver is a one-line error, not a panic. (On a machine with
/// a GPU the device list shows it instead.)
#[test]
fn devices_are_listed_and_a_missing_cuda_driver_is_a_clear_error() {
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_ferrite")).args(args).output().expect("run ferrite");
    let out = run(&["devices"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.lines().next().is_some_and(|l| l.starts_with("cpu: ")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("wgpu")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("cuda")), "{text}");
    if text.contains("no CUDA driver") {
        let Some(path) = test_model(SMOLLM2) else { return };
        for (device, says) in [("cuda", "no CUDA driver"), ("cuda:x", "ordinal")] {
            let out = run(&["generate", "--model", path.to_str().unwrap(), "--prompt", "x", "--device", device]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success());
            assert!(err.contains(says) && !err.contains("panicked"), "{device}: {err}");
        }
    }
}
