//! The kernel of [`super::attention_full`]: flash attention over packed panels, driven by the
//! microkernels of [`crate::cpu::gemm_blocked`] (`12 x 32` blocks on AVX-512, `6 x 16` ones
//! elsewhere and at the edges; the same bits either way).
//!
//! * Per sequence and KV head, K is packed once into panels of 16 keys (`[head_dim][16]`) and V
//!   into panels of 16 output columns (`[keys][16]`), so both products of every query block read
//!   them as the GEMM's packed weights.
//! * A task is one block of [`QUERY_BLOCK`] queries of one head. It packs its queries into
//!   panels of 6 rows and walks the keys in blocks of [`KEY_BLOCK`]: scores `S = Q Kᵀ` for the
//!   block (`[rows, 256]`, in L2), an online softmax per row (running maximum and sum, earlier
//!   output rescaled when the maximum grows; ggml's exp polynomial, vectorized), then
//!   `O += P V` with `P` packed as the next product's activation panels.
//! * At the end each output row is divided by its sum.
//!
//! No task ever holds more than one `[rows, 256]` block of scores. Masked scores (causal, or a
//! `-inf` bias) weigh exactly zero; a row whose every score is masked gives zeros.

use rayon::prelude::*;

use super::glu::expf_ggml;
use crate::cpu::gemm_blocked::{micro, wide, Micro, Wide, KC, MR, NR};
use crate::cpu::gemm_f32::avx2_fma;
use crate::cpu::kernels::detect::Isa;
use crate::cpu::OutPtr;

/// Queries per task (a multiple of [`MR`]).
const QUERY_BLOCK: usize = 96;
/// Keys per step of the online softmax (a multiple of [`NR`]).
const KEY_BLOCK: usize = 256;

/// One dense attention call over packed sequences (see [`super::attention_full`]).
pub(crate) struct Dense<'a> {
    /// `[tokens, heads, head_dim]`.
    pub q: &'a [f32],
    /// `[tokens, kv_heads, head_dim]`, as `v`.
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub scale: f32,
    pub causal: bool,
    /// An additive bias `[heads, side, side]` and its side.
    pub bias: Option<(&'a [f32], usize)>,
}

/// One sequence's packed K and V for one KV head.
struct Packed<'a> {
    k: &'a [f32],
    v: &'a [f32],
}

/// Per-task buffers, reused across a worker's tasks.
struct Scratch {
    q: Vec<f32>,
    s: Vec<f32>,
    p: Vec<f32>,
    o: Vec<f32>,
    max: Vec<f32>,
    sum: Vec<f32>,
}

