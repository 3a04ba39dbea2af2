//! Bidirectional (non-causal) attention over packed variable-length sequences, for encoders
//! (BERT and the other embedding models): no KV cache and no padding, so no mask either.
//!
//! The tokens of a batch are packed back to back; `seq_lens` splits them into sequences, and
//! every query sees every key of its own sequence and nothing else.

use rayon::prelude::*;

use super::simd::{axpy, dot};
use crate::cpu::{expect_f32, f32_tensor, TensorRead};
use crate::{Error, Result, Tensor};

fn dims3(t: &Tensor) -> Result<[usize; 3]> {
    match t.dims() {
        &[n, h, d] => Ok([n, h, d]),
        other => Err(Error::shape("attention_full", format!("expected [tokens, heads, head_dim], got {other:?}"))),
    }
}

/// `softmax(q·kᵀ · scale) · v` per head within each sequence. `q [tokens, heads, head_dim]`,
/// `k`/`v [tokens, kv_heads, head_dim]` (f32, `heads` a multiple of `kv_heads`); `seq_lens` must
/// sum to `tokens`. Returns `[tokens, heads, head_dim]`.
pub fn attention_full(q: &Tensor, k: &Tensor, v: &Tensor, seq_lens: &[usize], scale: f32) -> Result<Tensor> {
    for t in [q, k, v] {
        expect_f32(t, "attention_full")?;
    }
    let [n, hq, d] = dims3(q)?;
    let [nk, hkv, dk] = dims3(k)?;
    if k.dims() != v.dims() || nk != n || dk != d || hkv == 0 || !hq.is_multiple_of(hkv) {
        return Err(Error::shape("attention_full", format!("q {:?}, k {:?}, v {:?}", q.dims(), k.dims(), v.dims())));
    }
    if seq_lens.iter().try_fold(0usize, |a, &l| a.checked_add(l)) != Some(n) {
        return Err(Error::shape("attention_full", format!("sequence lengths {seq_lens:?} do not sum to {n} tokens")));
    }
    // The first token of each token's sequence.
    let mut start_of = Vec::with_capacity(n);
    let mut at = 0;
    for &l in seq_lens {
        start_of.extend(std::iter::repeat_n((at, l), l));
        at += l;
    }
    let (qr, kr, vr) = (
        TensorRead::new(q, "attention_full")?,
        TensorRead::new(k, "attention_full")?,
        TensorRead::new(v, "attention_full")?,
    );
    let (qs, ks, vs) = (qr.f32()?, kr.f32()?, vr.f32()?);
    let (q_row, kv_row, group) = (hq * d, hkv * d, hq / hkv);
    let mut out = vec![0f32; n * q_row];
    let attend_token = |(t, o): (usize, &mut [f32])| {
        let (s0, len) = start_of[t];
        let mut scores = vec![0f32; len];
        let mut probs = vec![0f32; len];
        for h in 0..hq {
            let qh = &qs[t * q_row + h * d..][..d];
            let kvh = h / group;
            for (j, s) in scores.iter_mut().enumerate() {
                *s = dot(qh, &ks[(s0 + j) * kv_row + kvh * d..][..d]) * scale;
            }
            super::softmax::softmax_row(&scores, &mut probs);
            let oh = &mut o[h * d..(h + 1) * d];
            for (j, &w) in probs.iter().enumerate() {
                axpy(oh, w, &vs[(s0 + j) * kv_row + kvh * d..][..d]);
            }
        }
    };
    if n * n * q_row < super::PARALLEL_MIN_ELEMS {
        out.chunks_mut(q_row).enumerate().for_each(attend_token);
    } else {
        out.par_chunks_mut(q_row).enumerate().for_each(attend_token);
    }
    f32_tensor(out, q.shape().clone(), q.device())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;

    /// Straightforward f64 attention of one sequence of packed rows `s0 .. s0 + len`.
    fn reference(q: &[f32], k: &[f32], v: &[f32], lens: &[usize], hq: usize, hkv: usize, d: usize) -> Vec<f64> {
        let n: usize = lens.iter().sum();
        let mut out = vec![0f64; n * hq * d];
        let scale = 1.0 / (d as f64).sqrt();
        let mut s0 = 0;
        for &len in lens {
            for t in s0..s0 + len {
                for h in 0..hq {
                    let kvh = h / (hq / hkv);
                    let qv = &q[(t * hq + h) * d..][..d];
                    let sc: Vec<f64> = (s0..s0 + len)
                        .map(|j| {
                            let kv = &k[(j * hkv + kvh) * d..][..d];
                            qv.iter().zip(kv).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() * scale
                        })
                        .collect();
                    let m = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let z: f64 = sc.iter().map(|s| (s - m).exp()).sum();
                    for (jj, j) in (s0..s0 + len).enumerate() {
                        let w = (sc[jj] - m).exp() / z;
                        for i in 0..d {
                            out[(t * hq + h) * d + i] += w * v[(j * hkv + kvh) * d + i] as f64;
                        }
                    }
                }
            }
            s0 += len;
        }
        out
    }

    fn check(lens: &[usize], hq: usize, hkv: usize, d: usize) {
        let n: usize = lens.iter().sum();
        let (q, k, v) = (rand_vec(n * hq * d, 21), rand_vec(n * hkv * d, 22), rand_vec(n * hkv * d, 23));
        let got = tensor(&q, &[n, hq, d])
            .attention_full(&tensor(&k, &[n, hkv, d]), &tensor(&v, &[n, hkv, d]), lens, 1.0 / (d as f32).sqrt())
            .unwrap()
            .to_vec_f32()
            .unwrap();
        assert_close(&got, &reference(&q, &k, &v, lens, hq, hkv, d), 1e-5, 1e-4);
    }

    #[test]
    fn one_sequence_matches_f64() {
        check(&[9], 4, 4, 32);
    }

    #[test]
    fn packed_sequences_do_not_see_each_other() {
        // Large enough to take the parallel path; lengths 1 and 2 at the edges.
        check(&[1, 37, 2, 130, 5], 12, 12, 32);
    }

    #[test]
    fn grouped_query_heads() {
        check(&[3, 8], 8, 2, 16);
    }

    #[test]
    fn lengths_must_cover_the_tokens() {
        let x = tensor(&[0.5; 2 * 4 * 8], &[4, 2, 8]);
        assert!(x.attention_full(&x, &x, &[1, 2], 1.0).is_err());
        assert!(x.attention_full(&x, &x, &[4, 1], 1.0).is_err());
        assert!(x.attention_full(&x, &x, &[0, 4], 1.0).is_ok());
    }
}
