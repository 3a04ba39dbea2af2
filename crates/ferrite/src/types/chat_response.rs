//! `POST /chat/completions` answers: the whole response, and the chunks of a streamed one.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::types::{ChatLogprobs, FinishReason, Role, ToolCall, ToolCallDelta, Usage};

/// A whole chat completion (`"object": "chat.completion"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatCompletionResponse {
    /// Unique id, `chatcmpl-...`.
    pub id: String,
    /// Always `"chat.completion"`.
    pub object: String,
    /// Unix time (seconds) the request was received.
    pub created: u64,
    /// The model, as the request named it.
    pub model: String,
    /// One choice per `n`.
    pub choices: Vec<ChatChoice>,
    /// Token counts.
    pub usage: Usage,
    /// Identifies the engine build and configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
}

impl ChatCompletionResponse {
    /// `object` value of a chat completion.
    pub const OBJECT: &'static str = "chat.completion";

    /// A response with `object` set and no fingerprint.
    pub fn new(
        id: impl Into<String>,
        created: u64,
        model: impl Into<String>,
        choices: Vec<ChatChoice>,
        usage: Usage,
    ) -> Self {
        ChatCompletionResponse {
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

/// One choice of a chat completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatChoice {
    /// Position among the choices.
    pub index: u32,
    /// The generated message.
    pub message: ChatCompletionMessage,
    /// Log-probabilities when asked for, else `null`.
    pub logprobs: Option<ChatLogprobs>,
    /// Why generation stopped.
    pub finish_reason: Option<FinishReason>,
}

/// The assistant message of a choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatCompletionMessage {
    /// Always `assistant`.
    pub role: Role,
    /// The text; `null` when the model only called tools.
    pub content: Option<String>,
    /// The tool calls, when the model made any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
}

impl ChatCompletionMessage {
    /// An assistant message with this text.
    pub fn assistant(content: impl Into<String>) -> Self {
        ChatCompletionMessage { role: Role::Assistant, content: Some(content.into()), tool_calls: None }
    }
}

/// One server-sent event of a streamed chat completion (`"object": "chat.completion.chunk"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatCompletionChunk {
    /// The same id on every chunk of a response.
    pub id: String,
    /// Always `"chat.completion.chunk"`.
    pub object: String,
    /// The same on every chunk of a response.
    pub created: u64,
    /// The model, as the request named it.
    pub model: String,
    /// The choices this chunk advances (empty on the final usage-only chunk).
    pub choices: Vec<ChatChunkChoice>,
    /// Token counts: on chunks that finish a choice, and on the final chunk when
    /// `stream_options.include_usage` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Identifies the engine build and configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
}

impl ChatCompletionChunk {
    /// `object` value of a chat completion chunk.
    pub const OBJECT: &'static str = "chat.completion.chunk";

    /// A chunk with `object` set, no usage and no fingerprint.
    pub fn new(id: impl Into<String>, created: u64, model: impl Into<String>, choices: Vec<ChatChunkChoice>) -> Self {
        ChatCompletionChunk {
            id: id.into(),
            object: Self::OBJECT.into(),
            created,
            model: model.into(),
            choices,
            usage: None,
            system_fingerprint: None,
        }
    }
}

/// How one choice advances in a chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatChunkChoice {
    /// Position among the choices.
    pub index: u32,
    /// What is new.
    pub delta: ChatDelta,
    /// Log-probabilities of the new tokens when asked for, else `null`.
    #[serde(default)]
    pub logprobs: Option<ChatLogprobs>,
    /// `null` until the choice's last chunk.
    pub finish_reason: Option<FinishReason>,
}

/// The new part of a streamed message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChatDelta {
    /// `assistant`, on the first chunk of a choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// New text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// New pieces of tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
}
