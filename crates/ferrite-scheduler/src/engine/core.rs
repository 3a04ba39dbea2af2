//! [`EngineCore`]: one scheduling step at a time over a [`StepModel`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use ferrite_models::{Batch, SequenceSlice};

use super::sequence::Sequence;
use super::text::TextState;
use super::{
    Event, EventSink, FinishReason, Request, RequestId, StepModel, SubmitError, TokenLogprob, TokenText, Usage,
};
use crate::{token_logprobs, KvCacheManager, RequestLatency, Sampler};

/// Scheduling limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Sequences running at once.
    pub max_num_seqs: usize,
    /// Tokens per step (decode tokens plus prefill chunks).
    pub max_batch_tokens: usize,
    /// Waiting requests beyond which submissions are refused.
    pub max_queue: usize,
    /// Reuse cached KV blocks of shared prompt prefixes.
    pub prefix_caching: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { max_num_seqs: 64, max_batch_tokens: 512, max_queue: 1024, prefix_caching: true }
    }
}

/// Counters and gauges of the engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Requests with a choice still waiting for admission.
    pub waiting: usize,
    /// Sequences holding KV blocks.
    pub running: usize,
    pub kv_blocks_total: usize,
    pub kv_blocks_used: usize,
    /// Tokens per KV block.
    pub kv_block_size: usize,
    /// Prompt tokens of all requests admitted so far.
    pub prompt_tokens: u64,
    pub generated_tokens: u64,
    /// Prompt tokens served from the prefix cache instead of being computed.
    pub cached_prompt_tokens: u64,
    /// Tokens run through the model (prefill and decode).
    pub computed_tokens: u64,
    pub steps: u64,
    /// Sequences preempted (blocks freed, recomputed later) for lack of KV blocks.
    pub preemptions: u64,
}

/// The bounds a request is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub vocab: usize,
    pub context_length: usize,
    /// Tokens the whole KV cache holds (one sequence can never be longer).
    pub kv_tokens: usize,
}

impl Limits {
    /// The longest sequence (prompt plus generated tokens) a request may ask for.
    pub fn max_sequence(&self) -> usize {
        self.context_length.min(self.kv_tokens)
    }

    /// Refuses a malformed request, or one that cannot fit.
    pub fn check(&self, req: &Request) -> Result<(), SubmitError> {
        let invalid = |message: String, param| Err(SubmitError::Invalid { message, param: Some(param) });
        if req.prompt.is_empty() {
            return invalid("the prompt is empty".into(), "prompt");
        }
        if let Some(&t) = req.prompt.iter().find(|&&t| t as usize >= self.vocab) {
            return invalid(format!("token id {t} is outside the vocabulary of {}", self.vocab), "prompt");
        }
        if req.n == 0 {
            return invalid("n must be at least 1".into(), "n");
        }
        if req.max_tokens == 0 {
            return invalid("max_tokens must be at least 1".into(), "max_tokens");
        }
        if !req.logits_processors.is_empty() && req.logits_processors.len() != req.n {
            return invalid("one logits processor per choice is needed".into(), "n");
        }
        if let Err(e) = req.sampling.validate(self.vocab) {
            return invalid(e.message, e.param);
        }
        let total = req.prompt.len().saturating_add(req.max_tokens);
        if total > self.context_length {
            return Err(SubmitError::ContextLength(format!(
                "This model's maximum context length is {} tokens. However, you requested {total} tokens \
                 ({} in the prompt, {} in the completion). Please reduce the length of the prompt or completion.",
                self.context_length,
                req.prompt.len(),
                req.max_tokens
            )));
        }
        if total > self.kv_tokens {
            return Err(SubmitError::ContextLength(format!(
                "The request needs {total} tokens ({} in the prompt, {} in the completion) but the KV cache \
                 holds {} tokens. Please reduce the length of the prompt or completion.",
                req.prompt.len(),
                req.max_tokens,
                self.kv_tokens
            )));
        }
        Ok(())
    }
}

