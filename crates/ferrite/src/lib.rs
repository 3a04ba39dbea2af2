//! ferrite for Rust programs: the typed OpenAI-style requests and responses that library users
//! and the `ferrite` HTTP server share.
//!
//! ```
//! use ferrite::{ChatCompletionRequest, ChatMessage};
//!
//! let req = ChatCompletionRequest::new("smollm2", [ChatMessage::system("Be brief."), ChatMessage::user("Hi!")])
//!     .max_tokens(32)
//!     .temperature(0.0);
//! req.validate().unwrap();
//! ```

#![deny(missing_docs)]

pub mod types;

pub use types::*;
