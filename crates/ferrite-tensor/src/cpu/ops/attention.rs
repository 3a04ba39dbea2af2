//! KV-cache writes and causal attention over a paged KV cache (prefill and decode alike).
//!
//! With an f16 cache and a short batch the attention mirrors ggml's CPU flash attention
//! (`one_chunk` path) bit for bit (`super::flash`); prefill runs of `Q_TILE` or more rows take
//! the tiled f32 path (`super::attention_tiled`, close to ggml's `flash_attn_ext_tiled`); the
//! other rows (f32 cache, 64 or more query rows, a single query over 512 or more positions) an
//! f32 softmax split over the keys (`super::attention_split`, as ggml's split-KV decode).

use half::f16;
use rayon::prelude::*;

use super::attention_split::{attend_units, Unit};
use super::attention_tiled::{attend_tile, Q_TILE};
use super::flash;
use crate::backend::{AttentionParams, AttentionSeq};
use crate::cpu::{cpu_storage, expect_f32, f32_tensor, TensorRead};
use crate::{DType, Error, Result, Tensor};

/// Writes `x [tokens, kv_heads, head_dim]` (f32) into `cache [slots, kv_heads, head_dim]`
/// (f32 or f16) at `slots[token]`.
pub fn write_kv(cache: &Tensor, x: &Tensor, slots: &[u32]) -> Result<()> {
    expect_f32(x, "write_kv")?;
    let [_, h, d] = crate::backend::check_write_kv(cache, x, slots)?;
    let xr = TensorRead::new(x, "write_kv")?;
    let xs = xr.f32()?;
    let mut guard = cpu_storage(cache, "write_kv")?.write("write_kv")?;
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut guard[..]);
    let base = cache.offset_bytes();
    let row = h * d;
    for (ti, &slot) in slots.iter().enumerate() {
        let src = &xs[ti * row..(ti + 1) * row];
        match cache.dtype() {
            DType::F32 => {
                let dst = &mut bytes[base + slot as usize * row * 4..][..row * 4];
                dst.copy_from_slice(bytemuck::cast_slice(src));
            }
            DType::F16 => {
                let dst = &mut bytes[base + slot as usize * row * 2..][..row * 2];
                for (c, &v) in dst.chunks_exact_mut(2).zip(src) {
                    c.copy_from_slice(&f16::from_f32(v).to_le_bytes());
                }
            }
            dt => return Err(Error::UnsupportedDType { dtype: dt, op: "write_kv (cache)" }),
        }
    }
    Ok(())
}

