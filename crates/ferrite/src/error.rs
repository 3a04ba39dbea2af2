//! The facade's error type.

use ferrite_scheduler::SubmitError;

use crate::types::InvalidField;

/// What can go wrong when building an engine or running a request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request is malformed or cannot be served (an HTTP server answers 400). `code` is
    /// `context_length_exceeded` when the prompt and completion do not fit the context.
    #[error("{message}")]
    InvalidRequest {
        /// What is wrong.
        message: String,
        /// The request field at fault.
        param: Option<String>,
        /// A machine-readable code.
        code: Option<String>,
    },
    /// Too many requests are queued (an HTTP server answers 503).
    #[error("the engine is overloaded: {0}")]
    Overloaded(String),
    /// The model could not be loaded or fetched.
    #[error("loading the model: {0}")]
    Load(String),
    /// A failure inside the engine.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn invalid(param: &str, message: impl Into<String>) -> Error {
        Error::InvalidRequest { message: message.into(), param: Some(param.to_string()), code: None }
    }

    /// Turns a refused submission into the facade's error; `prompt_param` names the field
    /// holding the prompt (`messages` or `prompt`).
    pub(crate) fn from_submit(e: SubmitError, prompt_param: &str) -> Error {
        match e {
            SubmitError::Invalid { message, param } => Error::InvalidRequest {
                message,
                param: Some(match param {
                    Some("prompt") | None => prompt_param.to_string(),
                    Some(p) => p.to_string(),
                }),
                code: None,
            },
            SubmitError::ContextLength(message) => Error::InvalidRequest {
                message,
                param: Some(prompt_param.to_string()),
                code: Some("context_length_exceeded".into()),
            },
            SubmitError::Overloaded(_) => Error::Overloaded(e.to_string()),
            SubmitError::Stopped => Error::Internal(e.to_string()),
        }
    }
}

impl From<InvalidField> for Error {
    fn from(e: InvalidField) -> Error {
        Error::InvalidRequest { message: e.message, param: e.param, code: None }
    }
}