/// Per-request state shared by its choices.
struct RequestState {
    sink: EventSink,
    max_tokens: usize,
    stop: Vec<String>,
    stop_token_ids: Vec<u32>,
    ignore_eos: bool,
    logprobs: Option<usize>,
    /// Still to collect (the first choice's first prefill).
    prompt_logprobs: Option<usize>,
    collected: Vec<Option<TokenLogprob>>,
    /// Choices not finished yet.
    live: usize,
    usage: Usage,
    /// The first choice has computed its prompt: its blocks are in the prefix cache, so the
    /// other choices can start from them.
    prompt_ready: bool,
    admitted: bool,
    /// When it was submitted, and when its first token came.
    arrived: Instant,
    first_token: Option<Instant>,
    /// Tokens of its longest choice so far.
    longest: usize,
}

/// One sequence's share of a step.
struct Scheduled {
    seq: usize,
    len: usize,
    /// First logits row of this sequence in the step's output, and how many.
    row: usize,
    rows: usize,
}

/// The continuous-batching engine (single-threaded; see [`super::EngineHandle`]).
pub struct EngineCore {
    model: Box<dyn StepModel>,
    text: Arc<dyn TokenText>,
    kv: KvCacheManager,
    cfg: EngineConfig,
    limits: Limits,
    requests: HashMap<RequestId, RequestState>,
    waiting: VecDeque<Sequence>,
    running: Vec<Sequence>,
    next_seq: u64,
    stats: EngineStats,
    latency: Arc<Mutex<RequestLatency>>,
}

