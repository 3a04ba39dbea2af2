//! Attention over packed variable-length sequences without a KV cache, for encoders: BERT and
//! the other embedding models (bidirectional, [`attention_full`]), and the diffusion pipeline's
//! text encoders and transformers ([`attention_dense`]: CLIP's causal mask, T5's additive
//! position bias, FLUX's and the VAE's long bidirectional runs).
//!
//! The tokens of a batch are packed back to back; `seq_lens` splits them into sequences, and
//! every query sees the keys of its own sequence (the earlier ones only, when causal) and
//! nothing else. The kernel (`dense_flash`) is flash attention over K and V packed
//! once per call as the panels of the packed GEMM: blocks of 96 queries, 256 keys at a time,
//! an online softmax; no `L x L` matrix is ever held.

use super::dense_flash::{attend, Dense};
use crate::backend::DenseAttention;
use crate::cpu::kernels::detect::Isa;
use crate::cpu::{expect_f32, f32_tensor, TensorRead};
use crate::{Error, Result, Tensor};

fn dims3(t: &Tensor, op: &'static str) -> Result<[usize; 3]> {
    match t.dims() {
        &[n, h, d] => Ok([n, h, d]),
        other => Err(Error::shape(op, format!("expected [tokens, heads, head_dim], got {other:?}"))),
    }
}

/// `softmax(q·kᵀ · scale) · v` per head within each sequence. `q [tokens, heads, head_dim]`,
/// `k`/`v [tokens, kv_heads, head_dim]` (f32, `heads` a multiple of `kv_heads`); `seq_lens` must
/// sum to `tokens`. Returns `[tokens, heads, head_dim]`.
pub fn attention_full(q: &Tensor, k: &Tensor, v: &Tensor, seq_lens: &[usize], scale: f32) -> Result<Tensor> {
    run(q, k, v, seq_lens, &DenseAttention { scale, causal: false, bias: None }, "attention_full")
}

/// [`attention_full`] with a causal mask and/or an additive score bias `[heads, L, L]` (see
/// [`DenseAttention`]).
pub fn attention_dense(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    seq_lens: &[usize],
    opts: &DenseAttention,
) -> Result<Tensor> {
    run(q, k, v, seq_lens, opts, "attention_dense")
}

/// Checks an attention call and returns `[tokens, q_heads, kv_heads, head_dim]` and the bias
/// side `L` (0 without a bias). Shared with the other backends.
pub fn check_dense(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    seq_lens: &[usize],
    bias: Option<&Tensor>,
    op: &'static str,
) -> Result<([usize; 4], usize)> {
    for t in [q, k, v] {
        expect_f32(t, op)?;
    }
    let [n, hq, d] = dims3(q, op)?;
    let [nk, hkv, dk] = dims3(k, op)?;
    if k.dims() != v.dims() || nk != n || dk != d || hkv == 0 || !hq.is_multiple_of(hkv) {
        return Err(Error::shape(op, format!("q {:?}, k {:?}, v {:?}", q.dims(), k.dims(), v.dims())));
    }
    if seq_lens.iter().try_fold(0usize, |a, &l| a.checked_add(l)) != Some(n) {
        return Err(Error::shape(op, format!("sequence lengths {seq_lens:?} do not sum to {n} tokens")));
    }
    let mut side = 0;
    if let Some(b) = bias {
        expect_f32(b, op)?;
        let longest = seq_lens.iter().copied().max().unwrap_or(0);
        match b.dims() {
            &[bh, l, l2] if bh == hq && l == l2 && l >= longest => side = l,
            other => {
                return Err(Error::shape(
                    op,
                    format!("bias must be [{hq}, L, L] with L >= {longest} (the longest sequence), got {other:?}"),
                ))
            }
        }
    }
    Ok(([n, hq, hkv, d], side))
}

