//! `POST /embeddings`: request and response, as OpenAI's.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::types::{InvalidField, Prompt};

/// An embeddings request, as OpenAI's `POST /embeddings` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingRequest {
    /// The model to use.
    pub model: String,
    /// What to embed: a text, a list of texts, token ids, or a list of token-id lists (the same
    /// four shapes as a completion's `prompt`). Each input gets one vector.
    #[serde(deserialize_with = "super::wire::input_prompt")]
    #[schemars(with = "Prompt")]
    pub input: Prompt,
    /// `float` (the default: a JSON array of numbers) or `base64` (the little-endian f32 bytes
    /// of the vector, base64-encoded, as the OpenAI Python client requests and decodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<EncodingFormat>,
    /// Keep only the first `dimensions` components, then re-normalise to unit length. Must not
    /// exceed the model's dimension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    /// An end-user id (accepted and ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// How vectors are written in the response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    /// JSON arrays of numbers.
    #[default]
    Float,
    /// Base64 of the little-endian f32 bytes.
    Base64,
}

impl EmbeddingRequest {
    /// A request for `model` embedding `input`; everything else at its default.
    pub fn new(model: impl Into<String>, input: impl Into<Prompt>) -> Self {
        EmbeddingRequest { model: model.into(), input: input.into(), ..Default::default() }
    }

    /// Sets `encoding_format`.
    pub fn encoding_format(mut self, format: EncodingFormat) -> Self {
        self.encoding_format = Some(format);
        self
    }

    /// Sets `dimensions`.
    pub fn dimensions(mut self, dimensions: u32) -> Self {
        self.dimensions = Some(dimensions);
        self
    }

    /// Checks the rules a parser cannot: at least one input, no empty token list, and
    /// `dimensions` at least 1 (the model's own limit is checked by the engine).
    pub fn validate(&self) -> Result<(), InvalidField> {
        if self.input.is_empty() {
            return Err(InvalidField::new("input", "input must not be an empty list"));
        }
        let empty_tokens = match &self.input {
            Prompt::Tokens(t) => t.is_empty(),
            Prompt::TokenBatches(b) => b.iter().any(Vec::is_empty),
            _ => false,
        };
        if empty_tokens {
            return Err(InvalidField::new("input", "token-id inputs must not be empty"));
        }
        if self.dimensions == Some(0) {
            return Err(InvalidField::new("dimensions", "dimensions must be at least 1"));
        }
        Ok(())
    }
}

/// The answer: `{"object":"list","data":[...],"model":...,"usage":{...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EmbeddingResponse {
    /// Always `"list"`.
    pub object: String,
    /// One entry per input, in input order.
    pub data: Vec<Embedding>,
    /// The model that answered.
    pub model: String,
    /// Tokens read.
    pub usage: EmbeddingUsage,
}

/// One input's vector (`"object": "embedding"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Embedding {
    /// Always `"embedding"`.
    pub object: String,
    /// The position of the input in the request.
    pub index: u32,
    /// The vector, as the request's `encoding_format` asked.
    pub embedding: EmbeddingVector,
}

/// A vector as numbers or as base64 of its little-endian f32 bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum EmbeddingVector {
    /// `encoding_format: float`.
    Float(Vec<f32>),
    /// `encoding_format: base64`.
    Base64(String),
}

impl EmbeddingVector {
    /// `v` in `format`.
    pub fn encode(v: Vec<f32>, format: EncodingFormat) -> Self {
        match format {
            EncodingFormat::Float => EmbeddingVector::Float(v),
            EncodingFormat::Base64 => {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                EmbeddingVector::Base64(super::base64::encode(&bytes))
            }
        }
    }

    /// The numbers, decoding base64 if need be (`None` for malformed base64).
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        match self {
            EmbeddingVector::Float(v) => Some(v.clone()),
            EmbeddingVector::Base64(s) => {
                let bytes = super::base64::decode(s)?;
                if bytes.len() % 4 != 0 {
                    return None;
                }
                Some(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
            }
        }
    }
}

/// Token counts of an embeddings request (`total_tokens == prompt_tokens`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EmbeddingUsage {
    /// Tokens of all inputs.
    pub prompt_tokens: u32,
    /// The same number.
    pub total_tokens: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Malformed `input`s are refused with messages naming `input` (not a completion's
    /// `prompt`), while every valid form still parses.
    #[test]
    fn input_errors_name_input() {
        let parse = |input: serde_json::Value| {
            serde_json::from_value::<EmbeddingRequest>(serde_json::json!({"model": "m", "input": input}))
        };
        for (bad, says) in [
            (serde_json::json!([1, "a"]), "input must be an array of token ids"),
            (serde_json::json!(["a", 1]), "input must be an array of strings"),
            (serde_json::json!([[1], "a"]), "input must be an array of arrays of token ids"),
            (serde_json::json!([{"a": 1}]), "input must be a string, an array of strings"),
            (serde_json::json!([-1]), "input must be an array of token ids"),
        ] {
            let msg = parse(bad.clone()).expect_err("bad input").to_string();
            assert!(msg.contains(says) && !msg.contains("prompt"), "{bad}: {msg}");
        }
        assert_eq!(parse(serde_json::json!("a")).map(|r| r.input).ok(), Some(Prompt::Text("a".into())));
        assert_eq!(
            parse(serde_json::json!([[1, 2]])).map(|r| r.input).ok(),
            Some(Prompt::TokenBatches(vec![vec![1, 2]]))
        );
        let completion = serde_json::from_value::<Prompt>(serde_json::json!([1, "a"])).expect_err("bad prompt");
        assert!(completion.to_string().contains("prompt must be"), "{completion}");
    }

    #[test]
    fn base64_vectors_are_little_endian_f32() {
        // The little-endian bytes of 1.0f32 (00 00 80 3f), as numpy's frombuffer(dtype=float32) reads.
        assert_eq!(
            EmbeddingVector::encode(vec![1.0], EncodingFormat::Base64),
            EmbeddingVector::Base64("AACAPw==".into())
        );
    }

    #[test]
    fn base64_round_trips() {
        let v = vec![0.03324, -0.1387, 1e-30, f32::MAX, -0.0];
        let e = EmbeddingVector::encode(v.clone(), EncodingFormat::Base64);
        assert_eq!(e.to_f32(), Some(v));
        assert_eq!(EmbeddingVector::Base64("A?".into()).to_f32(), None);
    }
}
