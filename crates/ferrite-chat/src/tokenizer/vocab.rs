//! [`GgufVocab`]: the plain description of a vocabulary that GGUF's `tokenizer.ggml.*` keys
//! carry, independent of the GGUF reader, so the tokenizer builders can be written and tested
//! from it alone.

use crate::{Error, Result};

/// Which tokenization algorithm a GGUF vocabulary uses (`tokenizer.ggml.model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VocabKind {
    /// `"gpt2"`: byte-level BPE with ranked merges and a regex pre-tokenizer
    /// (`tokenizer.ggml.pre` names the regexes).
    Gpt2Bpe,
    /// `"llama"`: SentencePiece-style BPE that merges by token score, spaces written as `▁`,
    /// unknown characters spelled as `<0xNN>` byte tokens.
    SentencePiece,
}

impl VocabKind {
    /// Parses `tokenizer.ggml.model`.
    pub fn from_model_name(name: &str) -> Result<Self> {
        match name {
            "gpt2" => Ok(VocabKind::Gpt2Bpe),
            "llama" => Ok(VocabKind::SentencePiece),
            other => Err(Error::Unsupported(format!("tokenizer.ggml.model = {other:?}"))),
        }
    }
}

/// llama.cpp's token types (`tokenizer.ggml.token_type`, `llama_token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    /// 0: not set.
    Undefined,
    /// 1: an ordinary piece produced by the tokenization algorithm.
    Normal,
    /// 2: the unknown token.
    Unknown,
    /// 3: a control token (`<|im_start|>`, `<bos>`): matched in text, hidden when decoding
    /// with `skip_special`.
    Control,
    /// 4: a user-defined token: always matched in text before tokenizing, always shown.
    UserDefined,
    /// 5: an unused slot.
    Unused,
    /// 6: a byte token `<0xNN>` (SentencePiece byte fallback).
    Byte,
}

impl TokenType {
    /// Maps the GGUF integer; values outside 0..=6 become [`TokenType::Undefined`].
    pub fn from_i64(v: i64) -> Self {
        match v {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Undefined,
        }
    }

    /// Whether llama.cpp looks for this token's text in the input before tokenizing
    /// (its "special tokens cache": control, user-defined and unknown tokens).
    pub fn is_matched_in_text(self) -> bool {
        matches!(self, TokenType::Control | TokenType::UserDefined | TokenType::Unknown)
    }

    /// Whether decoding with `skip_special` hides this token (control and unknown tokens).
    pub fn is_special(self) -> bool {
        matches!(self, TokenType::Control | TokenType::Unknown)
    }
}

/// Everything the tokenizer needs from a GGUF file's metadata, as plain data.
///
/// `Option` fields are absent keys; the builders apply llama.cpp's defaults for them.
#[derive(Debug, Clone)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model`.
    pub kind: VocabKind,
    /// `tokenizer.ggml.pre`: the pre-tokenizer name (GPT-2 BPE only).
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`: the text of each token, by id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type`, by id (all [`TokenType::Normal`] when absent).
    pub token_types: Vec<TokenType>,
    /// `tokenizer.ggml.scores`, by id (empty when absent).
    pub scores: Vec<f32>,
    /// `tokenizer.ggml.merges`: `"left right"` strings, highest priority first (GPT-2 BPE).
    pub merges: Vec<String>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos_id: Option<u32>,
    /// `tokenizer.ggml.eot_token_id`.
    pub eot_id: Option<u32>,
    /// `tokenizer.ggml.eom_token_id`.
    pub eom_id: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unk_id: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`.
    pub pad_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`.
    pub add_eos: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix`.
    pub add_space_prefix: Option<bool>,
}

impl GgufVocab {
    /// Checks that the per-token arrays agree in length.
    pub fn validate(&self) -> Result<()> {
        let n = self.tokens.len();
        if n == 0 {
            return Err(meta_err("tokenizer.ggml.tokens", "empty vocabulary"));
        }
        if self.token_types.len() != n {
            return Err(meta_err(
                "tokenizer.ggml.token_type",
                &format!("{} entries for {n} tokens", self.token_types.len()),
            ));
        }
        if !self.scores.is_empty() && self.scores.len() != n {
            return Err(meta_err("tokenizer.ggml.scores", &format!("{} entries for {n} tokens", self.scores.len())));
        }
        for (key, id) in [
            ("tokenizer.ggml.bos_token_id", self.bos_id),
            ("tokenizer.ggml.eos_token_id", self.eos_id),
            ("tokenizer.ggml.eot_token_id", self.eot_id),
            ("tokenizer.ggml.eom_token_id", self.eom_id),
            ("tokenizer.ggml.unknown_token_id", self.unk_id),
            ("tokenizer.ggml.padding_token_id", self.pad_id),
        ] {
            if let Some(id) = id {
                if id as usize >= n {
                    return Err(meta_err(key, &format!("id {id} outside a vocabulary of {n}")));
                }
            }
        }
        Ok(())
    }

    /// The type of token `id` ([`TokenType::Undefined`] when out of range).
    pub fn token_type(&self, id: u32) -> TokenType {
        self.token_types.get(id as usize).copied().unwrap_or(TokenType::Undefined)
    }
}

/// A [`Error::Metadata`] for `key`.
pub(crate) fn meta_err(key: &str, problem: &str) -> Error {
    Error::Metadata { key: key.to_string(), problem: problem.to_string() }
}
