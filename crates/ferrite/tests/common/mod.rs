//! What the facade's model tests share: one engine per test binary, and a runtime to await on.

#![allow(clippy::unwrap_used, dead_code)]

use std::sync::OnceLock;

use ferrite::Engine;
use ferrite_tensor::model_files::test_model;

/// The engine in `cell`, built on first use from test model `file` (2 threads, a KV cache of
/// `kv_cache_mb` MiB); `None` when the model is missing outside CI (`test_model` fails the
/// test under `CI=true`).
pub fn shared_engine(
    cell: &'static OnceLock<Option<Engine>>,
    file: &str,
    kv_cache_mb: usize,
) -> Option<&'static Engine> {
    cell.get_or_init(|| {
        let path = test_model(file)?;
        Some(Engine::builder().model(path.to_string_lossy()).threads(2).kv_cache_mb(kv_cache_mb).build().unwrap())
    })
    .as_ref()
}

/// Runs `f` to completion on a fresh current-thread runtime.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
}
