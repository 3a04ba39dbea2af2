//! ferrite for Rust programs: load a model, then chat or complete with the same typed
//! OpenAI-style requests and responses the `ferrite` HTTP server speaks.
//!
//! ```no_run
//! use ferrite::{ChatCompletionRequest, ChatMessage, Engine};
//!
//! # async fn run() -> Result<(), ferrite::Error> {
//! let engine = Engine::builder().model("smollm2").threads(2).build()?;
//! let req = ChatCompletionRequest::new("smollm2", [ChatMessage::system("Be brief."), ChatMessage::user("Hi!")])
//!     .max_tokens(32)
//!     .temperature(0.0);
//! let answer = engine.chat(req).await?;
//! println!("{}", answer.choices[0].message.content.as_deref().unwrap_or(""));
//! # Ok(())
//! # }
//! ```
//!
//! * [`Engine`]: async [`Engine::chat`] / [`Engine::complete`], and
//!   [`Engine::chat_stream`] / [`Engine::complete_stream`] returning a `futures` `Stream` of
//!   chunks (dropping it cancels the generation). Requests from every clone of an engine are
//!   batched together by the scheduler.
//! * [`Engine::embed`]: sentence embeddings from an embedding model (a sentence-transformers
//!   folder such as all-MiniLM-L6-v2), concurrent requests batched together.
//! * [`Engine::generate_images`]: text to image (base64 PNGs) from a diffusers FLUX folder, on
//!   its own worker threads under a concurrency limit.
//! * [`blocking`]: the same for programs without an async runtime.
//! * [`types`]: the OpenAI request and response bodies, with builders.
//! * [`RequestOptions`]: per-request extras such as a custom [`LogitsProcessor`].
//!
//! The default build is CPU-only and pulls in no HTTP stack and no async runtime (tokio's
//! channels only). The `server` feature adds [`server`]: the OpenAI-compatible HTTP server
//! that `ferrite serve` runs, to serve from your own program or mount in your axum app.

#![deny(missing_docs)]

pub mod blocking;
mod engine;
mod error;
mod models;
#[cfg(feature = "server")]
pub mod server;
pub mod types;

pub use engine::{
    devices, ChatCompletionStream, CompletionStream, Engine, EngineBuilder, EngineStats, Histogram, LogitsProcessor,
    RequestLatency, RequestOptions,
};
pub use error::Error;
pub use models::{default_chat_model, default_embedding_model};
pub use types::*;
