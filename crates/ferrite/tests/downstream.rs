//! `tests/downstream`, a crate outside the workspace that depends on `ferrite` by path with
//! default features: its dependency tree holds no HTTP server and no tokio runtime, and it
//! builds and chats with the real SmolLM2 file.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use ferrite_tensor::model_files::{test_model, SMOLLM2};

fn downstream() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/downstream")
}

fn cargo(args: &[&str]) -> std::process::Output {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/downstream");
    Command::new(env!("CARGO")).args(args).current_dir(downstream()).env("CARGO_TARGET_DIR", target).output().unwrap()
}

#[test]
fn default_features_pull_in_no_server_and_no_tokio_runtime() {
    let out = cargo(&["tree", "-e", "normal", "--prefix", "none", "-f", "{p} {f}"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8(out.stdout).unwrap();
    assert!(tree.lines().any(|l| l.starts_with("ferrite v")), "{tree}");
    for banned in ["axum ", "hyper ", "tower ", "reqwest "] {
        assert!(!tree.lines().any(|l| l.starts_with(banned)), "{banned}in the tree:\n{tree}");
    }
    for line in tree.lines().filter(|l| l.starts_with("tokio v")) {
        for feature in ["rt", "rt-multi-thread", "net", "macros", "full"] {
            let features = line.split_whitespace().nth(2).unwrap_or("");
            assert!(!features.split(',').any(|f| f == feature), "tokio with `{feature}`: {line}");
        }
    }
}

#[test]
fn builds_and_chats() {
    let Some(model) = test_model(SMOLLM2) else { return };
    let out = cargo(&["build", "--release", "--quiet"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/downstream/release/ferrite-downstream");
    let out = Command::new(bin).arg(model).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Paris"), "{}", String::from_utf8_lossy(&out.stdout));
}