/// `out [tokens, heads, head_dim] = softmax(scale · Q Kᵀ + bias) V` per head within each
/// sequence of `seq_lens` (checked by the caller to sum to the tokens, with shapes that fit);
/// `simd` picks the AVX2 microkernel and vector softmax where the CPU has them.
pub(crate) fn attend(a: &Dense, seq_lens: &[usize], out: &mut [f32], simd: bool, parallel: bool) {
    let (hq, hkv, d) = (a.heads, a.kv_heads, a.head_dim);
    if d == 0 {
        return;
    }
    let d_pad = d.next_multiple_of(NR);
    let kv_row = hkv * d;
    // Packed K: per sequence, per KV head, `⌈len/16⌉` panels of `[d][16]` (keys past the end
    // zero). Packed V: per sequence, per KV head, `d_pad/16` panels of `[len][16]`.
    let k_len: usize = seq_lens.iter().map(|l| hkv * l.next_multiple_of(NR) * d).sum();
    let v_len: usize = seq_lens.iter().map(|l| hkv * l * d_pad).sum();
    let (mut kp, mut vp) = (crate::cpu::buffers::zeroed(k_len), crate::cpu::buffers::zeroed(v_len));
    {
        let mut jobs = Vec::new();
        let (mut kr, mut vr) = (&mut kp[..], &mut vp[..]);
        let mut s0 = 0;
        for &len in seq_lens.iter().filter(|&&l| l > 0) {
            for g in 0..hkv {
                let (kd, rest) = kr.split_at_mut(len.next_multiple_of(NR) * d);
                kr = rest;
                let (vd, rest) = vr.split_at_mut(len * d_pad);
                vr = rest;
                jobs.push((s0, len, g, kd, vd));
            }
            s0 += len;
        }
        let pack = |(s0, len, g, kd, vd): (usize, usize, usize, &mut [f32], &mut [f32])| {
            for (jp, panel) in kd.chunks_exact_mut(d * NR).enumerate() {
                for j in 0..NR.min(len - jp * NR) {
                    let row = &a.k[(s0 + jp * NR + j) * kv_row + g * d..][..d];
                    for (p, &x) in row.iter().enumerate() {
                        panel[p * NR + j] = x;
                    }
                }
            }
            for (jd, panel) in vd.chunks_exact_mut(len * NR).enumerate() {
                let cols = NR.min(d - jd * NR);
                for (key, dst) in panel.chunks_exact_mut(NR).enumerate() {
                    dst[..cols].copy_from_slice(&a.v[(s0 + key) * kv_row + g * d + jd * NR..][..cols]);
                }
            }
        };
        if parallel {
            jobs.into_par_iter().for_each(pack);
        } else {
            jobs.into_iter().for_each(pack);
        }
    }
    // Tasks in (sequence, head, query block) order, so a worker's consecutive tasks share K/V:
    // (first token, length, head, first query, offsets of its packed K and V).
    let mut tasks = Vec::new();
    let (mut s0, mut ko, mut vo) = (0, 0, 0);
    for &len in seq_lens {
        let (k_size, v_size) = (len.next_multiple_of(NR) * d, len * d_pad);
        for h in 0..hq {
            let g = h / (hq / hkv);
            for t0 in (0..len).step_by(QUERY_BLOCK) {
                tasks.push((s0, len, h, t0, ko + g * k_size, vo + g * v_size));
            }
        }
        s0 += len;
        ko += hkv * k_size;
        vo += hkv * v_size;
    }
    let kernels = Micros { one: micro(simd), wide: if simd { wide(Isa::best()) } else { None } };
    let vector = simd && avx2_fma();
    let dst = OutPtr(out.as_mut_ptr());
    let init = || Scratch {
        q: vec![0f32; QUERY_BLOCK * d],
        s: vec![0f32; QUERY_BLOCK * KEY_BLOCK],
        p: vec![0f32; QUERY_BLOCK * KEY_BLOCK],
        o: vec![0f32; QUERY_BLOCK * d_pad],
        max: vec![0f32; QUERY_BLOCK],
        sum: vec![0f32; QUERY_BLOCK],
    };
    let run = |sc: &mut Scratch, (s0, len, h, t0, ko, vo): (usize, usize, usize, usize, usize, usize)| {
        let rows = QUERY_BLOCK.min(len - t0);
        let kv = Packed { k: &kp[ko..][..len.next_multiple_of(NR) * d], v: &vp[vo..][..len * d_pad] };
        let out_rows = block(a, sc, &kernels, vector, (s0, len, h, t0, rows), &kv);
        // Rows `t0 .. t0 + rows` of head `h`: this task's elements alone.
        for (r, o) in out_rows.chunks_exact(d_pad).take(rows).enumerate() {
            // SAFETY: `out` holds `tokens · heads · d` values and token `s0 + t0 + r` lies in
            // it; no other task writes this row's head `h`.
            unsafe {
                let row = dst.get().add((s0 + t0 + r) * hq * d + h * d);
                std::ptr::copy_nonoverlapping(o.as_ptr(), row, d);
            }
        }
    };
    if parallel {
        tasks.into_par_iter().for_each_init(init, run);
    } else {
        let mut sc = init();
        tasks.into_iter().for_each(|t| run(&mut sc, t));
    }
    crate::cpu::buffers::recycle(kp);
    crate::cpu::buffers::recycle(vp);
}

/// The microkernels of one call.
struct Micros {
    one: Micro,
    wide: Option<Wide>,
}

impl Micros {
    /// `C (+)= A · B` over whole panels: `row_panels` panels of 6 rows (`[kc][6]`, panel `i` at
    /// `a(i)`) times `col_panels` panels of 16 columns (`[kc][16]`, panel `j` at `b(j)`), into
    /// the block at `c` (rows `ldc` apart); pairs of pairs through the `12 x 32` kernel.
    ///
    /// # Safety
    /// Every panel holds its `kc` steps, and `c` rows `0 .. 6·row_panels` of
    /// `16·col_panels` writable values.
    #[allow(clippy::too_many_arguments)]
    unsafe fn tiles(
        &self,
        kc: usize,
        row_panels: usize,
        col_panels: usize,
        a: impl Fn(usize) -> *const f32,
        b: impl Fn(usize) -> *const f32,
        c: *mut f32,
        ldc: usize,
        load: bool,
    ) {
        let at = |ip: usize, jp: usize| c.wrapping_add(ip * MR * ldc + jp * NR);
        let mut jp = 0;
        // SAFETY: the caller guarantees the panels and the block; each call below writes the
        // rows and columns of its own panels inside it.
        unsafe {
            if let Some(wide) = self.wide {
                while jp + 2 <= col_panels {
                    let mut ip = 0;
                    while ip + 2 <= row_panels {
                        wide(kc, a(ip), a(ip + 1), b(jp), b(jp + 1), at(ip, jp), ldc, load);
                        ip += 2;
                    }
                    if ip < row_panels {
                        (self.one)(kc, a(ip), b(jp), at(ip, jp), ldc, load);
                        (self.one)(kc, a(ip), b(jp + 1), at(ip, jp + 1), ldc, load);
                    }
                    jp += 2;
                }
            }
            for j in jp..col_panels {
                for i in 0..row_panels {
                    (self.one)(kc, a(i), b(j), at(i, j), ldc, load);
                }
            }
        }
    }
}

