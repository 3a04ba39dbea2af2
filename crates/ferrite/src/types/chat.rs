//! `POST /chat/completions`: the request, its messages, and how it is validated.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::sampling::{sampling_request, MAX_TOP_LOGPROBS};
use crate::types::{InvalidField, ResponseFormat, Tool, ToolCall, ToolChoice, ToolChoiceMode};

sampling_request! {
    /// A chat completion request, as OpenAI's `POST /chat/completions` body.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct ChatCompletionRequest {
        /// The conversation so far.
        pub messages: Vec<ChatMessage>,
        /// Most tokens to generate per choice; OpenAI's newer name for `max_tokens`, and wins
        /// over it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub max_completion_tokens: Option<u32>,
        /// Return the log-probability of each generated token.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pub logprobs: bool,
        /// With `logprobs`, how many likely alternatives to return per position, `0..=20`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub top_logprobs: Option<u32>,
        /// Free text (default), any JSON object, or JSON matching a schema.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub response_format: Option<ResponseFormat>,
        /// Functions the model may call.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub tools: Option<Vec<Tool>>,
        /// Whether and which tools the model must call.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub tool_choice: Option<ToolChoice>,
        /// Whether the model may call several tools in one turn.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub parallel_tool_calls: Option<bool>,
        /// Accepted and ignored (OpenAI stores completions for its dashboard).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub store: Option<bool>,
        /// Accepted and ignored (key/value tags for stored completions).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub metadata: Option<BTreeMap<String, String>>,
        /// Accepted and ignored (OpenAI's processing tier).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub service_tier: Option<String>,
        /// Only `["text"]` is supported; other output modalities are rejected by `validate`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub modalities: Option<Vec<String>>,
        /// Audio output: not supported, rejected by `validate`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub audio: Option<Value>,
        /// Predicted outputs: not supported, rejected by `validate`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub prediction: Option<Value>,
    }
}

impl ChatCompletionRequest {
    /// A request for `model` with these messages; everything else at its default.
    pub fn new(model: impl Into<String>, messages: impl IntoIterator<Item = ChatMessage>) -> Self {
        ChatCompletionRequest { model: model.into(), messages: messages.into_iter().collect(), ..Default::default() }
    }

    /// Sets `tools`.
    pub fn tools(mut self, tools: impl IntoIterator<Item = Tool>) -> Self {
        self.tools = Some(tools.into_iter().collect());
        self
    }

    /// Sets `tool_choice`.
    pub fn tool_choice(mut self, choice: ToolChoice) -> Self {
        self.tool_choice = Some(choice);
        self
    }

    /// Sets `response_format`.
    pub fn response_format(mut self, format: ResponseFormat) -> Self {
        self.response_format = Some(format);
        self
    }

    /// Asks for log-probabilities with `top` alternatives per position.
    pub fn logprobs(mut self, top: u32) -> Self {
        self.logprobs = true;
        self.top_logprobs = Some(top);
        self
    }

