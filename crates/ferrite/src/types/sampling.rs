//! The fields chat and text completion requests share (model, length, sampling, stop), written
//! once: `sampling_request!` adds them, their builder setters and their validation to a request
//! struct.
//!
//! A macro rather than a `#[serde(flatten)]`ed struct because serde cannot combine `flatten` with
//! `deny_unknown_fields`, and requests must reject unknown fields as OpenAI does.

use crate::types::{InvalidField, StopSequence, StreamOptions};

/// Most choices one request may ask for (`n`).
pub const MAX_CHOICES: u32 = 128;
/// Most stop sequences one request may give (OpenAI's limit).
pub const MAX_STOP_SEQUENCES: usize = 4;
/// Most alternatives per position a request may ask log-probabilities for.
pub const MAX_TOP_LOGPROBS: u32 = 20;

/// Declares a request struct: `model`, then the struct's own fields, then the shared sampling
/// fields; implements their chainable setters and `validate_sampling`.
macro_rules! sampling_request {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            /// The model: a name, `NAME:VERSION`, `deploy_id:ID` or an alias.
            pub model: String,
            $( $(#[$fmeta])* pub $field: $ty, )*
            /// Most tokens to generate per choice (text completions default to 16, chat to the
            /// rest of the context).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub max_tokens: Option<u32>,
            /// Stream the answer as server-sent events.
            #[serde(default, skip_serializing_if = "std::ops::Not::not")]
            pub stream: bool,
            /// Options of a streamed answer (only with `stream: true`).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub stream_options: Option<$crate::types::StreamOptions>,
            /// Sampling temperature in `0..=2`; 0 is greedy. Default 1.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub temperature: Option<f32>,
            /// Nucleus sampling: keep the most likely tokens whose probabilities sum to `top_p`, in
            /// `(0, 1]`. Default 1.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub top_p: Option<f32>,
            /// Number of choices to generate, `1..=128`. Default 1.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub n: Option<u32>,
            /// Up to 4 sequences that end generation; they are not part of the output.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub stop: Option<$crate::types::StopSequence>,
            /// Penalty in `-2..=2` for tokens that appeared at all so far.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub presence_penalty: Option<f32>,
            /// Penalty in `-2..=2` per occurrence of a token so far.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub frequency_penalty: Option<f32>,
            /// Token id (as a string) → bias in `-100..=100` added to its logit.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub logit_bias: Option<std::collections::BTreeMap<String, f32>>,
            /// Seed of the sampler, for repeatable outputs.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub seed: Option<i64>,
            /// End-user id (accepted and ignored).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub user: Option<String>,
            /// Extension (vLLM): keep only the `top_k` most likely tokens; -1 or 0 keeps all.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub top_k: Option<i32>,
            /// Extension (vLLM): drop tokens less likely than `min_p` times the most likely, in
            /// `0..=1`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub min_p: Option<f32>,
            /// Extension (vLLM): multiplicative penalty (> 0; 1 is none) for tokens seen so far.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub repetition_penalty: Option<f32>,
            /// Extension (vLLM): token ids that end generation, besides end-of-sequence.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub stop_token_ids: Option<Vec<u32>>,
            /// Extension (vLLM): keep generating past end-of-sequence tokens (for benchmarks).
            #[serde(default, skip_serializing_if = "std::ops::Not::not")]
            pub ignore_eos: bool,
        }

        impl $name {
            /// Sets `max_tokens`.
            pub fn max_tokens(mut self, max_tokens: u32) -> Self {
                self.max_tokens = Some(max_tokens);
                self
            }
            /// Sets `stream`.
            pub fn stream(mut self, stream: bool) -> Self {
                self.stream = stream;
                self
            }
            /// Streams, with a last chunk carrying the usage when `include_usage` is set.
            pub fn stream_with_usage(mut self, include_usage: bool) -> Self {
                self.stream = true;
                self.stream_options = Some($crate::types::StreamOptions { include_usage });
                self
            }
            /// Sets `temperature`.
            pub fn temperature(mut self, temperature: f32) -> Self {
                self.temperature = Some(temperature);
                self
            }
            /// Sets `top_p`.
            pub fn top_p(mut self, top_p: f32) -> Self {
                self.top_p = Some(top_p);
                self
            }
            /// Sets `n`.
            pub fn n(mut self, n: u32) -> Self {
                self.n = Some(n);
                self
            }
            /// Sets `stop` (a string, a `Vec` or an array of strings).
            pub fn stop(mut self, stop: impl Into<$crate::types::StopSequence>) -> Self {
                self.stop = Some(stop.into());
                self
            }
            /// Sets `presence_penalty`.
            pub fn presence_penalty(mut self, penalty: f32) -> Self {
                self.presence_penalty = Some(penalty);
                self
            }
            /// Sets `frequency_penalty`.
            pub fn frequency_penalty(mut self, penalty: f32) -> Self {
                self.frequency_penalty = Some(penalty);
                self
            }
            /// Adds a bias for one token id to `logit_bias`.
            pub fn logit_bias(mut self, token_id: u32, bias: f32) -> Self {
                self.logit_bias.get_or_insert_with(Default::default).insert(token_id.to_string(), bias);
                self
            }
            /// Sets `seed`.
            pub fn seed(mut self, seed: i64) -> Self {
                self.seed = Some(seed);
                self
            }
            /// Sets `user`.
            pub fn user(mut self, user: impl Into<String>) -> Self {
                self.user = Some(user.into());
                self
            }
            /// Sets `top_k`.
            pub fn top_k(mut self, top_k: i32) -> Self {
                self.top_k = Some(top_k);
                self
            }
            /// Sets `min_p`.
            pub fn min_p(mut self, min_p: f32) -> Self {
                self.min_p = Some(min_p);
                self
            }
            /// Sets `repetition_penalty`.
            pub fn repetition_penalty(mut self, penalty: f32) -> Self {
                self.repetition_penalty = Some(penalty);
                self
            }
            /// Sets `stop_token_ids`.
            pub fn stop_token_ids(mut self, ids: impl IntoIterator<Item = u32>) -> Self {
                self.stop_token_ids = Some(ids.into_iter().collect());
                self
            }
            /// Sets `ignore_eos`.
            pub fn ignore_eos(mut self, ignore_eos: bool) -> Self {
                self.ignore_eos = ignore_eos;
                self
            }
            /// The number of choices asked for (`n`, default 1).
            pub fn choices(&self) -> u32 {
                self.n.unwrap_or(1)
            }
            /// `logit_bias` with its keys parsed as token ids (keys that do not parse are skipped;
            /// `validate` rejects them).
            pub fn logit_bias_ids(&self) -> Vec<(u32, f32)> {
                let bias = self.logit_bias.iter().flatten();
                bias.filter_map(|(k, v)| k.parse().ok().map(|id| (id, *v))).collect()
            }
            /// Checks the shared fields: ranges of the sampling parameters, `n`, `stop`,
            /// `logit_bias`, `stream_options`.
            fn validate_sampling(&self) -> Result<(), $crate::types::InvalidField> {
                $crate::types::sampling::SharedFields {
                    stream: self.stream,
                    stream_options: self.stream_options.as_ref(),
                    temperature: self.temperature,
                    top_p: self.top_p,
                    n: self.n,
                    stop: self.stop.as_ref(),
                    presence_penalty: self.presence_penalty,
                    frequency_penalty: self.frequency_penalty,
                    logit_bias: self.logit_bias.as_ref(),
                    top_k: self.top_k,
                    min_p: self.min_p,
                    repetition_penalty: self.repetition_penalty,
                }
                .validate()
            }
        }
    };
}

