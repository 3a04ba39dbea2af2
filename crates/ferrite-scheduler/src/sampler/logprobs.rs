//! The raw distribution: argmax, log-softmax and the top alternatives of a logit vector. NaN logits
//! count as -inf everywhere.

use std::cmp::Ordering;

/// The logit as an ordered value: NaN becomes -inf.
#[inline]
pub(super) fn key(l: f32) -> f32 {
    if l.is_nan() {
        f32::NEG_INFINITY
    } else {
        l
    }
}

/// Larger value first, then lower id (the order of `top` lists and of truncation).
#[inline]
pub(super) fn desc(a: &(u32, f32), b: &(u32, f32)) -> Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// Index of the largest value (the first of equals, as llama.cpp's greedy sampler; NaN counts as -inf).
/// 0 for an empty or all -inf slice.
pub fn argmax(logits: &[f32]) -> u32 {
    argmax_max(logits).0
}

/// [`argmax`] and the maximum (-inf for an empty slice): a lane-wise max pass that vectorizes, then a
/// search for its first occurrence.
pub(super) fn argmax_max(logits: &[f32]) -> (u32, f32) {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = logits.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (m, &l) in lanes.iter_mut().zip(c) {
            // NaN compares false: it never becomes the maximum.
            *m = if l > *m { l } else { *m };
        }
    }
    let max = lanes.iter().chain(rest).fold(f32::NEG_INFINITY, |m, &l| if l > m { l } else { m });
    if max == f32::NEG_INFINITY {
        return (0, max);
    }
    (logits.iter().position(|&l| l == max).unwrap_or(0) as u32, max)
}

/// e^x for x <= 0 (x > 0 is taken as 0) within 2e-7 relative: Cody-Waite reduction to e^f with |f| <= ln 2 / 2
/// and a degree-7 Taylor polynomial. 0 below about -87.3 and for NaN. Branch-free, so the passes over the
/// vocabulary vectorize.
#[inline(always)]
pub(super) fn exp_neg(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    #[allow(clippy::manual_clamp)] // clamp would keep NaN; max turns it into -104
    let x = x.max(-104.0).min(0.0);
    let r = x * std::f32::consts::LOG2_E + ROUND;
    let n = r - ROUND;
    let f = x - n * LN2_HI - n * LN2_LO;
    // Taylor coefficients of e^f, 1 / k!.
    const C: [f32; 8] = [1.0, 1.0, 1.0 / 2.0, 1.0 / 6.0, 1.0 / 24.0, 1.0 / 120.0, 1.0 / 720.0, 1.0 / 5040.0];
    let p = C.iter().rev().fold(0.0, |acc, &c| acc * f + c);
    // The biased exponent of 2^n; at or below 0 the scale is 0.
    let e = (r.to_bits() as i32).wrapping_sub(0x4B40_0000 - 127); // wrapping: no overflow check to stop vectorizing
    p * f32::from_bits((e.max(0) as u32) << 23)
}

/// Length of the blocks the exponential passes work in: summed in eight f32 lanes (so they vectorize), the
/// block sums added in f64.
pub(super) const BLOCK: usize = 64;

/// Sum of a block of at most [`BLOCK`] non-negative values in eight lanes.
#[inline]
pub(super) fn block_sum(ws: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = ws.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, &w) in lanes.iter_mut().zip(c) {
            *a += w;
        }
    }
    lanes.iter().sum::<f32>() + rest
}

/// Fills `out` (the length of `block`) with `exp_neg((l - max) * scale)` and returns the block sum.
#[inline]
pub(super) fn block_weights(block: &[f32], max: f32, scale: f32, out: &mut [f32]) -> f32 {
    for (w, &l) in out.iter_mut().zip(block) {
        *w = exp_neg((l - max) * scale);
    }
    block_sum(out)
}

/// The sum over `logits` of `exp_neg((l - max) * scale)`, block by block.
pub(super) fn exp_sum(logits: &[f32], max: f32, scale: f32) -> f64 {
    let mut buf = [0.0f32; BLOCK];
    logits.chunks(BLOCK).map(|c| f64::from(block_weights(c, max, scale, &mut buf[..c.len()]))).sum()
}