/// One task: queries `t0 .. t0 + rows` of head `h` in the sequence at token `s0`. Returns the
/// normalized output rows (`d_pad` apart) in the scratch.
fn block<'s>(
    a: &Dense,
    sc: &'s mut Scratch,
    kernels: &Micros,
    vector: bool,
    (s0, len, h, t0, rows): (usize, usize, usize, usize, usize),
    kv: &Packed,
) -> &'s [f32] {
    let d = a.head_dim;
    let d_pad = d.next_multiple_of(NR);
    let q_row = a.heads * d;
    let row_panels = rows.div_ceil(MR);
    // Q as panels of 6 rows, `[d][6]` each (rows past the block zero).
    for (ip, panel) in sc.q.chunks_exact_mut(MR * d).take(row_panels).enumerate() {
        for i in 0..MR {
            let r = ip * MR + i;
            if r < rows {
                let src = &a.q[(s0 + t0 + r) * q_row + h * d..][..d];
                for (p, &x) in src.iter().enumerate() {
                    panel[p * MR + i] = x;
                }
            } else {
                for p in 0..d {
                    panel[p * MR + i] = 0.0;
                }
            }
        }
    }
    sc.o[..row_panels * MR * d_pad].fill(0.0);
    sc.max[..rows].fill(f32::NEG_INFINITY);
    sc.sum[..rows].fill(0.0);
    let keys_end = if a.causal { t0 + rows } else { len };
    for kb0 in (0..keys_end).step_by(KEY_BLOCK) {
        let kb = KEY_BLOCK.min(keys_end - kb0);
        // S [rows, kb] = Q · K_blockᵀ (unscaled), rows KEY_BLOCK apart.
        for k0 in (0..d).step_by(KC) {
            let kc = KC.min(d - k0);
            // SAFETY: a Q panel holds `6·d` values from `k0·6`, a K panel `16·d` from `k0·16`
            // (keys past the sequence are zero panels); the block written, `row_panels·6` rows x
            // `⌈kb/16⌉·16` columns, lies inside the `QUERY_BLOCK x KEY_BLOCK` scores.
            unsafe {
                kernels.tiles(
                    kc,
                    row_panels,
                    kb.div_ceil(NR),
                    |ip| sc.q[ip * MR * d + k0 * MR..].as_ptr(),
                    |jp| kv.k[(kb0 / NR + jp) * d * NR + k0 * NR..].as_ptr(),
                    sc.s.as_mut_ptr(),
                    KEY_BLOCK,
                    k0 > 0,
                )
            };
        }
        // Online softmax: scores become weights relative to the running maximum.
        for r in 0..rows {
            let qi = t0 + r;
            let row = &mut sc.s[r * KEY_BLOCK..][..kb];
            let visible = if a.causal { (qi + 1).saturating_sub(kb0).min(kb) } else { kb };
            let bias = a.bias.map(|(b, side)| &b[(h * side + qi) * side + kb0..][..visible]);
            let m_blk = scale_max(vector, &mut row[..visible], a.scale, bias);
            let m_old = sc.max[r];
            let m_new = m_old.max(m_blk);
            if m_new == f32::NEG_INFINITY {
                row.fill(0.0);
                continue;
            }
            let sum = exp_sum(vector, &mut row[..visible], m_new);
            row[visible..].fill(0.0);
            if m_old != m_new {
                let c = if m_old == f32::NEG_INFINITY { 0.0 } else { expf_ggml(m_old - m_new) };
                sc.o[r * d_pad..][..d_pad].iter_mut().for_each(|o| *o *= c);
                sc.sum[r] *= c;
            }
            sc.sum[r] += sum;
            sc.max[r] = m_new;
        }
        // P as panels of 6 rows, `[kb][6]` each.
        for (ip, panel) in sc.p.chunks_exact_mut(MR * kb).take(row_panels).enumerate() {
            for i in 0..MR {
                let r = ip * MR + i;
                if r < rows {
                    for (p, &x) in sc.s[r * KEY_BLOCK..][..kb].iter().enumerate() {
                        panel[p * MR + i] = x;
                    }
                } else {
                    for p in 0..kb {
                        panel[p * MR + i] = 0.0;
                    }
                }
            }
        }
        // O [rows, d_pad] += P · V_block.
        // SAFETY: a P panel holds `6·kb` values, a V panel `16·kb`; the block written,
        // `row_panels·6` rows x `d_pad` columns, is the `QUERY_BLOCK x d_pad` output's.
        unsafe {
            kernels.tiles(
                kb,
                row_panels,
                d_pad / NR,
                |ip| sc.p[ip * MR * kb..].as_ptr(),
                |jd| kv.v[(jd * len + kb0) * NR..].as_ptr(),
                sc.o.as_mut_ptr(),
                d_pad,
                true,
            )
        };
    }
    for r in 0..rows {
        let inv = if sc.sum[r] > 0.0 { 1.0 / sc.sum[r] } else { 0.0 };
        sc.o[r * d_pad..][..d_pad].iter_mut().for_each(|o| *o *= inv);
    }
    &sc.o[..rows * d_pad]
}

