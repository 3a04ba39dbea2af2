//! [`Engine`]: a loaded model behind the continuous-batching scheduler, answering OpenAI-style
//! requests.

mod builder;
mod chat;
mod completion;
mod embed;
mod events;
mod grammar;
mod image;
mod options;
mod png;
mod request;
mod tools;

use std::sync::Arc;

use ferrite_chat::{ChatTemplate, Tokenizer};
use ferrite_scheduler::engine::Limits;
use ferrite_scheduler::EngineHandle;

pub use builder::{devices, EngineBuilder};
pub use events::{ChatCompletionStream, CompletionStream};
pub use ferrite_scheduler::{EngineStats, Histogram, RequestLatency};
pub use options::{LogitsProcessor, RequestOptions};

use crate::types::{
    ChatCompletionRequest, ChatCompletionResponse, CompletionRequest, CompletionResponse, EmbeddingRequest,
    EmbeddingResponse, ImageGenerationRequest, ImagesResponse,
};
use crate::Error;

/// A model ready to serve requests. Cheap to clone: clones share the model and its scheduler,
/// and requests from all of them are batched together.
///
/// A generative model answers chat and completions; an embedding model (a sentence-transformers
/// or BERT-style folder) answers [`Engine::embed`]; an image model (a diffusers FLUX folder)
/// answers [`Engine::generate_images`]. Asking one for another's kind of request is an
/// [`Error::InvalidRequest`].
#[derive(Clone)]
pub struct Engine {
    model: Model,
}

#[derive(Clone)]
enum Model {
    Generator(Arc<Inner>),
    Embedder(Arc<embed::Embedder>),
    Imager(Arc<image::Imager>),
}

pub(crate) struct Inner {
    handle: EngineHandle,
    tokenizer: Arc<Tokenizer>,
    template: ChatTemplate,
    name: String,
    limits: Limits,
    kv_cache_bytes: usize,
    /// The vocabulary compiled for constrained decoding, built at the first request that needs it.
    grammar: std::sync::OnceLock<Result<ferrite_grammar::GrammarVocabulary, String>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("model", &self.model_name()).finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts configuring an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The model's name (its file or folder name).
    pub fn model_name(&self) -> &str {
        match &self.model {
            Model::Generator(g) => &g.name,
            Model::Embedder(e) => &e.name,
            Model::Imager(i) => &i.name,
        }
    }

    /// Whether this is an embedding model (answers [`Engine::embed`], not chat or completions).
    pub fn is_embedding_model(&self) -> bool {
        matches!(self.model, Model::Embedder(_))
    }

    /// Whether this is an image model (answers [`Engine::generate_images`] only).
    pub fn is_image_model(&self) -> bool {
        matches!(self.model, Model::Imager(_))
    }

    /// The length of the model's embedding vectors (`None` for a generative model).
    pub fn embedding_dimensions(&self) -> Option<usize> {
        match &self.model {
            Model::Generator(_) | Model::Imager(_) => None,
            Model::Embedder(e) => Some(e.dim),
        }
    }

    /// The longest sequence (prompt plus completion) a request may use: the model's context
    /// length, or the KV cache if that is smaller. For an embedding model, the longest input;
    /// 0 for an image model.
    pub fn context_length(&self) -> usize {
        match &self.model {
            Model::Generator(g) => g.limits.max_sequence(),
            Model::Embedder(e) => e.max_tokens,
            Model::Imager(_) => 0,
        }
    }

    /// Bytes of the KV cache (allocated once at build time; 0 for embedding and image models).
    pub fn kv_cache_bytes(&self) -> usize {
        match &self.model {
            Model::Generator(g) => g.kv_cache_bytes,
            Model::Embedder(_) | Model::Imager(_) => 0,
        }
    }

    /// The tokenizer of a text model (`None` for an image model, whose text encoders each have
    /// their own).
    pub fn tokenizer(&self) -> Option<&Tokenizer> {
        match &self.model {
            Model::Generator(g) => Some(&g.tokenizer),
            Model::Embedder(e) => Some(&e.tokenizer),
            Model::Imager(_) => None,
        }
    }

