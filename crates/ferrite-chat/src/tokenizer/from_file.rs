//! [`Tokenizer`] from a Hugging Face `tokenizer.json` (+ optional `tokenizer_config.json`).

use std::path::Path;

use serde_json::Value;

use super::piece::{piece_bytes, PieceStyle};
use super::special::{self, SpecialTokens};
use super::Tokenizer;
use crate::{Error, Result};

/// Reads a JSON file.
fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
    serde_json::from_str(&text).map_err(|source| Error::Json { path: path.display().to_string(), source })
}

/// A token named in `tokenizer_config.json`: a string or `{"content": ...}`.
fn config_token(config: &Value, key: &str) -> Option<String> {
    match config.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// How the file's decoder spells bytes, judged from its serialised form.
fn piece_style(inner: &tokenizers::Tokenizer) -> PieceStyle {
    let Some(decoder) = inner.get_decoder() else { return PieceStyle::Plain };
    let Ok(json) = serde_json::to_value(decoder) else { return PieceStyle::Plain };
    let text = json.to_string();
    if text.contains("\"ByteLevel\"") {
        PieceStyle::ByteLevel
    } else if text.contains("\"ByteFallback\"") || text.contains("\"Metaspace\"") {
        PieceStyle::SentencePiece
    } else if text.contains("\"WordPiece\"") {
        let prefix = json.get("prefix").and_then(Value::as_str).unwrap_or("##").to_owned();
        PieceStyle::WordPiece { prefix }
    } else {
        PieceStyle::Plain
    }
}

/// Builds the tokenizer; see [`Tokenizer::from_file`].
pub fn load(tokenizer_json: &Path, tokenizer_config: Option<&Path>) -> Result<Tokenizer> {
    let mut inner = tokenizers::Tokenizer::from_file(tokenizer_json)
        .map_err(|e| Error::Tokenizers(format!("{}: {e}", tokenizer_json.display())))?;
    inner.with_padding(None);
    inner.with_truncation(None)?;
    let config = tokenizer_config.map(read_json).transpose()?.unwrap_or(Value::Null);

    let n = inner.get_vocab_size(true);
    let style = piece_style(&inner);
    let added = inner.get_added_tokens_decoder();
    let mut pieces = Vec::with_capacity(n);
    let mut hidden = vec![false; n];
    for id in 0..n as u32 {
        let piece: Box<[u8]> = match added.get(&id) {
            Some(tok) => {
                hidden[id as usize] = tok.special;
                tok.content.as_bytes().into()
            }
            None => match inner.id_to_token(id) {
                Some(text) => piece_bytes(&style, &text).into_boxed_slice(),
                None => Box::default(),
            },
        };
        pieces.push(piece);
    }

    let id_of = |key: &str| config_token(&config, key).and_then(|t| inner.token_to_id(&t));
    let bos = id_of("bos_token");
    let eos = id_of("eos_token");
    let (eot, eog) = special::detect_eog(|t| inner.token_to_id(t), eos, None, None);
    let special = SpecialTokens {
        bos,
        eos,
        eot,
        pad: id_of("pad_token"),
        unk: id_of("unk_token"),
        eog,
        add_bos: config.get("add_bos_token").and_then(Value::as_bool).unwrap_or(false),
        add_eos: config.get("add_eos_token").and_then(Value::as_bool).unwrap_or(false),
    };
    Ok(Tokenizer { inner, special, pieces, hidden, manual_bos_eos: false })
}
