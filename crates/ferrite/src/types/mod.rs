//! OpenAI-compatible request and response bodies, with the field names of the OpenAI API.
//!
//! Requests reject unknown fields (as OpenAI does); `validate` checks the structural rules a
//! parser cannot (ranges, field combinations). Responses serialise exactly as OpenAI's: optional
//! fields are omitted where OpenAI omits them and `null` where OpenAI sends `null`.

pub(crate) mod base64;
mod chat;
mod chat_response;
mod common;
mod completion;
mod embeddings;
mod error;
mod images;
mod models;
mod sampling;
mod wire;

pub use chat::*;
pub use chat_response::*;
pub use common::*;
pub use completion::*;
pub use embeddings::*;
pub use error::*;
pub use images::*;
pub use models::*;
pub use sampling::{MAX_CHOICES, MAX_STOP_SEQUENCES, MAX_TOP_LOGPROBS};