    /// Scheduler counters: queue depth, running sequences, KV blocks, tokens (all zero for an
    /// embedding model). For an image model, `waiting` and `running` count image jobs, `steps`
    /// the denoising steps done, and the rest is zero.
    pub fn stats(&self) -> EngineStats {
        match &self.model {
            Model::Generator(g) => g.handle.stats(),
            Model::Embedder(_) => EngineStats::default(),
            Model::Imager(i) => {
                let (waiting, running, steps) = (i.handle.waiting(), i.handle.running(), i.handle.steps());
                EngineStats { waiting, running, steps, ..EngineStats::default() }
            }
        }
    }

    /// Latency histograms of the finished generation requests: time to first token, time per
    /// output token, end to end (empty for embedding and image models).
    pub fn latency(&self) -> RequestLatency {
        match &self.model {
            Model::Generator(g) => g.handle.latency(),
            Model::Embedder(_) | Model::Imager(_) => RequestLatency::default(),
        }
    }

    /// Embeds the request's inputs, one vector per input. Concurrent requests are batched
    /// together. Inputs longer than the model's positions, `dimensions` above the model's, or a
    /// generative model are [`Error::InvalidRequest`]s.
    pub async fn embed(&self, req: EmbeddingRequest) -> Result<EmbeddingResponse, Error> {
        match &self.model {
            Model::Embedder(e) => e.embed(req).await,
            Model::Generator(_) | Model::Imager(_) => {
                Err(Error::invalid("model", format!("model {} does not support embeddings", req.model)))
            }
        }
    }

    /// Generates `n` images of the prompt (an image model), as base64 PNGs. Jobs run on the
    /// image worker under its concurrency limit; dropping the future cancels the job after its
    /// current denoising step. A bad size, `n`, `response_format` or an option the model cannot
    /// use, or a text model, is an [`Error::InvalidRequest`].
    pub async fn generate_images(&self, req: ImageGenerationRequest) -> Result<ImagesResponse, Error> {
        self.generate_images_with_progress(req, |_, _| {}).await
    }

    /// [`Engine::generate_images`], with `progress(done, total)` called after each denoising
    /// step (on the worker thread).
    pub async fn generate_images_with_progress(
        &self,
        req: ImageGenerationRequest,
        progress: impl FnMut(usize, usize) + Send + 'static,
    ) -> Result<ImagesResponse, Error> {
        match &self.model {
            Model::Imager(i) => i.generate(req, Some(Box::new(progress))).await,
            Model::Generator(_) | Model::Embedder(_) => {
                let model = req.model.as_deref().unwrap_or(self.model_name());
                Err(Error::invalid("model", format!("model {model} does not generate images")))
            }
        }
    }

    /// The generative model, or the error for asking embedding or image model `model` for
    /// `what`.
    fn generator(&self, what: &str, model: &str) -> Result<&Arc<Inner>, Error> {
        match &self.model {
            Model::Generator(g) => Ok(g),
            Model::Embedder(_) | Model::Imager(_) => {
                Err(Error::invalid("model", format!("model {model} does not support {what}")))
            }
        }
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
        let inner = self.generator("chat completions", &req.model)?;
        let mut run = chat::start(inner, &req, options)?;
        let mut acc = chat::ChatCollector::new(inner, &req, run.n);
        while let Some(ev) = run.next().await {
            acc.push(&inner.tokenizer, ev)?;
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
        let inner = self.generator("chat completions", &req.model)?;
        let run = chat::start(inner, &req, options)?;
        let chunker = chat::ChatChunker::new(inner, &req, &run);
        Ok(ChatCompletionStream::new(run, chunker, inner.clone()))
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
        let inner = self.generator("completions", &req.model)?;
        let mut run = completion::start(inner, &req, options)?;
        let mut acc = completion::CompletionCollector::new(&req, &run, &inner.tokenizer);
        while let Some(ev) = run.next().await {
            acc.push(&inner.tokenizer, ev)?;
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
        let inner = self.generator("completions", &req.model)?;
        let run = completion::start(inner, &req, options)?;
        let chunker = completion::CompletionChunker::new(&req, &run, &inner.tokenizer);
        Ok(CompletionStream::new(run, chunker, inner.clone()))
    }
}

/// Seconds since the Unix epoch (the `created` field).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
