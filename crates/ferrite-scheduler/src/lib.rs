//! ferrite-scheduler: the engine loop around a model. Today: per-sequence sampling
//! ([`Sampler`]); continuous batching and the block manager follow (issue #4).

pub mod sampler;

pub use sampler::{Sampler, SamplingParams};