/// `row[j] = row[j] · scale + bias[j]`; returns the largest (`-inf` for none).
fn scale_max(vector: bool, row: &mut [f32], scale: f32, bias: Option<&[f32]>) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if vector {
        // SAFETY: `vector` is set only when AVX2 and FMA were detected.
        return unsafe { scale_max_fma(row, scale, bias) };
    }
    let _ = vector;
    scale_max_portable(row, scale, bias)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn scale_max_fma(row: &mut [f32], scale: f32, bias: Option<&[f32]>) -> f32 {
    scale_max_portable(row, scale, bias)
}

#[inline(always)]
fn scale_max_portable(row: &mut [f32], scale: f32, bias: Option<&[f32]>) -> f32 {
    match bias {
        Some(b) => row.iter_mut().zip(b).for_each(|(s, &b)| *s = *s * scale + b),
        None => row.iter_mut().for_each(|s| *s *= scale),
    }
    // Eight lanes, so the loop vectorizes (max is exact in any order).
    let mut lanes = [f32::NEG_INFINITY; 8];
    let (chunks, tail) = row.as_chunks::<8>();
    for c in chunks {
        for (m, &x) in lanes.iter_mut().zip(c) {
            *m = if x > *m { x } else { *m };
        }
    }
    tail.iter().chain(&lanes).fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
}

/// `row[j] = e^(row[j] - max)`, ggml's exp polynomial ([`expf_ggml`]; 0 where the result would
/// be subnormal, in the vector build); returns their sum. Every `row[j] - max` is at most 0.
fn exp_sum(vector: bool, row: &mut [f32], max: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if vector {
        // SAFETY: `vector` is set only when AVX2 and FMA were detected.
        return unsafe { avx2::exp_sum(row, max) };
    }
    let _ = vector;
    let mut lanes = [0f32; 8];
    let (chunks, tail) = row.as_chunks_mut::<8>();
    for c in chunks {
        for (s, x) in lanes.iter_mut().zip(c.iter_mut()) {
            *x = expf_ggml(*x - max);
            *s += *x;
        }
    }
    finish_sum(&lanes, tail, max)
}