    /// Most tokens to generate per choice: `max_completion_tokens`, else `max_tokens`; `None`
    /// means up to the end of the context.
    pub fn max_new_tokens(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// Checks the rules a parser cannot: non-empty messages well formed for their roles, the
    /// shared sampling fields, `max_tokens`, log-probabilities, tools and response format, and
    /// rejects the features ferrite cannot honour.
    pub fn validate(&self) -> Result<(), InvalidField> {
        if self.messages.is_empty() {
            return Err(InvalidField::new("messages", "messages must contain at least one message"));
        }
        for (i, m) in self.messages.iter().enumerate() {
            m.validate(i)?;
        }
        self.validate_sampling()?;
        for (param, v) in [("max_tokens", self.max_tokens), ("max_completion_tokens", self.max_completion_tokens)] {
            if v == Some(0) {
                return Err(InvalidField::new(param, format!("{param} must be at least 1")));
            }
        }
        if let Some(top) = self.top_logprobs {
            if top > MAX_TOP_LOGPROBS {
                let msg = format!("top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}, got {top}");
                return Err(InvalidField::new("top_logprobs", msg));
            }
            if !self.logprobs {
                return Err(InvalidField::new("top_logprobs", "top_logprobs requires logprobs to be true"));
            }
        }
        self.validate_tools()?;
        if let Some(ResponseFormat::JsonSchema { json_schema }) = &self.response_format {
            if json_schema.schema.is_none() {
                let msg = "response_format json_schema needs a schema";
                return Err(InvalidField::new("response_format.json_schema.schema", msg));
            }
        }
        if self.modalities.as_ref().is_some_and(|m| m.iter().any(|m| m != "text")) {
            return Err(InvalidField::new("modalities", "only the \"text\" output modality is supported"));
        }
        if self.audio.is_some() {
            return Err(InvalidField::new("audio", "audio output is not supported"));
        }
        if self.prediction.is_some() {
            return Err(InvalidField::new("prediction", "predicted outputs are not supported"));
        }
        Ok(())
    }

    fn validate_tools(&self) -> Result<(), InvalidField> {
        let tools = self.tools.as_deref().unwrap_or_default();
        match &self.tool_choice {
            Some(ToolChoice::Mode(ToolChoiceMode::Required)) if tools.is_empty() => {
                Err(InvalidField::new("tool_choice", "tool_choice \"required\" needs tools"))
            }
            Some(ToolChoice::Named(named)) if !tools.iter().any(|t| t.function.name == named.function.name) => {
                let msg = format!("tool_choice names function {:?}, which is not in tools", named.function.name);
                Err(InvalidField::new("tool_choice", msg))
            }
            _ => Ok(()),
        }
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Instructions to the model.
    System,
    /// Instructions to the model (OpenAI's newer name for `system`).
    Developer,
    /// The user.
    #[default]
    User,
    /// The model.
    Assistant,
    /// The result of a tool call.
    Tool,
}

impl Role {
    /// The role's name as in JSON (`"user"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One message of a conversation.
///
/// Unknown fields are tolerated here (not at the request's top level): clients often send back
/// the assistant messages they received, with OpenAI-only fields such as `refusal` or
/// `annotations`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// Its text; `null` only for an assistant message with `tool_calls`.
    #[serde(default)]
    pub content: Option<MessageContent>,
    /// Optional name of the author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The tool calls of an assistant message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// For a `tool` message: the id of the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    /// A message with text content.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        ChatMessage { role, content: Some(MessageContent::Text(content.into())), ..Default::default() }
    }
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }
    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
    /// An assistant message that calls tools (no content).
    pub fn assistant_tool_calls(tool_calls: Vec<ToolCall>) -> Self {
        ChatMessage { role: Role::Assistant, tool_calls: Some(tool_calls), ..Default::default() }
    }
    /// The result of the tool call `tool_call_id`.
    pub fn tool(tool_call_id: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage { tool_call_id: Some(tool_call_id.into()), ..Self::new(Role::Tool, content) }
    }

    /// The content as one string (text parts joined by newlines; empty when `null`).
    pub fn text(&self) -> String {
        self.content.as_ref().map(MessageContent::to_text).unwrap_or_default()
    }

    fn validate(&self, i: usize) -> Result<(), InvalidField> {
        let param = |field: &str| format!("messages[{i}].{field}");
        let role = self.role.as_str();
        if self.content.is_none() && !(self.role == Role::Assistant && self.tool_calls.is_some()) {
            let msg = format!("messages[{i}]: a {role} message needs content");
            return Err(InvalidField::new(param("content"), msg));
        }
        if self.tool_calls.is_some() && self.role != Role::Assistant {
            let msg = format!("messages[{i}]: only assistant messages may have tool_calls, not {role}");
            return Err(InvalidField::new(param("tool_calls"), msg));
        }
        match (self.role, &self.tool_call_id) {
            (Role::Tool, None) => Err(InvalidField::new(
                param("tool_call_id"),
                format!("messages[{i}]: a tool message needs tool_call_id"),
            )),
            (r, Some(_)) if r != Role::Tool => {
                let msg = format!("messages[{i}]: only tool messages may have tool_call_id, not {role}");
                Err(InvalidField::new(param("tool_call_id"), msg))
            }
            _ => Ok(()),
        }
    }
}

/// A message's content: a string, or an array of content parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Content parts (only text parts are supported).
    Parts(Vec<ContentPart>),
}

impl MessageContent {
    /// The text, with parts joined by newlines.
    pub fn to_text(&self) -> String {
        match self {
            MessageContent::Text(s) => s.clone(),
            MessageContent::Parts(parts) => {
                parts.iter().map(|ContentPart::Text { text }| text.as_str()).collect::<Vec<_>>().join("\n")
            }
        }
    }
}

impl From<&str> for MessageContent {
    fn from(s: &str) -> Self {
        MessageContent::Text(s.to_string())
    }
}

impl From<String> for MessageContent {
    fn from(s: String) -> Self {
        MessageContent::Text(s)
    }
}

/// One part of a message's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ContentPart {
    /// `{"type":"text","text":...}`.
    Text {
        /// The text.
        text: String,
    },
}
