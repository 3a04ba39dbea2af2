//! The OpenAI error body, and the validation error that becomes one.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The body OpenAI sends with every error status: `{"error":{"message","type","param","code"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The fields of an OpenAI error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorDetail {
    /// A human-readable explanation.
    pub message: String,
    /// The error class, e.g. `invalid_request_error`, `authentication_error`, `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault, if any (`null` otherwise).
    pub param: Option<String>,
    /// A machine-readable code such as `context_length_exceeded` or `model_not_found`.
    pub code: Option<String>,
}

impl ErrorBody {
    /// An error body of the given type with no `param` or `code`.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorBody { error: ErrorDetail { message: message.into(), kind: kind.into(), param: None, code: None } }
    }

    /// Sets `param`.
    pub fn param(mut self, param: impl Into<String>) -> Self {
        self.error.param = Some(param.into());
        self
    }

    /// Sets `code`.
    pub fn code(mut self, code: impl Into<String>) -> Self {
        self.error.code = Some(code.into());
        self
    }
}

/// A request that parsed but breaks a rule (a range, a combination of fields).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidField {
    /// What is wrong, for the client.
    pub message: String,
    /// The field at fault, e.g. `messages` or `tool_choice`.
    pub param: Option<String>,
}

impl InvalidField {
    /// An error about `param`.
    pub fn new(param: impl Into<String>, message: impl Into<String>) -> Self {
        InvalidField { message: message.into(), param: Some(param.into()) }
    }
}

impl From<InvalidField> for ErrorBody {
    fn from(e: InvalidField) -> Self {
        ErrorBody {
            error: ErrorDetail { message: e.message, kind: "invalid_request_error".into(), param: e.param, code: None },
        }
    }
}