pub(crate) use sampling_request;

/// A borrowed view of the shared fields, so their checks are ordinary code, not macro body.
pub(crate) struct SharedFields<'a> {
    pub stream: bool,
    pub stream_options: Option<&'a StreamOptions>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub n: Option<u32>,
    pub stop: Option<&'a StopSequence>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub logit_bias: Option<&'a std::collections::BTreeMap<String, f32>>,
    pub top_k: Option<i32>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
}

/// Fails unless `value` (when given) is finite and within `lo..=hi`.
fn in_range(param: &str, value: Option<f32>, lo: f32, hi: f32) -> Result<(), InvalidField> {
    match value {
        Some(v) if !(v.is_finite() && (lo..=hi).contains(&v)) => {
            Err(InvalidField::new(param, format!("{param} must be between {lo} and {hi}, got {v}")))
        }
        _ => Ok(()),
    }
}

impl SharedFields<'_> {
    pub(crate) fn validate(&self) -> Result<(), InvalidField> {
        if self.stream_options.is_some() && !self.stream {
            return Err(InvalidField::new("stream_options", "stream_options is only allowed when stream is true"));
        }
        in_range("temperature", self.temperature, 0.0, 2.0)?;
        if let Some(p) = self.top_p {
            if !(p.is_finite() && p > 0.0 && p <= 1.0) {
                return Err(InvalidField::new("top_p", format!("top_p must be in (0, 1], got {p}")));
            }
        }
        if let Some(n) = self.n {
            if !(1..=MAX_CHOICES).contains(&n) {
                return Err(InvalidField::new("n", format!("n must be between 1 and {MAX_CHOICES}, got {n}")));
            }
        }
        if let Some(stop) = self.stop {
            let stop = stop.as_slice();
            if stop.len() > MAX_STOP_SEQUENCES {
                let msg = format!("stop takes at most {MAX_STOP_SEQUENCES} sequences, got {}", stop.len());
                return Err(InvalidField::new("stop", msg));
            }
            if stop.iter().any(String::is_empty) {
                return Err(InvalidField::new("stop", "stop sequences must not be empty"));
            }
        }
        in_range("presence_penalty", self.presence_penalty, -2.0, 2.0)?;
        in_range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)?;
        for (token, bias) in self.logit_bias.into_iter().flatten() {
            if token.parse::<u32>().is_err() {
                let msg = format!("logit_bias keys must be token ids, got {token:?}");
                return Err(InvalidField::new("logit_bias", msg));
            }
            in_range("logit_bias", Some(*bias), -100.0, 100.0)?;
        }
        if let Some(k) = self.top_k {
            if k < -1 {
                return Err(InvalidField::new(
                    "top_k",
                    format!("top_k must be -1 (all), 0 (all) or positive, got {k}"),
                ));
            }
        }
        in_range("min_p", self.min_p, 0.0, 1.0)?;
        if let Some(r) = self.repetition_penalty {
            if !(r.is_finite() && r > 0.0) {
                return Err(InvalidField::new(
                    "repetition_penalty",
                    format!("repetition_penalty must be > 0, got {r}"),
                ));
            }
        }
        Ok(())
    }
}
