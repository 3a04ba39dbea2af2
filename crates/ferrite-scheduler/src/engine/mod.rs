//! The engine loop: continuous batching over a paged KV cache.
//!
//! * [`Request`] in, [`Event`]s out: a request is submitted with a [`EventSink`]; the engine
//!   sends text deltas (valid UTF-8 only, stop strings never emitted), per-token logprobs,
//!   finish reasons and usage through it. A sink that reports its receiver gone cancels the
//!   request and frees its blocks at once.
//! * [`EngineCore`] runs one step at a time: the decode tokens of every running sequence, then
//!   prefill chunks of sequences still reading their prompt, then newly admitted ones, all
//!   under a token budget. Admission needs free KV blocks; when a running sequence cannot grow,
//!   the most recently admitted one is preempted (its blocks freed, recomputed later).
//! * [`EngineHandle`] runs the core on its own thread, fed by a channel, so async callers never
//!   block on compute.
//! * [`StepModel`] is what the core drives: one forward over a [`ferrite_models::Batch`].
//!   [`LlamaRunner`] is the real one; tests use small fakes.

mod core;
mod handle;
mod runner;
mod sequence;
mod text;

#[cfg(test)]
mod tests;

pub use self::core::{EngineConfig, EngineCore, EngineStats, Limits};
pub use handle::EngineHandle;
pub use runner::{LlamaRunner, StepModel, TokenText};

use crate::SamplingParams;

/// Identifies a submitted request.
pub type RequestId = u64;

/// Changes the logits of one sequence before sampling (e.g. a grammar mask). `generated` holds
/// the tokens this sequence has produced so far.
pub trait LogitsProcessor: Send {
    /// Edits `logits` (length: the vocabulary) in place.
    fn process(&mut self, generated: &[u32], logits: &mut [f32]);
}

/// One generation request: `n` choices continuing the same prompt.
pub struct Request {
    /// Prompt token ids (not empty).
    pub prompt: Vec<u32>,
    /// Sampling settings; choice `i` draws with seed `sampling.seed + i`.
    pub sampling: SamplingParams,
    /// Upper bound of generated tokens per choice.
    pub max_tokens: usize,
    /// Number of choices.
    pub n: usize,
    /// Stop strings: generation ends before the first occurrence, which is never emitted.
    pub stop: Vec<String>,
    /// Token ids that end a choice (besides the model's end-of-generation tokens).
    pub stop_token_ids: Vec<u32>,
    /// Keep going past end-of-generation tokens.
    pub ignore_eos: bool,
    /// Per generated token: its logprob and this many top alternatives (`None`: no logprobs).
    pub logprobs: Option<usize>,
    /// Logprobs of every prompt token with this many alternatives (for `echo`).
    pub prompt_logprobs: Option<usize>,
    /// One processor per choice (empty: none; otherwise exactly `n`).
    pub logits_processors: Vec<Box<dyn LogitsProcessor>>,
}

impl Request {
    /// A greedy request for `max_tokens` tokens with nothing else set.
    pub fn greedy(prompt: Vec<u32>, max_tokens: usize) -> Request {
        Request {
            prompt,
            sampling: SamplingParams::default(),
            max_tokens,
            n: 1,
            stop: Vec::new(),
            stop_token_ids: Vec::new(),
            ignore_eos: false,
            logprobs: None,
            prompt_logprobs: None,
            logits_processors: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("prompt_len", &self.prompt.len())
            .field("sampling", &self.sampling)
            .field("max_tokens", &self.max_tokens)
            .field("n", &self.n)
            .field("stop", &self.stop)
            .finish_non_exhaustive()
    }
}

/// Why a choice ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token, a stop token id or a stop string.
    Stop,
    /// `max_tokens` or the model's context length.
    Length,
}

/// A token's log-probability and its most likely alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub token: u32,
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

/// Token counts of a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    /// Summed over all choices.
    pub completion_tokens: usize,
    /// Prompt tokens whose KV came from the prefix cache.
    pub cached_tokens: usize,
}

/// What the engine reports about a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Per prompt token, its logprob given the tokens before it (`None` for the first).
    PromptLogprobs(Vec<Option<TokenLogprob>>),
    /// Newly generated tokens of choice `index` and the text that became final with them
    /// (possibly empty: held back for a stop string or an incomplete character).
    Delta { index: usize, text: String, tokens: Vec<u32>, logprobs: Vec<TokenLogprob> },
    /// Choice `index` ended after `completion_tokens` tokens; `usage` is the request's so far
    /// (completion tokens of the choices ended until now).
    Finished { index: usize, reason: FinishReason, completion_tokens: usize, usage: Usage },
    /// Every choice has ended; the request's totals. The last event of a request.
    Done(Usage),
    /// The request failed inside the engine; the last event of a request.
    Error(String),
}

/// Receives a request's events; returns false when nobody listens any more, which cancels
/// the request.
pub type EventSink = Box<dyn FnMut(Event) -> bool + Send>;

/// Why a request was refused at submission.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SubmitError {
    /// The request is malformed; `param` names the offending field.
    #[error("{message}")]
    Invalid { message: String, param: Option<&'static str> },
    /// The prompt (plus the requested tokens) does not fit the model's context.
    #[error("{0}")]
    ContextLength(String),
    /// The queue is full.
    #[error("the engine is overloaded: {0} requests are waiting")]
    Overloaded(usize),
    /// The engine thread has stopped.
    #[error("the engine has stopped")]
    Stopped,
}
