//! Per-sequence sampling, in the order of llama.cpp and vLLM: the raw log-probabilities are taken first
//! (what [`Sampled`] reports), then the repetition, presence and frequency penalties and the logit bias
//! change the logits; temperature 0 picks their argmax, otherwise temperature, top-k, softmax, top-p and
//! min-p shape the distribution a seeded generator draws from (the same seed gives the same tokens).
//!
//! The vocabulary can be 262,144 tokens and this runs per token per sequence: no step sorts the whole
//! vocabulary (top-k keeps a short list or partitions, top-p sorts one histogram bin), the passes over it
//! vectorize, and the buffers are kept between calls.

mod logprobs;
mod params;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use logprobs::{argmax, token_logprobs};
pub use params::{SamplingError, SamplingParams};

use logprobs::{argmax_max, block_weights, desc, exp_fill, exp_neg, exp_sum, select_top, LogNorm, BLOCK};

/// Temperatures below this are greedy (vLLM's epsilon): dividing by them would overflow.
const MIN_TEMPERATURE: f32 = 1e-5;

/// What one sampling step chose.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    /// The chosen token.
    pub token: u32,
    /// log-probability of `token` under the model's raw distribution: the log-softmax of the logits as
    /// passed in, before penalties, bias, temperature and truncation (what vLLM returns by default).
    pub logprob: f32,
    /// The `top_logprobs` most likely tokens of that same raw distribution with their log-probabilities,
    /// most likely first (ties: lower id first). Empty when `top_logprobs` is 0.
    pub top: Vec<(u32, f32)>,
}

/// A sampler for one sequence: its parameters, its own random stream and the tokens it has produced.
#[derive(Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    /// Distinct prompt tokens, kept only when the repetition penalty is on.
    prompt: HashSet<u32>,
    /// How often each token was generated.
    counts: HashMap<u32, u32>,
    /// `(id, raw logit)` of every logit the penalties changed in the current step (first entry per id).
    saved: Vec<(u32, f32)>,
    /// Candidate `(id, weight)` buffer, reused between steps.
    cand: Vec<(u32, f32)>,
    /// The top-p histogram, reused between steps.
    hist: Vec<f64>,
    /// Vocabulary-sized weights for top-p and min-p, reused between steps.
    weights: Vec<f32>,
}

impl Sampler {
    /// A sampler for a sequence whose prompt is `prompt` (only read when the repetition penalty is on).
    pub fn new(params: SamplingParams, prompt: &[u32]) -> Self {
        let rng = StdRng::seed_from_u64(params.seed);
        let prompt = if params.repetition_penalty != 1.0 { prompt.iter().copied().collect() } else { HashSet::new() };
        Sampler {
            params,
            rng,
            prompt,
            counts: HashMap::new(),
            saved: Vec::new(),
            cand: Vec::new(),
            hist: Vec::new(),
            weights: Vec::new(),
        }
    }

    /// The parameters this sampler was made with.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Counts a generated token the sampler did not pick itself (e.g. a forced one) for the penalties, like a
    /// sampled one.
    pub fn accept(&mut self, token: u32) {
        *self.counts.entry(token).or_insert(0) += 1;
    }

    /// Picks the next token from `logits` (modified in place by the penalties and the bias) and counts it.
    /// `top_logprobs` is how many alternatives of the raw distribution to report.
    pub fn sample(&mut self, logits: &mut [f32], top_logprobs: usize) -> Sampled {
        if logits.is_empty() {
            return Sampled { token: 0, logprob: f32::NEG_INFINITY, top: Vec::new() };
        }
        let norm = LogNorm::of(logits);
        let mut top = Vec::new();
        select_top(logits, top_logprobs, &mut top);
        for e in &mut top {
            e.1 = norm.logprob(e.1);
        }
        let changed = self.apply_penalties(logits);
        let t = self.params.temperature;
        let token = if t.is_nan() || t < MIN_TEMPERATURE {
            if changed {
                argmax(logits)
            } else {
                norm.argmax
            }
        } else {
            self.draw(logits)
        };
        let raw = self.saved.iter().find(|s| s.0 == token).map_or(logits[token as usize], |s| s.1);
        self.accept(token);
        Sampled { token, logprob: norm.logprob(raw), top }
    }

    /// Applies the repetition penalty (prompt and generated tokens), then the frequency and presence
    /// penalties (generated tokens), then the logit bias, remembering the raw values it overwrote. Ids
    /// outside `logits` are skipped. Returns whether any logit was touched.
    pub(crate) fn apply_penalties(&mut self, logits: &mut [f32]) -> bool {
        let Sampler { params: p, prompt, counts, saved, .. } = self;
        saved.clear();
        let mut touch = |t: u32, f: &dyn Fn(f32) -> f32| {
            if let Some(l) = logits.get_mut(t as usize) {
                saved.push((t, *l));
                *l = f(*l);
            }
        };
        let r = p.repetition_penalty;
        if r != 1.0 {
            let penalize = |l: f32| if l > 0.0 { l / r } else { l * r };
            for &t in prompt.iter() {
                touch(t, &penalize);
            }
            for &t in counts.keys().filter(|t| !prompt.contains(t)) {
                touch(t, &penalize);
            }
        }
        let (fp, pp) = (p.frequency_penalty, p.presence_penalty);
        if fp != 0.0 || pp != 0.0 {
            for (&t, &c) in counts.iter() {
                touch(t, &|l| l - c as f32 * fp - pp);
            }
        }
        for &(t, b) in &p.logit_bias {
            touch(t, &|l| l + b);
        }
        !saved.is_empty()
    }

