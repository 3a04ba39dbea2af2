//! Where ferrite keeps the real model files (`cargo xtask fetch-models` puts them there), and
//! the rule tests follow when one is missing.

use std::path::PathBuf;

/// SmolLM2-135M-Instruct, GGUF Q4_1 (llama arch).
pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M mix (qwen2 arch).
pub const QWEN25: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
/// Gemma 3 270M base, GGUF Q4_K_M (gemma3 arch).
pub const GEMMA3: &str = "gemma-3-270m-q4_k_m.gguf";
/// all-MiniLM-L6-v2, a sentence-transformers folder (safetensors f32).
pub const MINILM: &str = "all-MiniLM-L6-v2";

/// `$FERRITE_MODELS`, or `~/.cache/ferrite/models`.
pub fn models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("FERRITE_MODELS") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache/ferrite/models")
}

/// The path of a model file for a test. When it is missing: under `CI=true` this panics (a
/// missing model is a failure there); elsewhere it prints why and returns `None`, and the test
/// returns early.
pub fn test_model(name: &str) -> Option<PathBuf> {
    let p = models_dir().join(name);
    if p.exists() {
        return Some(p);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(!ci, "model {} missing under CI=true: run `cargo xtask fetch-models`", p.display());
    eprintln!("SKIPPED: model {} missing (run `cargo xtask fetch-models`)", p.display());
    None
}
