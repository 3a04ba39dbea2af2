//! Pieces shared by chat and text completions: usage, stop sequences, finish reasons, stream
//! options, response formats, tools and log-probabilities.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Token counts of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Usage {
    /// Tokens in the prompt (after the chat template).
    pub prompt_tokens: u32,
    /// Tokens generated, over all choices.
    pub completion_tokens: u32,
    /// `prompt_tokens + completion_tokens`.
    pub total_tokens: u32,
    /// Details of the prompt tokens (how many came from the prefix cache).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

impl Usage {
    /// Usage with `total_tokens` computed and no details.
    pub fn new(prompt_tokens: u32, completion_tokens: u32) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            ..Default::default()
        }
    }
}

/// Breakdown of the prompt tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PromptTokensDetails {
    /// Prompt tokens whose KV entries were reused from the prefix cache.
    pub cached_tokens: u32,
}

/// `stop`: one string or a list of strings (at most 4, each non-empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum StopSequence {
    /// A single stop string.
    Single(String),
    /// Several stop strings.
    Multiple(Vec<String>),
}

impl StopSequence {
    /// The stop strings as a slice, whichever form was sent.
    pub fn as_slice(&self) -> &[String] {
        match self {
            StopSequence::Single(s) => std::slice::from_ref(s),
            StopSequence::Multiple(v) => v,
        }
    }
}

impl From<&str> for StopSequence {
    fn from(s: &str) -> Self {
        StopSequence::Single(s.to_string())
    }
}

impl From<String> for StopSequence {
    fn from(s: String) -> Self {
        StopSequence::Single(s)
    }
}

impl From<Vec<String>> for StopSequence {
    fn from(v: Vec<String>) -> Self {
        StopSequence::Multiple(v)
    }
}

impl From<Vec<&str>> for StopSequence {
    fn from(v: Vec<&str>) -> Self {
        StopSequence::Multiple(v.into_iter().map(str::to_string).collect())
    }
}

impl<const N: usize> From<[&str; N]> for StopSequence {
    fn from(v: [&str; N]) -> Self {
        StopSequence::Multiple(v.into_iter().map(str::to_string).collect())
    }
}

/// Why a choice stopped generating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-sequence token or a stop sequence.
    Stop,
    /// `max_tokens` or the context length was reached.
    Length,
    /// The model called tools.
    ToolCalls,
    /// Content was filtered (never produced by ferrite; here for OpenAI compatibility).
    ContentFilter,
}

/// Options of a streamed response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    /// Send a last chunk with empty `choices` and the request's `usage`.
    #[serde(default)]
    pub include_usage: bool,
}

/// `response_format`: plain text, any JSON object, or JSON matching a schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text (the default).
    Text,
    /// Any valid JSON object (`{"type":"json"}` is read as this too).
    #[serde(alias = "json")]
    JsonObject,
    /// JSON valid under `json_schema.schema`.
    JsonSchema {
        /// The schema and its name.
        json_schema: JsonSchemaFormat,
    },
}

impl ResponseFormat {
    /// `{"type":"json_schema"}` with a name and a schema, strict.
    pub fn json_schema(name: impl Into<String>, schema: Value) -> Self {
        ResponseFormat::JsonSchema {
            json_schema: JsonSchemaFormat {
                name: name.into(),
                description: None,
                schema: Some(schema),
                strict: Some(true),
            },
        }
    }
}

/// The schema of a `json_schema` response format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonSchemaFormat {
    /// Name of the format (letters, digits, `_` and `-`).
    pub name: String,
    /// What the format is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON Schema the output must satisfy (required by `validate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// Whether the output must follow the schema exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// The kind of a tool; only functions exist.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolType {
    /// A function the model may call.
    #[default]
    Function,
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    /// Always `"function"`.
    #[serde(rename = "type")]
    pub kind: ToolType,
    /// The function.
    pub function: FunctionDefinition,
}

