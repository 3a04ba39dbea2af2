//! [`Engine`]: a loaded model behind the continuous-batching scheduler, answering OpenAI-style
//! requests.

mod builder;
mod chat;
mod completion;
mod events;
mod options;
mod request;

use std::sync::Arc;

use ferrite_chat::{ChatTemplate, Tokenizer};
use ferrite_scheduler::engine::Limits;
use ferrite_scheduler::EngineHandle;

pub use builder::EngineBuilder;
pub use events::{ChatCompletionStream, CompletionStream};
pub use ferrite_scheduler::EngineStats;
pub use options::{LogitsProcessor, RequestOptions};

use crate::types::{ChatCompletionRequest, ChatCompletionResponse, CompletionRequest, CompletionResponse};
use crate::Error;

/// A model ready to serve requests. Cheap to clone: clones share the model and its scheduler,
/// and requests from all of them are batched together.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    handle: EngineHandle,
    tokenizer: Arc<Tokenizer>,
    template: ChatTemplate,
    name: String,
    limits: Limits,
    kv_cache_bytes: usize,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("model", &self.inner.name).finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts configuring an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The model's name (its file or folder name).
    pub fn model_name(&self) -> &str {
        &self.inner.name
    }

    /// The longest sequence (prompt plus completion) a request may use: the model's context
    /// length, or the KV cache if that is smaller.
    pub fn context_length(&self) -> usize {
        self.inner.limits.max_sequence()
    }

    /// Bytes of the KV cache (allocated once at build time).
    pub fn kv_cache_bytes(&self) -> usize {
        self.inner.kv_cache_bytes
    }

    /// The tokenizer of the model.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.inner.tokenizer
    }

    /// Scheduler counters: queue depth, running sequences, KV blocks, tokens.
    pub fn stats(&self) -> EngineStats {
        self.inner.handle.stats()
    }

    /// Answers a chat request (its `stream` flag is ignored: use [`Engine::chat_stream`]).
    pub async fn chat(&self, req: ChatCompletionRequest) -> Result<ChatCompletionResponse, Error> {
        self.chat_with(req, RequestOptions::default()).await
    }

    /// [`Engine::chat`] with per-request options (e.g. a logits processor).
    pub async fn chat_with(
        &self,
        req: ChatCompletionRequest,
        options: RequestOptions,
    ) -> Result<ChatCompletionResponse, Error> {
        let mut run = chat::start(&self.inner, &req, options)?;
        let mut acc = chat::ChatCollector::new(&req, run.n);
        while let Some(ev) = run.next().await {
            acc.push(&self.inner.tokenizer, ev)?;
        }
        acc.finish(&run)
    }

    /// Streams a chat answer chunk by chunk. The chunk with a choice's `finish_reason` carries
    /// the usage; with `stream_options.include_usage`, a last chunk with no choices carries it
    /// too. Dropping the stream cancels the generation.
    pub fn chat_stream(&self, req: ChatCompletionRequest) -> Result<ChatCompletionStream, Error> {
        self.chat_stream_with(req, RequestOptions::default())
    }

    /// [`Engine::chat_stream`] with per-request options.
    pub fn chat_stream_with(
        &self,
        req: ChatCompletionRequest,
        options: RequestOptions,
    ) -> Result<ChatCompletionStream, Error> {
        let run = chat::start(&self.inner, &req, options)?;
        let chunker = chat::ChatChunker::new(&req, &run);
        Ok(ChatCompletionStream::new(run, chunker, self.inner.clone()))
    }

    /// Answers a text completion request (its `stream` flag is ignored).
    pub async fn complete(&self, req: CompletionRequest) -> Result<CompletionResponse, Error> {
        self.complete_with(req, RequestOptions::default()).await
    }

    /// [`Engine::complete`] with per-request options.
    pub async fn complete_with(
        &self,
        req: CompletionRequest,
        options: RequestOptions,
    ) -> Result<CompletionResponse, Error> {
        let mut run = completion::start(&self.inner, &req, options)?;
        let mut acc = completion::CompletionCollector::new(&req, &run, &self.inner.tokenizer);
        while let Some(ev) = run.next().await {
            acc.push(&self.inner.tokenizer, ev)?;
        }
        acc.finish(&run)
    }

    /// Streams a text completion chunk by chunk; dropping the stream cancels it.
    pub fn complete_stream(&self, req: CompletionRequest) -> Result<CompletionStream, Error> {
        self.complete_stream_with(req, RequestOptions::default())
    }

    /// [`Engine::complete_stream`] with per-request options.
    pub fn complete_stream_with(
        &self,
        req: CompletionRequest,
        options: RequestOptions,
    ) -> Result<CompletionStream, Error> {
        let run = completion::start(&self.inner, &req, options)?;
        let chunker = completion::CompletionChunker::new(&req, &run, &self.inner.tokenizer);
        Ok(CompletionStream::new(run, chunker, self.inner.clone()))
    }
}

/// Seconds since the Unix epoch (the `created` field).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
