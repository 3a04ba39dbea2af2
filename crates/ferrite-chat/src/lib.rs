//! Chat-side text handling for ferrite.
//!
//! * [`tokenizer`]: a [`Tokenizer`] built either from a GGUF file's `tokenizer.ggml.*` metadata
//!   (GPT-2 byte-level BPE and SentencePiece-style vocabularies, reproducing llama.cpp's
//!   tokenization token for token) or from a Hugging Face `tokenizer.json`.
//! * [`template`]: a [`ChatTemplate`], the model's Jinja chat template (from GGUF metadata or
//!   `tokenizer_config.json`, ChatML as the fallback) turning OpenAI-shaped messages and tools
//!   into the prompt text, byte for byte as Hugging Face's `apply_chat_template` does.
//! * [`tool_calls`]: the tool-call format a template teaches ([`ToolCallFormat`]), parsing calls
//!   out of whole or streamed output ([`ToolCallParser`]), and the Lark grammar forcing a call.

mod error;
pub mod template;
pub mod tokenizer;
pub mod tool_calls;

pub use error::{Error, Result};
pub use template::ChatTemplate;
pub use tokenizer::Tokenizer;
pub use tool_calls::{ParsedToolCall, ToolCallFormat, ToolCallParser};