impl EngineCore {
    pub fn new(model: Box<dyn StepModel>, text: Arc<dyn TokenText>, cfg: EngineConfig) -> EngineCore {
        let block_size = model.block_size();
        let num_blocks = model.num_blocks();
        let limits =
            Limits { vocab: model.vocab(), context_length: model.context_length(), kv_tokens: num_blocks * block_size };
        let stats = EngineStats { kv_blocks_total: num_blocks, kv_block_size: block_size, ..Default::default() };
        EngineCore {
            kv: KvCacheManager::new(num_blocks, block_size, cfg.prefix_caching),
            model,
            text,
            cfg,
            limits,
            requests: HashMap::new(),
            waiting: VecDeque::new(),
            running: Vec::new(),
            next_seq: 0,
            stats,
            latency: Arc::default(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// The latency histograms of finished requests, shared with whoever reports them.
    pub fn latency(&self) -> Arc<Mutex<RequestLatency>> {
        self.latency.clone()
    }

    /// The pool's prefix-cache hits so far (blocks).
    pub fn prefix_hits(&self) -> u64 {
        self.kv.pool().hits
    }

    pub fn has_work(&self) -> bool {
        !self.waiting.is_empty() || !self.running.is_empty()
    }

    /// Queues a request; its events go to `sink`.
    pub fn submit(&mut self, id: RequestId, mut req: Request, sink: EventSink) -> Result<(), SubmitError> {
        self.limits.check(&req)?;
        if self.requests.contains_key(&id) {
            return Err(SubmitError::Invalid { message: format!("request id {id} is in use"), param: None });
        }
        let mut processors = std::mem::take(&mut req.logits_processors).into_iter();
        for index in 0..req.n {
            let mut sampling = req.sampling.clone();
            sampling.seed = sampling.seed.wrapping_add(index as u64);
            self.waiting.push_back(Sequence {
                id: self.next_seq,
                request: id,
                index,
                tokens: req.prompt.clone(),
                prompt_len: req.prompt.len(),
                computed: 0,
                sampler: Sampler::new(sampling, &req.prompt),
                processor: processors.next(),
                text: TextState::default(),
            });
            self.next_seq += 1;
        }
        let usage = Usage { prompt_tokens: req.prompt.len(), ..Default::default() };
        self.requests.insert(
            id,
            RequestState {
                sink,
                max_tokens: req.max_tokens,
                stop: req.stop,
                stop_token_ids: req.stop_token_ids,
                ignore_eos: req.ignore_eos,
                logprobs: req.logprobs,
                prompt_logprobs: req.prompt_logprobs,
                collected: Vec::new(),
                live: req.n,
                usage,
                prompt_ready: false,
                admitted: false,
                arrived: Instant::now(),
                first_token: None,
                longest: 0,
            },
        );
        self.refresh_stats();
        Ok(())
    }

    /// Drops a request and frees its blocks; no further events are sent for it.
    pub fn abort(&mut self, id: RequestId) {
        if self.requests.remove(&id).is_none() {
            return;
        }
        for s in self.running.iter().filter(|s| s.request == id) {
            self.kv.free(s.id);
        }
        self.running.retain(|s| s.request != id);
        self.waiting.retain(|s| s.request != id);
        self.refresh_stats();
    }

    /// Fails every request with `message` (the engine cannot go on with them).
    pub fn fail_all(&mut self, message: &str) {
        let ids: Vec<RequestId> = self.requests.keys().copied().collect();
        for id in ids {
            if let Some(r) = self.requests.get_mut(&id) {
                (r.sink)(Event::Error(message.to_string()));
            }
            self.abort(id);
        }
    }

    /// Runs one step. Returns false when there was nothing to do.
    pub fn step(&mut self) -> bool {
        let plan = self.schedule();
        if plan.is_empty() {
            self.refresh_stats();
            return false;
        }
        let mut plan = plan;
        let batch = self.build_batch(&mut plan);
        let rows = batch.logits_rows.len();
        let mut logits = match self.model.forward(&batch) {
            Ok(l) if l.len() == rows * self.limits.vocab => l,
            Ok(l) => {
                self.fail_scheduled(&plan, &format!("the model returned {} logits for {rows} rows", l.len()));
                self.refresh_stats();
                return true;
            }
            Err(e) => {
                self.fail_scheduled(&plan, &format!("model step failed: {e}"));
                self.refresh_stats();
                return true;
            }
        };
        self.stats.steps += 1;
        self.stats.computed_tokens += batch.tokens.len() as u64;
        let mut cancelled = HashSet::new();
        let mut finished = Vec::new();
        for sc in &plan {
            self.after_forward(sc, &mut logits, &mut cancelled, &mut finished);
        }
        finished.sort_unstable();
        for &i in finished.iter().rev() {
            let s = self.running.remove(i);
            self.kv.free(s.id);
        }
        for id in cancelled {
            self.abort(id);
        }
        self.refresh_stats();
        true
    }

    /// Picks this step's work: decode tokens first, then prefill chunks of running sequences,
    /// then admissions, within the token budget.
    fn schedule(&mut self) -> Vec<Scheduled> {
        let mut budget = self.cfg.max_batch_tokens.max(1);
        let mut plan = Vec::new();
        // Decode: every running sequence with exactly one token to run.
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            if self.running[i].remaining() != 1 {
                i += 1;
                continue;
            }
            let (id, need) = (self.running[i].id, self.running[i].tokens.len());
            if self.kv.grow(id, need) {
                plan.push(Scheduled { seq: i, len: 1, row: 0, rows: 0 });
                budget -= 1;
                i += 1;
            } else {
                // Out of blocks: recompute the most recently admitted sequence later.
                let victim = self.running.len() - 1;
                self.preempt(victim);
            }
        }
        // Prefill chunks of running sequences.
        for (i, s) in self.running.iter().enumerate() {
            if budget == 0 {
                break;
            }
            if s.remaining() > 1 && !plan.iter().any(|p| p.seq == i) {
                let len = s.remaining().min(budget);
                plan.push(Scheduled { seq: i, len, row: 0, rows: 0 });
                budget -= len;
            }
        }
        // Admissions, first come first served.
        while budget > 0 && self.running.len() < self.cfg.max_num_seqs.max(1) {
            let Some(pos) = self
                .waiting
                .iter()
                .position(|s| s.index == 0 || self.requests.get(&s.request).is_some_and(|r| r.prompt_ready))
            else {
                break;
            };
            let s = &self.waiting[pos];
            let collecting = s.index == 0 && self.requests.get(&s.request).is_some_and(|r| r.prompt_logprobs.is_some());
            let computed = if collecting { Default::default() } else { self.kv.get_computed_blocks(&s.tokens) };
            let hit = computed.num_tokens(self.kv.block_size());
            if !self.kv.allocate(s.id, s.tokens.len(), computed) {
                break;
            }
            let Some(mut s) = self.waiting.remove(pos) else { break };
            s.computed = hit;
            if let Some(r) = self.requests.get_mut(&s.request) {
                if s.index == 0 && !r.admitted {
                    r.admitted = true;
                    r.usage.cached_tokens = hit;
                    self.stats.prompt_tokens += s.prompt_len as u64;
                    self.stats.cached_prompt_tokens += hit as u64;
                }
            }
            let len = s.remaining().min(budget);
            budget -= len;
            self.running.push(s);
            plan.push(Scheduled { seq: self.running.len() - 1, len, row: 0, rows: 0 });
        }
        plan
    }

    fn preempt(&mut self, i: usize) {
        let mut s = self.running.remove(i);
        self.kv.free(s.id);
        self.stats.preemptions += 1;
        // Prompt logprobs being collected are collected again from the start.
        if s.index == 0 && s.in_first_prefill() {
            if let Some(r) = self.requests.get_mut(&s.request) {
                r.collected.clear();
            }
        }
        s.computed = 0;
        self.waiting.push_front(s);
    }

    /// The batch of `plan`, filling in where each entry's logits rows will be.
    fn build_batch(&self, plan: &mut [Scheduled]) -> Batch {
        let mut batch = Batch::default();
        for sc in plan.iter_mut() {
            let s = &self.running[sc.seq];
            let start = batch.tokens.len();
            batch.tokens.extend_from_slice(&s.tokens[s.computed..s.computed + sc.len]);
            batch.seqs.push(SequenceSlice {
                start,
                len: sc.len,
                past: s.computed,
                block_table: self.kv.block_table(s.id).map(<[u32]>::to_vec).unwrap_or_default(),
            });
            sc.row = batch.logits_rows.len();
            if self.collects_prompt_logprobs(s) {
                batch.logits_rows.extend(start..start + sc.len);
            } else if s.computed + sc.len == s.tokens.len() {
                batch.logits_rows.push(start + sc.len - 1);
            }
            sc.rows = batch.logits_rows.len() - sc.row;
        }
        batch
    }

    fn collects_prompt_logprobs(&self, s: &Sequence) -> bool {
        s.index == 0
            && s.in_first_prefill()
            && self.requests.get(&s.request).is_some_and(|r| r.prompt_logprobs.is_some())
    }

    fn fail_scheduled(&mut self, plan: &[Scheduled], message: &str) {
        let ids: HashSet<RequestId> = plan.iter().map(|p| self.running[p.seq].request).collect();
        for id in ids {
            if let Some(r) = self.requests.get_mut(&id) {
                (r.sink)(Event::Error(message.to_string()));
            }
            self.abort(id);
        }
    }

    /// Consumes one sequence's logits rows: prompt logprobs, then sampling and stop checks.
    fn after_forward(
        &mut self,
        sc: &Scheduled,
        logits: &mut [f32],
        cancelled: &mut HashSet<RequestId>,
        finished: &mut Vec<usize>,
    ) {
        let vocab = self.limits.vocab;
        let collecting = self.collects_prompt_logprobs(&self.running[sc.seq]);
        let first_row = sc.row;
        let s = &mut self.running[sc.seq];
        let Some(req) = self.requests.get_mut(&s.request) else { return };
        if collecting {
            let k = req.prompt_logprobs.unwrap_or(0);
            if s.computed == 0 {
                req.collected.push(None);
            }
            for r in 0..sc.len {
                let p = s.computed + r;
                if p + 1 < s.prompt_len {
                    let row = &logits[(first_row + r) * vocab..(first_row + r + 1) * vocab];
                    let token = s.tokens[p + 1];
                    let (logprob, top) = token_logprobs(row, token, k);
                    req.collected.push(Some(TokenLogprob { token, logprob, top }));
                }
            }
            if s.computed + sc.len == s.prompt_len {
                req.prompt_logprobs = None;
                let all = std::mem::take(&mut req.collected);
                if !(req.sink)(Event::PromptLogprobs(all)) {
                    cancelled.insert(s.request);
                }
            }
        }
        s.computed += sc.len;
        self.kv.cache_blocks(s.id, &s.tokens[..s.computed]);
        if s.index == 0 && s.computed >= s.prompt_len {
            req.prompt_ready = true;
        }
        if s.computed < s.tokens.len() || sc.rows == 0 {
            return;
        }
        let last = first_row + sc.rows - 1;
        // Each row is sampled once: penalties and the processor edit it in place.
        let row = &mut logits[last * vocab..(last + 1) * vocab];
        if let Some(p) = s.processor.as_mut() {
            p.process(&s.tokens[s.prompt_len..], row);
        }
        let sampled = s.sampler.sample(row, req.logprobs.unwrap_or(0));
        let token = sampled.token;
        s.tokens.push(token);
        self.stats.generated_tokens += 1;
        let generated = s.tokens.len() - s.prompt_len;
        req.longest = req.longest.max(generated);
        if req.first_token.is_none() {
            let now = Instant::now();
            req.first_token = Some(now);
            let mut l = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
            l.time_to_first_token.observe((now - req.arrived).as_secs_f64());
        }
        let stop_token = (!req.ignore_eos && self.text.is_eog(token)) || req.stop_token_ids.contains(&token);
        let (mut text, mut reason) = if stop_token {
            (s.text.finish(), Some(FinishReason::Stop))
        } else {
            let st = s.text.push(self.text.piece(token), &req.stop);
            (st.emit, st.stopped.then_some(FinishReason::Stop))
        };
        if reason.is_none() && (generated >= req.max_tokens || s.tokens.len() >= self.limits.context_length) {
            reason = Some(FinishReason::Length);
            text.push_str(&s.text.finish());
        }
        let logprobs = match req.logprobs {
            Some(_) => vec![TokenLogprob { token, logprob: sampled.logprob, top: sampled.top }],
            None => Vec::new(),
        };
        let mut alive = (req.sink)(Event::Delta { index: s.index, text, tokens: vec![token], logprobs });
        if let Some(reason) = reason {
            finished.push(sc.seq);
            req.live -= 1;
            req.usage.completion_tokens += generated;
            let usage = req.usage;
            alive &= (req.sink)(Event::Finished { index: s.index, reason, completion_tokens: generated, usage });
            if req.live == 0 {
                observe_finished(&self.latency, req);
                (req.sink)(Event::Done(req.usage));
                self.requests.remove(&s.request);
                return;
            }
        }
        if !alive {
            cancelled.insert(s.request);
        }
    }

    fn refresh_stats(&mut self) {
        let waiting: HashSet<RequestId> = self.waiting.iter().map(|s| s.request).collect();
        self.stats.waiting = waiting.len();
        self.stats.running = self.running.len();
        self.stats.kv_blocks_used = self.kv.pool().num_blocks() - self.kv.num_free_blocks();
    }
}

/// Records a finished request's end-to-end time and its mean time per output token (after the
/// first, over its longest choice).
fn observe_finished(latency: &Mutex<RequestLatency>, req: &RequestState) {
    let now = Instant::now();
    let mut l = latency.lock().unwrap_or_else(PoisonError::into_inner);
    l.e2e.observe((now - req.arrived).as_secs_f64());
    if let (Some(first), true) = (req.first_token, req.longest > 1) {
        l.time_per_output_token.observe((now - first).as_secs_f64() / (req.longest - 1) as f64);
    }
}