impl Tool {
    /// A function tool with a description and a JSON Schema for its parameters.
    pub fn function(name: impl Into<String>, description: impl Into<String>, parameters: Value) -> Self {
        Tool {
            kind: ToolType::Function,
            function: FunctionDefinition {
                name: name.into(),
                description: Some(description.into()),
                parameters: Some(parameters),
                strict: None,
            },
        }
    }
}

/// A function's name, description and parameter schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FunctionDefinition {
    /// The function's name.
    pub name: String,
    /// What the function does, for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Whether the arguments must follow the schema exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `tool_choice`: `"none"`, `"auto"`, `"required"` or `{"type":"function","function":{"name":..}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ToolChoice {
    /// One of the modes.
    Mode(ToolChoiceMode),
    /// Call this function.
    Named(NamedToolChoice),
}

impl ToolChoice {
    /// `{"type":"function","function":{"name": name}}`.
    pub fn function(name: impl Into<String>) -> Self {
        ToolChoice::Named(NamedToolChoice { kind: ToolType::Function, function: FunctionName { name: name.into() } })
    }
}

/// The string forms of `tool_choice`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoiceMode {
    /// Never call tools.
    None,
    /// The model decides.
    Auto,
    /// The model must call at least one tool.
    Required,
}

/// `tool_choice` naming one function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamedToolChoice {
    /// Always `"function"`.
    #[serde(rename = "type")]
    pub kind: ToolType,
    /// The function to call.
    pub function: FunctionName,
}

/// A function named by `tool_choice`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FunctionName {
    /// The function's name.
    pub name: String,
}

/// A tool call made by the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    /// Call id, quoted back by the `tool` message that answers it.
    pub id: String,
    /// Always `"function"`.
    #[serde(rename = "type")]
    pub kind: ToolType,
    /// The function and its arguments.
    pub function: FunctionCall,
}

/// The function a tool call invokes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FunctionCall {
    /// The function's name.
    pub name: String,
    /// The arguments as a JSON *string* (as OpenAI sends them; may be invalid JSON).
    pub arguments: String,
}

/// A piece of a tool call in a streamed delta.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ToolCallDelta {
    /// Which call of the message this piece belongs to.
    pub index: u32,
    /// Call id (first piece only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `"function"` (first piece only).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ToolType>,
    /// Name (first piece) and a fragment of the arguments string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCallDelta>,
}

/// A fragment of a streamed function call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FunctionCallDelta {
    /// The function's name (first piece only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The next fragment of the arguments string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

/// Chat log-probabilities of one choice (`choices[].logprobs`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatLogprobs {
    /// One entry per generated content token.
    pub content: Option<Vec<ChatTokenLogprob>>,
}

/// The log-probability of one generated token, with the most likely alternatives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatTokenLogprob {
    /// The token's text.
    pub token: String,
    /// Its log-probability.
    pub logprob: f32,
    /// Its UTF-8 bytes (a token may hold part of a character).
    pub bytes: Option<Vec<u8>>,
    /// The `top_logprobs` most likely tokens at this position.
    pub top_logprobs: Vec<TopLogprob>,
}

/// One alternative token at a position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TopLogprob {
    /// The token's text.
    pub token: String,
    /// Its log-probability.
    pub logprob: f32,
    /// Its UTF-8 bytes.
    pub bytes: Option<Vec<u8>>,
}

/// Text-completion log-probabilities of one choice (the legacy format).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CompletionLogprobs {
    /// The tokens' texts (echoed prompt tokens first when `echo` is set).
    pub tokens: Vec<String>,
    /// Their log-probabilities; `null` for the first echoed prompt token.
    pub token_logprobs: Vec<Option<f32>>,
    /// Per token, the most likely alternatives as token text → log-probability; `null` for the
    /// first echoed prompt token.
    pub top_logprobs: Vec<Option<BTreeMap<String, f32>>>,
    /// Per token, its character offset in the choice's text.
    pub text_offset: Vec<u32>,
}