/// Checks the call and runs [`super::dense_flash`].
fn run(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    seq_lens: &[usize],
    opts: &DenseAttention,
    op: &'static str,
) -> Result<Tensor> {
    let ([n, hq, hkv, d], side) = check_dense(q, k, v, seq_lens, opts.bias, op)?;
    let (qr, kr, vr) = (TensorRead::new(q, op)?, TensorRead::new(k, op)?, TensorRead::new(v, op)?);
    let br = opts.bias.map(|b| TensorRead::new(b, op)).transpose()?;
    let bias = br.as_ref().map(|b| b.f32()).transpose()?;
    let dense = Dense {
        q: qr.f32()?,
        k: kr.f32()?,
        v: vr.f32()?,
        heads: hq,
        kv_heads: hkv,
        head_dim: d,
        scale: opts.scale,
        causal: opts.causal,
        bias: bias.map(|b| (b, side)),
    };
    let mut out = crate::cpu::buffers::zeroed(n * hq * d);
    let longest = seq_lens.iter().copied().max().unwrap_or(0);
    let parallel = n * longest * hq * d >= super::PARALLEL_MIN_ELEMS;
    attend(&dense, seq_lens, &mut out, Isa::best() != Isa::Scalar, parallel);
    f32_tensor(out, q.shape().clone(), q.device())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::{DenseAttention, Error, Tensor};

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

    /// f64 attention with a causal mask and/or bias `[hq, side, side]`, the scale given.
    #[allow(clippy::too_many_arguments)]
    fn dense_reference(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        lens: &[usize],
        (hq, hkv, d): (usize, usize, usize),
        scale: f64,
        causal: bool,
        bias: Option<(&[f32], usize)>,
    ) -> Vec<f64> {
        let n: usize = lens.iter().sum();
        let mut out = vec![0f64; n * hq * d];
        let mut s0 = 0;
        for &len in lens {
            for i in 0..len {
                let t = s0 + i;
                let keys = if causal { i + 1 } else { len };
                for h in 0..hq {
                    let kvh = h / (hq / hkv);
                    let qv = &q[(t * hq + h) * d..][..d];
                    let sc: Vec<f64> = (0..keys)
                        .map(|j| {
                            let kv = &k[((s0 + j) * hkv + kvh) * d..][..d];
                            let b = bias.map_or(0.0, |(b, l)| b[(h * l + i) * l + j] as f64);
                            qv.iter().zip(kv).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() * scale + b
                        })
                        .collect();
                    let m = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let z: f64 = sc.iter().map(|s| (s - m).exp()).sum();
                    for (j, s) in sc.iter().enumerate() {
                        let w = (s - m).exp() / z;
                        for e in 0..d {
                            out[(t * hq + h) * d + e] += w * v[((s0 + j) * hkv + kvh) * d + e] as f64;
                        }
                    }
                }
            }
            s0 += len;
        }
        out
    }

    fn check_dense(lens: &[usize], hq: usize, hkv: usize, d: usize, causal: bool, side: Option<usize>) {
        let n: usize = lens.iter().sum();
        let (q, k, v) = (rand_vec(n * hq * d, 24), rand_vec(n * hkv * d, 25), rand_vec(n * hkv * d, 26));
        let bias = side.map(|l| rand_vec(hq * l * l, 27));
        let bias_t = side.zip(bias.as_ref()).map(|(l, b)| tensor(b, &[hq, l, l]));
        let opts = DenseAttention { scale: 0.3, causal, bias: bias_t.as_ref() };
        let got = tensor(&q, &[n, hq, d])
            .attention_dense(&tensor(&k, &[n, hkv, d]), &tensor(&v, &[n, hkv, d]), lens, &opts)
            .unwrap()
            .to_vec_f32()
            .unwrap();
        let want = dense_reference(
            &q,
            &k,
            &v,
            lens,
            (hq, hkv, d),
            0.3,
            causal,
            side.zip(bias.as_deref()).map(|(l, b)| (b, l)),
        );
        assert_close(&got, &want, 1e-5, 1e-4);
    }

    #[test]
    fn dense_causal_matches_f64() {
        check_dense(&[7], 2, 2, 16, true, None);
        check_dense(&[1, 77, 3, 50], 4, 2, 32, true, None);
        // Several query and key blocks, a head size that is not a multiple of 16.
        check_dense(&[300, 5, 530], 4, 2, 20, true, None);
    }

    #[test]
    fn dense_bias_matches_f64() {
        // Bias side longer than every sequence (the encoder's maximum length).
        check_dense(&[5, 9], 3, 3, 8, false, Some(12));
        check_dense(&[64, 3], 4, 4, 32, false, Some(64));
        check_dense(&[290, 530], 2, 1, 24, false, Some(530));
    }

    #[test]
    fn dense_causal_with_bias_matches_f64() {
        check_dense(&[6, 40, 1], 4, 1, 16, true, Some(40));
    }

    #[test]
    fn dense_without_options_is_attention_full() {
        let (n, h, d) = (20, 2, 8);
        let (q, k, v) = (rand_vec(n * h * d, 28), rand_vec(n * h * d, 29), rand_vec(n * h * d, 30));
        let (qt, kt, vt) = (tensor(&q, &[n, h, d]), tensor(&k, &[n, h, d]), tensor(&v, &[n, h, d]));
        let full = qt.attention_full(&kt, &vt, &[12, 8], 0.5).unwrap().to_vec_f32().unwrap();
        let opts = DenseAttention { scale: 0.5, causal: false, bias: None };
        assert_eq!(qt.attention_dense(&kt, &vt, &[12, 8], &opts).unwrap().to_vec_f32().unwrap(), full);
    }

    /// A `-inf` bias entry masks its key exactly like the causal mask.
    #[test]
    fn infinite_bias_masks_keys() {
        let (n, h, d) = (9, 2, 4);
        let (q, k, v) = (rand_vec(n * h * d, 34), rand_vec(n * h * d, 35), rand_vec(n * h * d, 36));
        let (qt, kt, vt) = (tensor(&q, &[n, h, d]), tensor(&k, &[n, h, d]), tensor(&v, &[n, h, d]));
        let mask: Vec<f32> =
            (0..h * n * n).map(|e| if e % n > (e / n) % n { f32::NEG_INFINITY } else { 0.0 }).collect();
        let mask = tensor(&mask, &[h, n, n]);
        let masked = DenseAttention { scale: 1.0, causal: false, bias: Some(&mask) };
        let causal = DenseAttention { scale: 1.0, causal: true, bias: None };
        let a = qt.attention_dense(&kt, &vt, &[n], &masked).unwrap().to_vec_f32().unwrap();
        let b = qt.attention_dense(&kt, &vt, &[n], &causal).unwrap().to_vec_f32().unwrap();
        assert_close(&a, &b.iter().map(|&x| x as f64).collect::<Vec<_>>(), 1e-6, 1e-6);
    }

    #[test]
    fn dense_bias_shape_is_checked() {
        let x = tensor(&[0.5; 2 * 4 * 8], &[4, 2, 8]);
        let bias = |h: usize, a: usize, b: usize| tensor(&vec![0.0; h * a * b], &[h, a, b]);
        let run = |b: &Tensor| {
            x.attention_dense(&x, &x, &[3, 1], &DenseAttention { scale: 1.0, causal: true, bias: Some(b) })
        };
        assert!(run(&bias(2, 3, 3)).is_ok());
        assert!(matches!(run(&bias(2, 2, 2)), Err(Error::Shape { .. })));
        assert!(matches!(run(&bias(1, 3, 3)), Err(Error::Shape { .. })));
        assert!(matches!(run(&bias(2, 3, 4)), Err(Error::Shape { .. })));
        assert!(matches!(run(&tensor(&[0.0; 9], &[9])), Err(Error::Shape { .. })));
        let none = DenseAttention { scale: 1.0, causal: true, bias: None };
        assert!(matches!(x.attention_dense(&x, &x, &[3], &none), Err(Error::Shape { .. })));
    }
}
