//! Chat-side text handling for ferrite.
//!
//! Today this crate holds the [`tokenizer`]: a [`Tokenizer`] built either from a GGUF file's
//! `tokenizer.ggml.*` metadata (GPT-2 byte-level BPE and SentencePiece-style vocabularies,
//! reproducing llama.cpp's tokenization token for token) or from a Hugging Face
//! `tokenizer.json`. Chat templates, tool-call parsing and grammars will live beside it.

mod error;
pub mod tokenizer;

pub use error::{Error, Result};
pub use tokenizer::Tokenizer;
