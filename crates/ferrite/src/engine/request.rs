//! From OpenAI request fields to scheduler requests, and the events of a started run.

use std::sync::Arc;
use std::task::{Context, Poll};

use ferrite_scheduler::{Event, Request, RequestId, SamplingParams};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::{Inner, RequestOptions};
use crate::Error;

/// The sampling fields both request kinds share (see `types::sampling`).
pub(crate) struct SamplingView<'a> {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i32>,
    pub min_p: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub logit_bias: Vec<(u32, f32)>,
    pub seed: Option<i64>,
    pub n: usize,
    pub stop: &'a [String],
    pub stop_token_ids: &'a [u32],
    pub ignore_eos: bool,
}

macro_rules! sampling_view {
    ($req:expr) => {
        $crate::engine::request::SamplingView {
            temperature: $req.temperature,
            top_p: $req.top_p,
            top_k: $req.top_k,
            min_p: $req.min_p,
            presence_penalty: $req.presence_penalty,
            frequency_penalty: $req.frequency_penalty,
            repetition_penalty: $req.repetition_penalty,
            logit_bias: $req.logit_bias_ids(),
            seed: $req.seed,
            n: $req.n.unwrap_or(1).max(1) as usize,
            stop: $req.stop.as_ref().map(|s| s.as_slice()).unwrap_or(&[]),
            stop_token_ids: $req.stop_token_ids.as_deref().unwrap_or(&[]),
            ignore_eos: $req.ignore_eos,
        }
    };
}
pub(crate) use sampling_view;

impl SamplingView<'_> {
    /// A scheduler request for `prompt`. OpenAI's defaults: temperature 1, top_p 1.
    pub fn to_request(&self, prompt: Vec<u32>, max_tokens: usize, options: &RequestOptions) -> Request {
        let seed = match self.seed {
            Some(s) => s as u64,
            None => random_seed(),
        };
        let sampling = SamplingParams {
            temperature: self.temperature.unwrap_or(1.0),
            top_p: self.top_p.unwrap_or(1.0),
            top_k: self.top_k.filter(|&k| k > 0).map_or(0, |k| k as usize),
            min_p: self.min_p.unwrap_or(0.0),
            presence_penalty: self.presence_penalty.unwrap_or(0.0),
            frequency_penalty: self.frequency_penalty.unwrap_or(0.0),
            repetition_penalty: self.repetition_penalty.unwrap_or(1.0),
            logit_bias: self.logit_bias.clone(),
            seed,
        };
        Request {
            prompt,
            sampling,
            max_tokens,
            n: self.n,
            stop: self.stop.to_vec(),
            stop_token_ids: self.stop_token_ids.to_vec(),
            ignore_eos: self.ignore_eos,
            logprobs: None,
            prompt_logprobs: None,
            logits_processors: options.processors(self.n),
        }
    }
}

fn random_seed() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    (t as u64) ^ ((t >> 64) as u64) ^ 0x5DEE_CE66_D1CE_4E5B
}

/// The tokens a request may still generate after `prompt_len` prompt tokens: the requested
/// number, or what is left of the context when none was asked for.
pub(crate) fn max_tokens(inner: &Inner, requested: Option<u32>, prompt_len: usize) -> usize {
    match requested {
        Some(m) => m as usize,
        None => inner.limits.max_sequence().saturating_sub(prompt_len).max(1),
    }
}

/// A started generation: one scheduler request per prompt, all answering on one channel.
pub(crate) struct Run {
    rx: UnboundedReceiver<(usize, Event)>,
    ids: Vec<RequestId>,
    inner: Arc<Inner>,
    /// Scheduler requests that have not ended yet.
    open: usize,
    /// Choices per prompt.
    pub n: usize,
    /// The prompt token ids, per prompt.
    pub prompts: Vec<Vec<u32>>,
    pub id: String,
    pub created: u64,
    pub model: String,
}

impl Run {
    /// Submits one request per prompt (`make` builds each). On a refusal, the ones already
    /// submitted are cancelled.
    pub fn start(
        inner: &Arc<Inner>,
        prompts: Vec<Vec<u32>>,
        n: usize,
        id_prefix: &str,
        model: &str,
        prompt_param: &str,
        mut make: impl FnMut(Vec<u32>) -> Request,
    ) -> Result<Run, Error> {
        let (tx, rx) = unbounded_channel();
        let mut ids = Vec::with_capacity(prompts.len());
        for (i, p) in prompts.iter().enumerate() {
            let tx = tx.clone();
            let sink = Box::new(move |e| tx.send((i, e)).is_ok());
            match inner.handle.submit(make(p.clone()), sink) {
                Ok(id) => ids.push(id),
                Err(e) => {
                    ids.iter().for_each(|&id| inner.handle.abort(id));
                    return Err(Error::from_submit(e, prompt_param));
                }
            }
        }
        let model = if model.is_empty() { inner.name.clone() } else { model.to_string() };
        Ok(Run {
            rx,
            open: ids.len(),
            ids,
            inner: inner.clone(),
            n,
            prompts,
            id: format!("{id_prefix}-{:016x}", random_seed()),
            created: super::unix_now(),
            model,
        })
    }

    /// The next event (tagged with its prompt index); `None` once every request has ended.
    pub async fn next(&mut self) -> Option<(usize, Event)> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<(usize, Event)>> {
        if self.open == 0 {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some((i, e))) => {
                if matches!(e, Event::Done(_) | Event::Error(_)) {
                    self.open -= 1;
                }
                Poll::Ready(Some((i, e)))
            }
            // Every sender gone before the end: the engine dropped the request.
            Poll::Ready(None) => {
                self.open = 0;
                Poll::Ready(Some((0, Event::Error("the engine stopped before the request ended".into()))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if self.open > 0 {
            self.ids.iter().for_each(|&id| self.inner.handle.abort(id));
        }
    }
}
