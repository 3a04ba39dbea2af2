//! ferrite-scheduler: the engine loop around a model. Today: per-sequence sampling
//! ([`Sampler`]) and the paged KV-cache block manager ([`KvCacheManager`] over a
//! [`BlockPool`] with prefix caching); the continuous-batching loop follows (issue #4).

pub mod block_pool;
pub mod kv_cache_manager;
pub mod sampler;

pub use block_pool::{BlockHash, BlockId, BlockPool};
pub use kv_cache_manager::{ComputedBlocks, KvCacheManager, SeqId};
pub use sampler::{argmax, token_logprobs, Sampled, Sampler, SamplingError, SamplingParams};
