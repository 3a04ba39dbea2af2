//! The thin GGUF-specific step: `tokenizer.ggml.*` metadata of a [`GgufFile`] to a plain
//! [`GgufVocab`].

use ferrite_tensor::gguf::{GgufFile, GgufValue};

use super::vocab::{meta_err, GgufVocab, TokenType, VocabKind};
use crate::Result;

fn get<'a>(gguf: &'a GgufFile, key: &str) -> Option<&'a GgufValue> {
    gguf.get(key)
}

fn opt_id(gguf: &GgufFile, key: &str) -> Result<Option<u32>> {
    match get(gguf, key) {
        None => Ok(None),
        Some(v) => {
            let id = v.as_i64().ok_or_else(|| meta_err(key, "not an integer"))?;
            // Some converters write -1 (or u32::MAX) for "none".
            if id < 0 || id >= i64::from(u32::MAX) {
                Ok(None)
            } else {
                Ok(Some(id as u32))
            }
        }
    }
}

fn opt_bool(gguf: &GgufFile, key: &str) -> Result<Option<bool>> {
    get(gguf, key).map(|v| v.as_bool().ok_or_else(|| meta_err(key, "not a bool"))).transpose()
}

fn str_array(gguf: &GgufFile, key: &str) -> Result<Option<Vec<String>>> {
    get(gguf, key)
        .map(|v| {
            v.as_str_array()
                .map(|a| a.into_iter().map(str::to_owned).collect())
                .ok_or_else(|| meta_err(key, "not an array of strings"))
        })
        .transpose()
}

/// Reads the tokenizer metadata of a GGUF file.
pub fn vocab_from_gguf(gguf: &GgufFile) -> Result<GgufVocab> {
    const MODEL: &str = "tokenizer.ggml.model";
    const TOKENS: &str = "tokenizer.ggml.tokens";
    const TYPES: &str = "tokenizer.ggml.token_type";
    const SCORES: &str = "tokenizer.ggml.scores";

    let model = get(gguf, MODEL)
        .ok_or_else(|| meta_err(MODEL, "missing"))?
        .as_str()
        .ok_or_else(|| meta_err(MODEL, "not a string"))?;
    let kind = VocabKind::from_model_name(model)?;
    let tokens = str_array(gguf, TOKENS)?.ok_or_else(|| meta_err(TOKENS, "missing"))?;
    let token_types = match get(gguf, TYPES) {
        None => vec![TokenType::Normal; tokens.len()],
        Some(v) => v
            .as_i64_array()
            .ok_or_else(|| meta_err(TYPES, "not an array of integers"))?
            .into_iter()
            .map(TokenType::from_i64)
            .collect(),
    };
    let scores = match get(gguf, SCORES) {
        None => Vec::new(),
        Some(v) => v.as_f32_array().ok_or_else(|| meta_err(SCORES, "not an array of floats"))?,
    };
    let pre = match get(gguf, "tokenizer.ggml.pre") {
        None => None,
        Some(v) => Some(v.as_str().ok_or_else(|| meta_err("tokenizer.ggml.pre", "not a string"))?.to_owned()),
    };
    let vocab = GgufVocab {
        kind,
        pre,
        tokens,
        token_types,
        scores,
        merges: str_array(gguf, "tokenizer.ggml.merges")?.unwrap_or_default(),
        bos_id: opt_id(gguf, "tokenizer.ggml.bos_token_id")?,
        eos_id: opt_id(gguf, "tokenizer.ggml.eos_token_id")?,
        eot_id: opt_id(gguf, "tokenizer.ggml.eot_token_id")?,
        eom_id: opt_id(gguf, "tokenizer.ggml.eom_token_id")?,
        unk_id: opt_id(gguf, "tokenizer.ggml.unknown_token_id")?,
        pad_id: opt_id(gguf, "tokenizer.ggml.padding_token_id")?,
        add_bos: opt_bool(gguf, "tokenizer.ggml.add_bos_token")?,
        add_eos: opt_bool(gguf, "tokenizer.ggml.add_eos_token")?,
        add_space_prefix: opt_bool(gguf, "tokenizer.ggml.add_space_prefix")?,
    };
    vocab.validate()?;
    Ok(vocab)
}
