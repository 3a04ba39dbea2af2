//! `POST /completions` (OpenAI's legacy text completions): request, response and chunk.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::sampling::{sampling_request, MAX_TOP_LOGPROBS};
use crate::types::{CompletionLogprobs, FinishReason, InvalidField, Usage};

sampling_request! {
    /// A text completion request, as OpenAI's `POST /completions` body.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct CompletionRequest {
        /// The prompt(s): text, texts, token ids, or lists of token ids.
        pub prompt: Prompt,
        /// Text after the insertion point: parsed, but rejected by `validate` (no fill-in-the-
        /// middle support).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub suffix: Option<String>,
        /// Return the log-probabilities of the tokens and of this many alternatives per
        /// position, `0..=20` (OpenAI allows up to 5).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub logprobs: Option<u32>,
        /// Put the prompt before the generated text in each choice.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pub echo: bool,
        /// Server-side candidates to pick the best from; must equal `n` when given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub best_of: Option<u32>,
    }
}

impl CompletionRequest {
    /// OpenAI's default `max_tokens` for text completions.
    pub const DEFAULT_MAX_TOKENS: u32 = 16;

    /// A request for `model` with this prompt; everything else at its default.
    pub fn new(model: impl Into<String>, prompt: impl Into<Prompt>) -> Self {
        CompletionRequest { model: model.into(), prompt: prompt.into(), ..Default::default() }
    }

    /// Asks for log-probabilities with `top` alternatives per position.
    pub fn logprobs(mut self, top: u32) -> Self {
        self.logprobs = Some(top);
        self
    }

    /// Sets `echo`.
    pub fn echo(mut self, echo: bool) -> Self {
        self.echo = echo;
        self
    }

    /// Most tokens to generate per choice (`max_tokens`, default 16).
    pub fn max_new_tokens(&self) -> u32 {
        self.max_tokens.unwrap_or(Self::DEFAULT_MAX_TOKENS)
    }

    /// Checks the rules a parser cannot: a non-empty prompt, the shared sampling fields,
    /// `max_tokens` (0 only with `echo`), `logprobs`, `best_of`, and rejects `suffix`.
    pub fn validate(&self) -> Result<(), InvalidField> {
        if self.prompt.is_empty() {
            return Err(InvalidField::new("prompt", "prompt must not be an empty list"));
        }
        if let Prompt::TokenBatches(batches) = &self.prompt {
            if batches.iter().any(Vec::is_empty) {
                return Err(InvalidField::new("prompt", "token-id prompts must not be empty"));
            }
        }
        self.validate_sampling()?;
        if self.max_tokens == Some(0) && !self.echo {
            return Err(InvalidField::new("max_tokens", "max_tokens must be at least 1 (0 is allowed only with echo)"));
        }
        if let Some(top) = self.logprobs {
            if top > MAX_TOP_LOGPROBS {
                let msg = format!("logprobs must be between 0 and {MAX_TOP_LOGPROBS}, got {top}");
                return Err(InvalidField::new("logprobs", msg));
            }
        }
        if let Some(best_of) = self.best_of {
            if best_of != self.choices() {
                let msg = format!("best_of must equal n ({}) when given, got {best_of}", self.choices());
                return Err(InvalidField::new("best_of", msg));
            }
        }
        if self.suffix.is_some() {
            return Err(InvalidField::new("suffix", "suffix (fill-in-the-middle) is not supported"));
        }
        Ok(())
    }
}

/// The `prompt` of a text completion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Prompt {
    /// One text prompt.
    Text(String),
    /// Several text prompts (each gets `n` choices).
    Texts(Vec<String>),
    /// One prompt as token ids.
    Tokens(Vec<u32>),
    /// Several prompts as token ids.
    TokenBatches(Vec<Vec<u32>>),
}

impl Default for Prompt {
    fn default() -> Self {
        Prompt::Text(String::new())
    }
}

impl Prompt {
    /// How many prompts this is.
    pub fn len(&self) -> usize {
        match self {
            Prompt::Text(_) | Prompt::Tokens(_) => 1,
            Prompt::Texts(v) => v.len(),
            Prompt::TokenBatches(v) => v.len(),
        }
    }

    /// Whether this is an empty list of prompts (an empty string is one prompt).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<&str> for Prompt {
    fn from(s: &str) -> Self {
        Prompt::Text(s.to_string())
    }
}

impl From<String> for Prompt {
    fn from(s: String) -> Self {
        Prompt::Text(s)
    }
}

impl From<Vec<String>> for Prompt {
    fn from(v: Vec<String>) -> Self {
        Prompt::Texts(v)
    }
}

impl From<Vec<u32>> for Prompt {
    fn from(v: Vec<u32>) -> Self {
        Prompt::Tokens(v)
    }
}

/// A whole text completion (`"object": "text_completion"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CompletionResponse {
    /// Unique id, `cmpl-...`.
    pub id: String,
    /// Always `"text_completion"`.
    pub object: String,
    /// Unix time (seconds) the request was received.
    pub created: u64,
    /// The model, as the request named it.
    pub model: String,
    /// `n` choices per prompt, prompt by prompt.
    pub choices: Vec<CompletionChoice>,
    /// Token counts.
    pub usage: Usage,
    /// Identifies the engine build and configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
}

impl CompletionResponse {
    /// `object` value of text completions and their chunks.
    pub const OBJECT: &'static str = "text_completion";

    /// A response with `object` set and no fingerprint.
    pub fn new(
        id: impl Into<String>,
        created: u64,
        model: impl Into<String>,
        choices: Vec<CompletionChoice>,
        usage: Usage,
    ) -> Self {
        CompletionResponse {
            id: id.into(),
            object: Self::OBJECT.into(),
            created,
            model: model.into(),
            choices,
            usage,
            system_fingerprint: None,
        }
    }
}

/// One choice of a text completion (also the choice of a streamed chunk).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CompletionChoice {
    /// The generated text (after the prompt when `echo` is set); new text only, in a chunk.
    pub text: String,
    /// Position among the choices.
    pub index: u32,
    /// Log-probabilities when asked for, else `null`.
    pub logprobs: Option<CompletionLogprobs>,
    /// Why generation stopped; `null` until the choice's last chunk.
    pub finish_reason: Option<FinishReason>,
}

/// One server-sent event of a streamed text completion (`"object": "text_completion"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CompletionChunk {
    /// The same id on every chunk of a response.
    pub id: String,
    /// Always `"text_completion"`.
    pub object: String,
    /// The same on every chunk of a response.
    pub created: u64,
    /// The model, as the request named it.
    pub model: String,
    /// The choices this chunk advances (empty on the final usage-only chunk).
    pub choices: Vec<CompletionChoice>,
    /// Token counts: on chunks that finish a choice, and on the final chunk when
    /// `stream_options.include_usage` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Identifies the engine build and configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
}

impl CompletionChunk {
    /// A chunk with `object` set, no usage and no fingerprint.
    pub fn new(id: impl Into<String>, created: u64, model: impl Into<String>, choices: Vec<CompletionChoice>) -> Self {
        CompletionChunk {
            id: id.into(),
            object: CompletionResponse::OBJECT.into(),
            created,
            model: model.into(),
            choices,
            usage: None,
            system_fingerprint: None,
        }
    }
}