/// [`exp_sum`], keeping the weights in `out`.
pub(super) fn exp_fill(logits: &[f32], max: f32, scale: f32, out: &mut Vec<f32>) -> f64 {
    out.clear();
    out.resize(logits.len(), 0.0);
    logits.chunks(BLOCK).zip(out.chunks_mut(BLOCK)).map(|(c, o)| f64::from(block_weights(c, max, scale, o))).sum()
}

/// The normalizer of a log-softmax, in one max pass and one sum-of-exponentials pass (summed in f64).
#[derive(Debug, Clone, Copy)]
pub(super) struct LogNorm {
    /// First index of the maximum of the logits.
    pub argmax: u32,
    kind: Norm,
}

#[derive(Debug, Clone, Copy)]
enum Norm {
    /// log of the sum of exp(logits).
    Finite(f64),
    /// Some logits are +inf: they share the probability, `ln(count)` each.
    Infinite(f64),
    /// Every logit is -inf or NaN (or there are none): uniform, `ln(n)`.
    Uniform(f64),
}

impl LogNorm {
    pub fn of(logits: &[f32]) -> LogNorm {
        let (argmax, max) = argmax_max(logits);
        let kind = if max.is_finite() {
            Norm::Finite(f64::from(max) + exp_sum(logits, max, 1.0).ln())
        } else if max == f32::INFINITY {
            Norm::Infinite((logits.iter().filter(|&&l| l == f32::INFINITY).count() as f64).ln())
        } else {
            Norm::Uniform((logits.len() as f64).ln())
        };
        LogNorm { argmax, kind }
    }

    /// log-softmax of one logit of the vector this was computed over.
    pub fn logprob(&self, l: f32) -> f32 {
        match self.kind {
            Norm::Finite(log_z) => (f64::from(key(l)) - log_z) as f32,
            Norm::Infinite(ln_count) if l == f32::INFINITY => -ln_count as f32,
            Norm::Infinite(_) => f32::NEG_INFINITY,
            Norm::Uniform(ln_n) => -ln_n as f32,
        }
    }
}

/// Above this many, [`select_top`] partitions a vocabulary-sized copy instead of keeping a sorted short list.
const SHORT_LIST: usize = 128;

/// The `k` largest logits (NaN as -inf) as `(id, logit)` into `out`, largest first, ties by lower id.
pub(super) fn select_top(logits: &[f32], k: usize, out: &mut Vec<(u32, f32)>) {
    out.clear();
    let k = k.min(logits.len());
    if k == 0 {
        return;
    }
    if k <= SHORT_LIST {
        // One pass; ids arrive in increasing order, so a newcomer goes after its equals.
        for (i, &l) in logits.iter().enumerate() {
            let l = key(l);
            if out.len() == k {
                if out.last().is_some_and(|last| l <= last.1) {
                    continue;
                }
                out.pop();
            }
            let at = out.partition_point(|e| e.1 >= l);
            out.insert(at, (i as u32, l));
        }
    } else {
        out.extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, key(l))));
        if k < out.len() {
            out.select_nth_unstable_by(k - 1, desc);
            out.truncate(k);
        }
        out.sort_unstable_by(desc);
    }
}

/// The log-softmax value of `token` (-inf when out of range) and the `k` most likely tokens of `logits`
/// with theirs, most likely first (ties: lower id first). For prompt logprobs and echo.
pub fn token_logprobs(logits: &[f32], token: u32, k: usize) -> (f32, Vec<(u32, f32)>) {
    let norm = LogNorm::of(logits);
    let logprob = logits.get(token as usize).map_or(f32::NEG_INFINITY, |&l| norm.logprob(l));
    let mut top = Vec::new();
    select_top(logits, k, &mut top);
    for e in &mut top {
        e.1 = norm.logprob(e.1);
    }
    (logprob, top)
}
