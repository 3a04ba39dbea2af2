//! One choice of one request as the engine tracks it.

use super::text::TextState;
use super::{LogitsProcessor, RequestId};
use crate::{Sampler, SeqId};

/// A sequence: its tokens, how many of them have KV in the cache, and its sampling state.
pub(crate) struct Sequence {
    pub id: SeqId,
    pub request: RequestId,
    /// Choice index within the request.
    pub index: usize,
    /// Prompt followed by the generated tokens.
    pub tokens: Vec<u32>,
    pub prompt_len: usize,
    /// Leading tokens whose keys/values are in the cache.
    pub computed: usize,
    pub sampler: Sampler,
    pub processor: Option<Box<dyn LogitsProcessor>>,
    pub text: TextState,
}

impl Sequence {
    /// Tokens still to run through the model before the next token can be sampled.
    pub fn remaining(&self) -> usize {
        self.tokens.len() - self.computed
    }

    /// Still reading its prompt for the first time (prompt logprobs are collected then).
    pub fn in_first_prefill(&self) -> bool {
        self.computed < self.prompt_len && self.tokens.len() == self.prompt_len
    }
}