/// Attention of the query rows of one token for the `group` heads that share KV head `kvh`
/// (`q`, `out`: `[group, d]`) over an f16 cache, as ggml's CPU flash attention computes each
/// (`ggml_compute_forward_flash_attn_ext_f16_one_chunk`): the query rounded to f16, each score
/// `ggml_vec_dot_f16(k, q) · scale` ([`flash::dots`], 8 keys at a time), an online softmax
/// whose running output is kept in f16 (rescaled with [`flash::scale`] on a new maximum,
/// accumulated with [`flash::mad`]) and the sum `S = S·ms + vs` in f32 (fused, as GCC
/// contracts it), divided out at the end. The heads share each key and value row while it is
/// in cache; every head's arithmetic is its own, in ggml's order.
#[allow(clippy::too_many_arguments)]
fn attend_group_f16(
    out: &mut [f32],
    d: usize,
    q: &[f32],
    k: &[f16],
    v: &[f16],
    seq: &AttentionSeq,
    pos: usize,
    kvh: usize,
    kv_row: usize,
    p: &AttentionParams,
) {
    const KEYS: usize = 8;
    let group = q.len() / d;
    let lo = p.first_visible(pos);
    let slot_of = |pp: usize| seq.slot(pp, p.block_size);
    let q16: Vec<f16> = q.iter().map(|&x| f16::from_f32(x)).collect();
    let qf: Vec<f32> = q16.iter().map(|x| x.to_f32()).collect();
    // ggml folds a softcap into the scale first: `s = c · tanh(dot · (scale / c))`.
    let scale = p.softcap.map_or(p.scale, |c| p.scale / c);
    let mut acc = vec![f16::ZERO; group * d];
    let mut sum = vec![0f32; group];
    let mut max = vec![f32::NEG_INFINITY; group];
    let mut scores = vec![[0f32; KEYS]; group];
    let (mut ms, mut vs, mut rescale) =
        (vec![[1f32; KEYS]; group], vec![[1f32; KEYS]; group], vec![[false; KEYS]; group]);
    let mut k0 = lo;
    while k0 <= pos {
        let k1 = (k0 + KEYS).min(pos + 1);
        let offs: [usize; KEYS] =
            std::array::from_fn(|i| if k0 + i < k1 { slot_of(k0 + i) * kv_row + kvh * d } else { 0 });
        let keys: [&[f16]; KEYS] = std::array::from_fn(|i| &k[offs[i]..offs[i] + d]);
        let vals: [&[f16]; KEYS] = std::array::from_fn(|i| &v[offs[i]..offs[i] + d]);
        let (keys, vals) = (&keys[..k1 - k0], &vals[..k1 - k0]);
        flash::dots_heads(keys, &q16, &qf, d, &mut scores);
        for h in 0..group {
            (ms[h], vs[h], rescale[h]) = ([1f32; KEYS], [1f32; KEYS], [false; KEYS]);
            for (i, &dot) in scores[h][..k1 - k0].iter().enumerate() {
                let mut s = dot * scale;
                if let Some(c) = p.softcap {
                    s = c * s.tanh();
                }
                if s > max[h] {
                    ms[h][i] = (max[h] - s).exp();
                    max[h] = s;
                    rescale[h][i] = true;
                } else {
                    vs[h][i] = (s - max[h]).exp();
                }
                sum[h] = sum[h].mul_add(ms[h][i], vs[h][i]);
            }
        }
        flash::mad_run_heads(&mut acc, d, vals, &ms, &vs, &rescale);
        k0 = k1;
    }
    for h in 0..group {
        let inv = if sum[h] == 0.0 { 0.0 } else { 1.0 / sum[h] };
        for (o, a) in out[h * d..(h + 1) * d].iter_mut().zip(&acc[h * d..(h + 1) * d]) {
            *o = a.to_f32() * inv;
        }
    }
}

