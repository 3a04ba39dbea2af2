//! ferrite-scheduler: the engine loop around a model.
//!
//! * [`engine`]: continuous batching ([`EngineCore`], on its own thread behind an
//!   [`EngineHandle`]): chunked prefill and decode in one step, admission by free KV blocks,
//!   recompute preemption, `n` choices sharing their prompt's blocks, stop strings, logprobs.
//! * [`embed`]: the embedding worker ([`EmbedHandle`]): encoder batches packed by a token
//!   budget from all waiting requests.
//! * [`image`]: the image worker ([`ImageHandle`]): text-to-image jobs under their own
//!   concurrency limit and bounded queue, cancelled between denoising steps.
//! * [`KvCacheManager`] over a [`BlockPool`]: per-sequence block tables, prefix caching by
//!   block-content hashes, LRU eviction.
//! * [`Sampler`]: per-sequence sampling (temperature, top-k/p, min-p, penalties, logit bias,
//!   seeds, logprobs).
//! * [`RequestLatency`]: time-to-first-token, time-per-output-token and end-to-end histograms.

pub mod block_pool;
pub mod embed;
pub mod engine;
pub mod image;
pub mod kv_cache_manager;
pub mod latency;
pub mod sampler;

pub use block_pool::{BlockHash, BlockId, BlockPool};
pub use embed::{EmbedHandle, EmbedModel, EmbedReply, EmbedResult, EmbedSubmitError};
pub use engine::{
    EngineConfig, EngineCore, EngineHandle, EngineStats, Event, EventSink, FinishReason, LlamaRunner, LogitsProcessor,
    Request, RequestId, StepModel, SubmitError, TokenLogprob, TokenText, Usage,
};
pub use image::{
    CancelFlag, ImageHandle, ImageJob, ImageJobError, ImageModel, ImageProgress, ImageReply, ImageResult,
    ImageSubmitError,
};
pub use kv_cache_manager::{ComputedBlocks, KvCacheManager, SeqId};
pub use latency::{Histogram, RequestLatency};
pub use sampler::{argmax, token_logprobs, Sampled, Sampler, SamplingError, SamplingParams};
