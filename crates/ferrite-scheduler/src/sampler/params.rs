//! The per-request sampling settings and their validation (OpenAI ranges and field names).

/// How to pick the next token (OpenAI / vLLM semantics).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature in [0, 2]; 0 (anything below 1e-5, as vLLM) means greedy.
    pub temperature: f32,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p`, in (0, 1]; 1 is off.
    pub top_p: f32,
    /// Keep the `top_k` most likely tokens; 0 is off.
    pub top_k: usize,
    /// Drop tokens whose probability is below `min_p` times that of the most likely one, in [0, 1]; 0 is off.
    pub min_p: f32,
    /// Subtracted once from the logit of every token generated so far, in [-2, 2].
    pub presence_penalty: f32,
    /// Subtracted from the logit of every generated token, times its count so far, in [-2, 2].
    pub frequency_penalty: f32,
    /// Over prompt and generated tokens (Hugging Face / llama.cpp): a positive logit is divided by it, a
    /// negative one multiplied; > 0, 1 is off.
    pub repetition_penalty: f32,
    /// `(token, bias)` pairs added to the logits, bias in [-100, 100] (each entry is added).
    pub logit_bias: Vec<(u32, f32)>,
    /// Seed of the sampler's random stream: the same seed gives the same tokens.
    pub seed: u64,
}

impl Default for SamplingParams {
    /// Greedy, no truncation, no penalties, no bias, seed 0.
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            repetition_penalty: 1.0,
            logit_bias: Vec::new(),
            seed: 0,
        }
    }
}

/// A sampling parameter out of its range; `param` is the OpenAI request field it came from.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct SamplingError {
    /// The request field at fault, e.g. `"top_p"` or `"logit_bias"`.
    pub param: &'static str,
    /// What is wrong with it, for the client.
    pub message: String,
}

fn fail(param: &'static str, message: String) -> Result<(), SamplingError> {
    Err(SamplingError { param, message })
}

/// `value` within `[lo, hi]` (false for NaN).
fn within(value: f32, lo: f32, hi: f32) -> bool {
    (lo..=hi).contains(&value)
}

impl SamplingParams {
    /// Checks every field against its range; `vocab` bounds the `logit_bias` token ids. Non-finite values
    /// are errors.
    pub fn validate(&self, vocab: usize) -> Result<(), SamplingError> {
        if !within(self.temperature, 0.0, 2.0) {
            return fail("temperature", format!("temperature must be between 0 and 2, got {}", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return fail("top_p", format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if !within(self.min_p, 0.0, 1.0) {
            return fail("min_p", format!("min_p must be in [0, 1], got {}", self.min_p));
        }
        for (param, value) in
            [("presence_penalty", self.presence_penalty), ("frequency_penalty", self.frequency_penalty)]
        {
            if !within(value, -2.0, 2.0) {
                return fail(param, format!("{param} must be between -2 and 2, got {value}"));
            }
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            let r = self.repetition_penalty;
            return fail("repetition_penalty", format!("repetition_penalty must be a finite number > 0, got {r}"));
        }
        for &(token, bias) in &self.logit_bias {
            if token as usize >= vocab {
                return fail("logit_bias", format!("logit_bias token {token} is outside the vocabulary of {vocab}"));
            }
            if !within(bias, -100.0, 100.0) {
                return fail("logit_bias", format!("logit_bias for token {token} must be in [-100, 100], got {bias}"));
            }
        }
        Ok(())
    }
}