/// The lanes' sum in a fixed order, plus the tail's values (exponentiated here).
fn finish_sum(lanes: &[f32; 8], tail: &mut [f32], max: f32) -> f32 {
    let mut sum = 0f32;
    for x in tail {
        *x = expf_ggml(*x - max);
        sum += *x;
    }
    ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7])) + sum
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    const fn c(bits: u32) -> f32 {
        f32::from_bits(bits)
    }

    /// [`super::expf_ggml`] on 8 lanes of `x <= 0`, the same bits where the result is a normal
    /// number and 0 below (`-inf` included).
    #[inline(always)]
    unsafe fn exp8(x: __m256) -> __m256 {
        // SAFETY: the callers enable AVX2 and FMA; pure register arithmetic.
        unsafe {
            let x = _mm256_max_ps(x, _mm256_set1_ps(-104.0));
            let r = _mm256_set1_ps(c(0x4b40_0000));
            let z = _mm256_fmadd_ps(x, _mm256_set1_ps(c(0x3fb8_aa3b)), r);
            let n = _mm256_sub_ps(z, r);
            let b = _mm256_fnmadd_ps(
                n,
                _mm256_set1_ps(c(0x35bf_be8e)),
                _mm256_fnmadd_ps(n, _mm256_set1_ps(c(0x3f31_7200)), x),
            );
            let u = _mm256_mul_ps(b, b);
            let p = _mm256_fmadd_ps(
                _mm256_fmadd_ps(_mm256_set1_ps(c(0x3c07_2010)), b, _mm256_set1_ps(c(0x3d2b_9f17))),
                u,
                _mm256_fmadd_ps(_mm256_set1_ps(c(0x3e2a_af33)), b, _mm256_set1_ps(c(0x3eff_fedb))),
            );
            let j = _mm256_fmadd_ps(p, u, _mm256_fmadd_ps(_mm256_set1_ps(c(0x3f7f_fff6)), b, _mm256_set1_ps(1.0)));
            let e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
            let normal = _mm256_cmp_ps(n, _mm256_set1_ps(-126.5), _CMP_GE_OQ);
            _mm256_and_ps(_mm256_mul_ps(j, _mm256_castsi256_ps(e)), normal)
        }
    }

    /// [`super::exp_sum`] with 8 lanes at a time.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn exp_sum(row: &mut [f32], max: f32) -> f32 {
        let (chunks, tail) = row.as_chunks_mut::<8>();
        // SAFETY: AVX2 and FMA are enabled; each chunk holds 8 values.
        unsafe {
            let m = _mm256_set1_ps(max);
            let mut acc = _mm256_setzero_ps();
            for ch in chunks {
                let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(ch.as_ptr()), m));
                _mm256_storeu_ps(ch.as_mut_ptr(), e);
                acc = _mm256_add_ps(acc, e);
            }
            let mut lanes = [0f32; 8];
            _mm256_storeu_ps(lanes.as_mut_ptr(), acc);
            super::finish_sum(&lanes, tail, max)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::rand_vec;
    use super::*;

    /// The portable build (scalar microkernel, scalar exp) and the vector one give the same
    /// attention to float rounding, over several key and query blocks, a causal mask, a bias,
    /// grouped heads and a head size that is not a multiple of 16. (Both are checked against
    /// f64 in `attention_full`'s tests through the public op.)
    #[test]
    fn portable_and_vector_builds_agree() {
        let (lens, hq, hkv, d) = ([300usize, 7, 530], 4, 2, 20);
        let n: usize = lens.iter().sum();
        let side = 530;
        let (q, k, v) = (rand_vec(n * hq * d, 1), rand_vec(n * hkv * d, 2), rand_vec(n * hkv * d, 3));
        let bias = rand_vec(hq * side * side, 4);
        for causal in [false, true] {
            let a = Dense {
                q: &q,
                k: &k,
                v: &v,
                heads: hq,
                kv_heads: hkv,
                head_dim: d,
                scale: 0.4,
                causal,
                bias: Some((&bias, side)),
            };
            let (mut portable, mut vector) = (vec![0f32; n * hq * d], vec![0f32; n * hq * d]);
            attend(&a, &lens, &mut portable, false, true);
            attend(&a, &lens, &mut vector, true, false);
            for (x, y) in portable.iter().zip(&vector) {
                assert!((x - y).abs() <= 1e-5 + 1e-5 * x.abs(), "{x} vs {y} (causal {causal})");
            }
        }
    }

    /// The vector exp has the bits of `expf_ggml` wherever the result is normal, and is 0 below.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_exp_has_the_scalar_bits() {
        if !avx2_fma() {
            eprintln!("skipped: no AVX2/FMA on this CPU");
            return;
        }
        let mut xs: Vec<f32> = (0..200_000).map(|i| -(i as f32) * 0.000_44).collect();
        xs.extend([-87.0, -87.3, -87.34, -88.0, -100.0, -1e4, f32::NEG_INFINITY, -0.0]);
        let mut got = xs.clone();
        // SAFETY: AVX2 and FMA were detected above.
        let sum = unsafe { avx2::exp_sum(&mut got, 0.0) };
        let mut want_sum = 0f64;
        for (&x, &g) in xs.iter().zip(&got) {
            let want = expf_ggml(x);
            if want >= f32::MIN_POSITIVE {
                assert_eq!(g.to_bits(), want.to_bits(), "e^{x}");
            } else {
                assert!(g == 0.0 || g == want, "e^{x}: {g} vs {want}");
            }
            want_sum += want as f64;
        }
        assert!((sum as f64 - want_sum).abs() < 1e-4 * want_sum, "{sum} vs {want_sum}");
    }
}