    /// Draws from the processed `logits` at the (positive) temperature, after top-k, top-p and min-p.
    fn draw(&mut self, logits: &[f32]) -> u32 {
        let Sampler { params: p, rng, cand, hist, weights, .. } = self;
        let inv_t = 1.0 / p.temperature;
        // Weights are relative to the most likely token, exp(-d) for d = (max - l) / t, so min-p keeps the
        // tokens of weight >= min_p.
        let min_p = p.min_p.max(0.0);
        cand.clear();
        let first = if p.top_k > 0 && p.top_k < logits.len() {
            select_top(logits, p.top_k, cand);
            let (first, max) = cand[0];
            if !max.is_finite() {
                return first; // all -inf, or +inf ones: the first of those
            }
            let mut z = 0.0f64;
            for c in cand.iter_mut() {
                c.1 = exp_neg(-((max - c.1) * inv_t));
                z += f64::from(c.1);
            }
            if p.top_p < 1.0 {
                let (target, mut acc) = (f64::from(p.top_p) * z, 0.0f64);
                let cut = cand.iter().position(|c| {
                    acc += f64::from(c.1);
                    acc >= target
                });
                cand.truncate(cut.map_or(cand.len(), |i| i + 1));
            }
            let keep = cand.partition_point(|c| c.1 >= min_p).max(1);
            cand.truncate(keep);
            first
        } else {
            let (first, max) = argmax_max(logits);
            if !max.is_finite() {
                return first;
            }
            if p.top_p >= 1.0 && min_p <= 0.0 {
                // Nothing to cut: draw straight from the logits, block by block.
                let r = rng.gen::<f64>() * exp_sum(logits, max, inv_t);
                let (mut acc, mut buf) = (0.0f64, [0.0f32; BLOCK]);
                for (b, block) in logits.chunks(BLOCK).enumerate() {
                    let ws = &mut buf[..block.len()];
                    let s = f64::from(block_weights(block, max, inv_t, ws));
                    if acc + s > r {
                        let mut last = first;
                        for (j, &w) in ws.iter().enumerate() {
                            if w > 0.0 {
                                acc += f64::from(w);
                                last = (b * BLOCK + j) as u32;
                                if r < acc {
                                    break;
                                }
                            }
                        }
                        return last;
                    }
                    acc += s;
                }
                return first;
            }
            let z = exp_fill(logits, max, inv_t, weights);
            if p.top_p < 1.0 {
                // Top-p against the mass of the whole distribution (so min-p first gives the same set as after):
                // a histogram of the mass by depth (nats below the maximum after temperature) finds the bin
                // where it reaches top_p, and only that bin's tokens get sorted. Tokens lighter than `eps`
                // weigh less than 1 - top_p together: the cut always comes before them.
                let target = f64::from(p.top_p) * z;
                let eps = ((1.0 - f64::from(p.top_p)) * z / logits.len() as f64) as f32;
                let depth = |i: usize| (max - logits[i]) * inv_t;
                hist.clear();
                hist.resize(BINS, 0.0);
                for (i, &w) in weights.iter().enumerate() {
                    if w > 0.0 && w >= eps {
                        hist[bin(depth(i))] += f64::from(w);
                    }
                }
                let (mut boundary, mut before) = (BINS - 1, 0.0f64);
                for (b, &m) in hist.iter().enumerate() {
                    if before + m >= target {
                        boundary = b;
                        break;
                    }
                    before += m;
                }
                for (i, &w) in weights.iter().enumerate() {
                    if w > 0.0 && w >= eps && w >= min_p && bin(depth(i)) <= boundary {
                        cand.push((i as u32, w));
                    }
                }
                // The boundary bin's tokens last, most likely first, cut where the mass reaches top_p.
                let inner = partition(cand, |c| bin(depth(c.0 as usize)) < boundary);
                cand[inner..].sort_unstable_by(desc);
                let mut acc = before;
                if let Some(i) = cand[inner..].iter().position(|c| {
                    acc += f64::from(c.1);
                    acc >= target
                }) {
                    cand.truncate(inner + i + 1);
                }
            } else {
                cand.extend(
                    weights.iter().enumerate().filter(|(_, &w)| w > 0.0 && w >= min_p).map(|(i, &w)| (i as u32, w)),
                );
            }
            first
        };
        let total: f64 = cand.iter().map(|c| f64::from(c.1)).sum();
        let r = rng.gen::<f64>() * total;
        let mut acc = 0.0f64;
        for c in cand.iter() {
            acc += f64::from(c.1);
            if r < acc {
                return c.0;
            }
        }
        // Rounding left r past the sum: the last candidate that could be drawn.
        cand.iter().rev().find(|c| c.1 > 0.0).map_or(first, |c| c.0)
    }
}

/// Histogram bins per unit of depth (nats below the most likely token, after temperature) for top-p.
const BINS_PER_NAT: f32 = 8.0;
/// Past 88 nats a weight is 0 ([`exp_neg`]).
const BINS: usize = 88 * BINS_PER_NAT as usize;

/// The top-p histogram bin of depth `d >= 0`.
#[inline]
fn bin(d: f32) -> usize {
    ((d * BINS_PER_NAT) as usize).min(BINS - 1)
}

/// Moves the elements satisfying `pred` to the front (in no particular order); returns how many there are.
fn partition<T>(v: &mut [T], pred: impl Fn(&T) -> bool) -> usize {
    let mut front = 0;
    for i in 0..v.len() {
        if pred(&v[i]) {
            v.swap(front, i);
            front += 1;
        }
    }
    front
}