/// Attention of `q [tokens, q_heads, head_dim]` over the caches for every sequence in `seqs`.
/// Query rows that belong to no sequence come out as zeros.
pub fn attention(
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    seqs: &[AttentionSeq],
    p: &AttentionParams,
) -> Result<Tensor> {
    expect_f32(q, "attention")?;
    let dims = crate::backend::check_attention(q, k_cache, v_cache, p)?;
    let (t, hq, d, n_slots, hkv) = (dims.tokens, dims.q_heads, dims.head_dim, dims.slots, dims.kv_heads);
    let at = crate::backend::attention_rows(seqs, t, n_slots, p)?;
    let mut out = crate::cpu::buffers::zeroed(q.numel());
    {
        let (qr, kr, vr) = (
            TensorRead::new(q, "attention")?,
            TensorRead::new(k_cache, "attention")?,
            TensorRead::new(v_cache, "attention")?,
        );
        let qs = qr.f32()?;
        let group = hq / hkv;
        // Sequences with long query runs (prefill chunks) take the tiled f32 path (as ggml's
        // `flash_attn_ext_tiled`), per (sequence, KV head, tile of Q_TILE tokens); the rest go
        // row by row.
        let tiled: Vec<usize> = (0..seqs.len()).filter(|&i| seqs[i].q_len >= Q_TILE).collect();
        let mut row_at = at.clone();
        for &si in &tiled {
            let s = &seqs[si];
            row_at[s.q_start..s.q_start + s.q_len].iter_mut().for_each(|x| *x = None);
        }
        let tasks: Vec<(usize, usize, usize)> = tiled
            .iter()
            .flat_map(|&si| {
                (0..hkv).flat_map(move |kvh| (0..seqs[si].q_len).step_by(Q_TILE).map(move |t0| (si, kvh, t0)))
            })
            .collect();
        macro_rules! run {
            ($ty:ty, $flash:expr) => {{
                let k: &[$ty] = bytemuck::try_cast_slice(kr.bytes()).map_err(|e| Error::Backend(format!("{e:?}")))?;
                let v: &[$ty] = bytemuck::try_cast_slice(vr.bytes()).map_err(|e| Error::Backend(format!("{e:?}")))?;
                // ggml takes its f16 `one_chunk` path for fewer than 64 query rows
                // (GGML_FA_TILE_Q) and, for one row, fewer than 512 cached positions; otherwise
                // its split-KV (per-thread chunks) path, for which the f32 softmax is the closer
                // match.
                let flash_row = |si: usize| $flash && t < 64 && (t > 1 || seqs[si].kv_len < 512);
                // One task per (token, KV head): the `group` query heads that share its rows.
                out.par_chunks_mut((group * d).max(1)).enumerate().for_each(|(c, o)| {
                    let (ti, kvh) = (c / hkv, c % hkv);
                    match row_at[ti] {
                        Some((si, pos)) if flash_row(si) => {
                            // `$ty` is f16 whenever `$flash` is set.
                            let (k16, v16): (&[f16], &[f16]) = (bytemuck::cast_slice(k), bytemuck::cast_slice(v));
                            let row0 = ti * hq + kvh * group;
                            let qg = &qs[row0 * d..(row0 + group) * d];
                            attend_group_f16(o, d, qg, k16, v16, &seqs[si], pos, kvh, hkv * d, p);
                        }
                        _ => {}
                    }
                });
                let units: Vec<Unit> = row_at
                    .iter()
                    .enumerate()
                    .filter_map(|(ti, r)| r.filter(|&(si, _)| !flash_row(si)).map(|(si, pos)| (ti, si, pos)))
                    .flat_map(|(token, seq, pos)| (0..hkv).map(move |kvh| Unit { token, kvh, seq, pos }))
                    .collect();
                attend_units::<$ty>(&mut out, qs, k, v, seqs, &units, (hq, hkv, d), p);
                let results: Vec<Vec<f32>> = tasks
                    .par_iter()
                    .map(|&(si, kvh, t0)| {
                        let s = &seqs[si];
                        let n_tok = Q_TILE.min(s.q_len - t0);
                        let mut qt = Vec::with_capacity(n_tok * group * d);
                        for i in 0..n_tok {
                            let row0 = (s.q_start + t0 + i) * hq + kvh * group;
                            qt.extend_from_slice(&qs[row0 * d..(row0 + group) * d]);
                        }
                        let mut o = vec![0f32; qt.len()];
                        let pos0 = s.kv_len - s.q_len + t0;
                        attend_tile(&qt, n_tok, group, d, pos0, k, v, s, kvh, hkv * d, p, &mut o);
                        o
                    })
                    .collect();
                for (&(si, kvh, t0), o) in tasks.iter().zip(&results) {
                    let s = &seqs[si];
                    for (i, rows) in o.chunks(group * d).enumerate() {
                        let row0 = (s.q_start + t0 + i) * hq + kvh * group;
                        out[row0 * d..(row0 + group) * d].copy_from_slice(rows);
                    }
                }
            }};
        }
        match k_cache.dtype() {
            DType::F32 => run!(f32, false),
            DType::F16 => run!(f16, true),
            dt => return Err(Error::UnsupportedDType { dtype: dt, op: "attention (cache)" }),
        }
    }
    f32_tensor(out, q.shape().clone(), q.device())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;
    use crate::Device;

    /// Plain causal attention over contiguous K/V `[positions, kv_heads, d]`, in f64.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        q_len: usize,
        kv_len: usize,
        hq: usize,
        hkv: usize,
        d: usize,
        scale: f64,
        window: Option<usize>,
    ) -> Vec<f64> {
        let mut out = vec![0f64; q_len * hq * d];
        for i in 0..q_len {
            let pos = kv_len - q_len + i;
            for h in 0..hq {
                let kh = h / (hq / hkv);
                let keys: Vec<usize> = (0..=pos).filter(|&p| window.is_none_or(|w| p + w > pos)).collect();
                let s: Vec<f64> = keys
                    .iter()
                    .map(|&p| {
                        (0..d).map(|x| q[(i * hq + h) * d + x] as f64 * k[(p * hkv + kh) * d + x] as f64).sum::<f64>()
                            * scale
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
                for (j, &p) in keys.iter().enumerate() {
                    let w = (s[j] - m).exp() / z;
                    for x in 0..d {
                        out[(i * hq + h) * d + x] += w * v[(p * hkv + kh) * d + x] as f64;
                    }
                }
            }
        }
        out
    }

    /// Two sequences in one batch, written into shuffled blocks of a paged cache, against the
    /// contiguous reference: one prefill chunk after a cached prefix and one decode token.
    #[test]
    fn paged_batched_matches_f64() {
        let (hq, hkv, d, bs) = (6, 2, 16, 4);
        let n_blocks = 64;
        let dev = Device::cpu();
        for dtype in [DType::F32, DType::F16] {
            for window in [None, Some(5), Some(100)] {
                let kc = Tensor::zeros([n_blocks * bs, hkv, d], dtype, &dev).unwrap();
                let vc = Tensor::zeros([n_blocks * bs, hkv, d], dtype, &dev).unwrap();
                let tables = [vec![7u32, 2, 11, 0], vec![5u32, 9, 3], (16..16 + 43).rev().collect::<Vec<u32>>()];
                let lens = [(6usize, 13usize), (1, 10), (150, 170)]; // (q_len, kv_len); the last is tiled
                let mut q_all = Vec::new();
                let mut want_all = Vec::new();
                let mut seqs = Vec::new();
                for (si, (&(q_len, kv_len), table)) in lens.iter().zip(&tables).enumerate() {
                    let k = rand_vec(kv_len * hkv * d, 100 + si as u64);
                    let v = rand_vec(kv_len * hkv * d, 200 + si as u64);
                    let q = rand_vec(q_len * hq * d, 300 + si as u64);
                    let slots: Vec<u32> = (0..kv_len).map(|p| table[p / bs] * bs as u32 + (p % bs) as u32).collect();
                    kc.write_kv(&tensor(&k, &[kv_len, hkv, d]), &slots).unwrap();
                    vc.write_kv(&tensor(&v, &[kv_len, hkv, d]), &slots).unwrap();
                    seqs.push(AttentionSeq {
                        q_start: q_all.len() / (hq * d),
                        q_len,
                        kv_len,
                        block_table: table.clone(),
                    });
                    want_all.extend(reference(&q, &k, &v, q_len, kv_len, hq, hkv, d, 0.25, window));
                    q_all.extend(q);
                }
                let t = q_all.len() / (hq * d);
                let params = AttentionParams { scale: 0.25, block_size: bs, sliding_window: window, softcap: None };
                let got =
                    tensor(&q_all, &[t, hq, d]).attention(&kc, &vc, &seqs, &params).unwrap().to_vec_f32().unwrap();
                let tol = if dtype == DType::F16 { 5e-3 } else { 1e-5 };
                assert_close(&got, &want_all, tol, tol);
            }
        }
    }

    /// Decode rows over long runs of keys take the split-KV path (several runs of
    /// `attention_split::CHUNK` keys merged): one row alone (f32 and f16 caches) and two rows side
    /// by side (f32; with an f16 cache two rows take ggml's flash path), with and without a
    /// sliding window.
    #[test]
    fn long_decode_rows_split_over_keys_match_f64() {
        let (hq, hkv, d, bs) = (6, 2, 16, 4);
        let dev = Device::cpu();
        for dtype in [DType::F32, DType::F16] {
            for window in [None, Some(200)] {
                for lens in [&[600usize][..], &[300, 529]] {
                    let n_blocks: usize = lens.iter().map(|l| l.div_ceil(bs)).sum();
                    let kc = Tensor::zeros([n_blocks * bs, hkv, d], dtype, &dev).unwrap();
                    let vc = Tensor::zeros([n_blocks * bs, hkv, d], dtype, &dev).unwrap();
                    let (mut q_all, mut want_all, mut seqs, mut next) = (Vec::new(), Vec::new(), Vec::new(), 0u32);
                    for (si, &kv_len) in lens.iter().enumerate() {
                        // Blocks in reverse order, so slots are not positions.
                        let nb = kv_len.div_ceil(bs) as u32;
                        let table: Vec<u32> = (next..next + nb).rev().collect();
                        next += nb;
                        let k = rand_vec(kv_len * hkv * d, 400 + si as u64);
                        let v = rand_vec(kv_len * hkv * d, 500 + si as u64);
                        let q = rand_vec(hq * d, 600 + si as u64);
                        let slots: Vec<u32> =
                            (0..kv_len).map(|p| table[p / bs] * bs as u32 + (p % bs) as u32).collect();
                        kc.write_kv(&tensor(&k, &[kv_len, hkv, d]), &slots).unwrap();
                        vc.write_kv(&tensor(&v, &[kv_len, hkv, d]), &slots).unwrap();
                        seqs.push(AttentionSeq { q_start: si, q_len: 1, kv_len, block_table: table });
                        want_all.extend(reference(&q, &k, &v, 1, kv_len, hq, hkv, d, 0.25, window));
                        q_all.extend(q);
                    }
                    let params = AttentionParams { scale: 0.25, block_size: bs, sliding_window: window, softcap: None };
                    let got = tensor(&q_all, &[lens.len(), hq, d])
                        .attention(&kc, &vc, &seqs, &params)
                        .unwrap()
                        .to_vec_f32()
                        .unwrap();
                    let tol = if dtype == DType::F16 { 5e-3 } else { 1e-5 };
                    assert_close(&got, &want_all, tol, tol);
                }
            }
        }
    }

    /// Gemma3-like shapes on the tiled path: head_dim 256, 4 query heads per KV head, a
    /// 512-token window over 602 positions, f16 cache, large scores.
    #[test]
    fn tiled_gemma_shapes_match_f64() {
        let (hq, hkv, d, bs, n) = (4usize, 1usize, 256usize, 16usize, 602usize);
        let dev = Device::cpu();
        let blocks = n.div_ceil(bs);
        let kc = Tensor::zeros([blocks * bs, hkv, d], DType::F16, &dev).unwrap();
        let vc = Tensor::zeros([blocks * bs, hkv, d], DType::F16, &dev).unwrap();
        let k: Vec<f32> = rand_vec(n * hkv * d, 1).iter().map(|x| x * 2.0).collect();
        let v = rand_vec(n * hkv * d, 2);
        let q: Vec<f32> = rand_vec(n * hq * d, 3).iter().map(|x| x * 2.0).collect();
        // The reference sees the f16-rounded cache, as the kernel does.
        let round = |x: &[f32]| -> Vec<f32> { x.iter().map(|&a| half::f16::from_f32(a).to_f32()).collect() };
        let slots: Vec<u32> = (0..n as u32).collect();
        kc.write_kv(&tensor(&k, &[n, hkv, d]), &slots).unwrap();
        vc.write_kv(&tensor(&v, &[n, hkv, d]), &slots).unwrap();
        let seqs = [AttentionSeq { q_start: 0, q_len: n, kv_len: n, block_table: (0..blocks as u32).collect() }];
        let params = AttentionParams { scale: 0.0625, block_size: bs, sliding_window: Some(512), softcap: None };
        let got = tensor(&q, &[n, hq, d]).attention(&kc, &vc, &seqs, &params).unwrap().to_vec_f32().unwrap();
        let want = reference(&q, &round(&k), &round(&v), n, n, hq, hkv, d, 0.0625, Some(512));
        assert_close(&got, &want, 2e-5, 2e-5);
    }

    #[test]
    fn bad_block_tables_are_errors() {
        let dev = Device::cpu();
        let kc = Tensor::zeros([8, 1, 4], DType::F32, &dev).unwrap();
        let q = tensor(&[0.0; 4], &[1, 1, 4]);
        let p = AttentionParams { scale: 1.0, block_size: 4, sliding_window: None, softcap: None };
        let short = [AttentionSeq { q_start: 0, q_len: 1, kv_len: 5, block_table: vec![0] }];
        assert!(q.attention(&kc, &kc, &short, &p).is_err());
        let outside = [AttentionSeq { q_start: 0, q_len: 1, kv_len: 2, block_table: vec![2] }];
        assert!(q.attention(&kc, &kc, &outside, &p).is_err());
        assert!(kc.write_kv(&tensor(&[0.0; 4], &[1, 1, 4]), &[8]).is_err());
    }
}
