//! AVX-512 VNNI dot products for the 32-weight blocks: Q4_0, Q4_1, Q5_0, Q8_0, rounded as
//! ggml's kernels (see [`super::scalar`]): one 8-lane f32 accumulator per activation row,
//! `fma(d_w · d_x, lane, acc)` per block, `hsum_float_8` at the end.
//!
//! Two blocks (64 bytes) per step: the weights are unpacked to unsigned bytes in a zmm and one
//! 512-bit `vpdpbusd` against the activations gives the 16 lane sums of both blocks (lane `l` of
//! a block: its values `4l..4l+4`). Signed weights are stored with an offset (`q + 128` for
//! Q8_0 by `xor 0x80`, the raw `q` for Q4_0/Q5_0, whose value is `q - 8` / `q - 16`); the
//! offset times the activations' 4-value sums (`ActRow::sum4`) is subtracted per lane, which
//! leaves exactly ggml's integers. The two blocks then go into the accumulator one after the
//! other, as ggml's one-block-per-step loop does.

use std::arch::x86_64::*;

use crate::quant::act::ActRow;

const Q4_0: u8 = 0;
const Q4_1: u8 = 1;
const Q5_0: u8 = 2;
const Q8_0: u8 = 3;

const fn type_size(kind: u8) -> usize {
    match kind {
        Q4_0 => 18,
        Q4_1 => 20,
        Q5_0 => 22,
        _ => 34,
    }
}

/// Converts the 8 fp16 values at `p + off + i·ts` (`i < n`, zero for `i >= n`) to f32.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn gather_f16x8(p: *const u8, ts: usize, off: usize, n: usize) -> __m256 {
    // SAFETY: the caller guarantees blocks `0..n` are readable; others are not touched.
    unsafe {
        let h: [i16; 8] = if n >= 8 {
            std::array::from_fn(|i| std::ptr::read_unaligned(p.add(i * ts + off) as *const i16))
        } else {
            std::array::from_fn(|i| if i < n { std::ptr::read_unaligned(p.add(i * ts + off) as *const i16) } else { 0 })
        };
        _mm256_cvtph_ps(_mm_loadu_si128(h.as_ptr() as *const __m128i))
    }
}

/// The 64 weights of blocks `p` and `q` as unsigned bytes in element order (the second block
/// only when `second`, zero otherwise).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn unpack_pair<const KIND: u8>(p: *const u8, q: *const u8, second: bool) -> __m512i {
    // SAFETY: the caller guarantees block `p` (and `q` when `second`) is readable.
    unsafe {
        if KIND == Q8_0 {
            let lo = _mm256_loadu_si256(p.add(2) as *const __m256i);
            let hi = if second { _mm256_loadu_si256(q.add(2) as *const __m256i) } else { _mm256_setzero_si256() };
            let v = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
            return _mm512_xor_si512(v, _mm512_set1_epi8(0x80u8 as i8));
        }
        let qs = match KIND {
            Q4_0 => 2,
            Q4_1 => 4,
            _ => 6,
        };
        // Lanes (128-bit): [qs0, qs0, qs1, qs1], then >> 4 in lanes 1 and 3, & 0xF.
        let a = _mm512_broadcast_i32x4(_mm_loadu_si128(p.add(qs) as *const __m128i));
        let v = if second {
            _mm512_mask_broadcast_i32x4(a, 0xFF00, _mm_loadu_si128(q.add(qs) as *const __m128i))
        } else {
            _mm512_maskz_mov_epi64(0x0F, a)
        };
        let w = _mm512_and_si512(_mm512_srlv_epi64(v, _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0)), _mm512_set1_epi8(0xF));
        if KIND == Q5_0 {
            let h0 = std::ptr::read_unaligned(p.add(2) as *const u32) as u64;
            let h1 = if second { std::ptr::read_unaligned(q.add(2) as *const u32) as u64 } else { 0 };
            return _mm512_mask_add_epi8(w, h0 | h1 << 32, w, _mm512_set1_epi8(16));
        }
        w
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn legacy<const KIND: u8, const R: usize>(w: &[u8], xs: &[ActRow<'_>], out: &mut [f32]) {
    let ts = type_size(KIND);
    let nb = w.len() / ts;
    // log2 of the weight offset removed through the activation 4-value sums.
    let shift = match KIND {
        Q4_0 => 3,
        Q5_0 => 4,
        Q8_0 => 7,
        _ => 0,
    };
    let xq: [*const i8; R] = std::array::from_fn(|r| xs[r].qs.as_ptr());
    let xd: [*const f32; R] = std::array::from_fn(|r| xs[r].d.as_ptr());
    let x4: [*const i32; R] = std::array::from_fn(|r| xs[r].sum4.as_ptr());
    let xs32: [*const f32; R] = std::array::from_fn(|r| xs[r].s32.as_ptr());
    let mut acc = [_mm256_setzero_ps(); R];
    let mut summs = [0f32; R];
    // SAFETY: blocks `b..b + n` lie inside `w`; the activation rows are padded to whole groups
    // of 8 blocks (checked by `Kernels::quant_dot`), so every group's activation reads fit.
    unsafe {
        let wp = w.as_ptr();
        let mut b = 0;
        while b < nb {
            let n = (nb - b).min(8);
            let p = wp.add(b * ts);
            let dw = gather_f16x8(p, ts, 0, n);
            if KIND == Q4_1 {
                // ggml's scalar `summs = fma(m, s, summs)`, block by block.
                let mut m = [0f32; 8];
                _mm256_storeu_ps(m.as_mut_ptr(), gather_f16x8(p, ts, 2, n));
                for r in 0..R {
                    for (j, &mj) in m.iter().enumerate().take(n) {
                        summs[r] = mj.mul_add(*xs32[r].add(b + j), summs[r]);
                    }
                }
            }
            let mut dd = [[0f32; 8]; R];
            for r in 0..R {
                _mm256_storeu_ps(dd[r].as_mut_ptr(), _mm256_mul_ps(dw, _mm256_loadu_ps(xd[r].add(b))));
            }
            for pi in 0..n.div_ceil(2) {
                let second = 2 * pi + 1 < n;
                let wv = unpack_pair::<KIND>(p.add(2 * pi * ts), p.add((2 * pi + 1) * ts), second);
                let blk = b + 2 * pi;
                for r in 0..R {
                    let mut dot = _mm512_dpbusd_epi32(
                        _mm512_setzero_si512(),
                        wv,
                        _mm512_loadu_si512(xq[r].add(blk * 32) as *const _),
                    );
                    if KIND != Q4_1 {
                        let s4 = _mm512_loadu_si512(x4[r].add(blk * 8) as *const _);
                        dot = _mm512_sub_epi32(dot, _mm512_sllv_epi32(s4, _mm512_set1_epi32(shift)));
                    }
                    let f = _mm512_cvtepi32_ps(dot);
                    let lo = _mm512_castps512_ps256(f);
                    acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dd[r][2 * pi]), lo, acc[r]);
                    if second {
                        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(f)));
                        acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dd[r][2 * pi + 1]), hi, acc[r]);
                    }
                }
            }
            b += 8;
        }
    }
    for r in 0..R {
        let mut a = [0f32; 8];
        // SAFETY: `a` holds 8 f32.
        unsafe { _mm256_storeu_ps(a.as_mut_ptr(), acc[r]) };
        out[r] = super::scalar::hsum8(&a) + summs[r];
    }
}

/// `2·NP` weight rows at once: in accumulator `h`, lanes 0..8 carry row `2h`'s 8-lane chain and
/// lanes 8..16 row `2h + 1`'s, so one 512-bit FMA advances both by a block (the order within
/// each chain is ggml's); the `NP` accumulators are independent chains.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn legacy2<const KIND: u8, const R: usize, const NP: usize>(
    w: &[u8],
    rb: usize,
    xs: &[ActRow<'_>],
    out: &mut [f32],
    stride: usize,
) {
    let ts = type_size(KIND);
    let nb = rb / ts;
    let shift = _mm512_set1_epi32(match KIND {
        Q4_0 => 3,
        Q5_0 => 4,
        Q8_0 => 7,
        _ => 0,
    });
    let idx: [__m512i; 8] = std::array::from_fn(|j| {
        let j = j as i32;
        _mm512_inserti64x4::<1>(_mm512_castsi256_si512(_mm256_set1_epi32(j)), _mm256_set1_epi32(8 + j))
    });
    let xq: [*const i8; R] = std::array::from_fn(|r| xs[r].qs.as_ptr());
    let xd: [*const f32; R] = std::array::from_fn(|r| xs[r].d.as_ptr());
    let x4: [*const i32; R] = std::array::from_fn(|r| xs[r].sum4.as_ptr());
    let xs32: [*const f32; R] = std::array::from_fn(|r| xs[r].s32.as_ptr());
    let mut acc = [[_mm512_setzero_ps(); NP]; R];
    let mut summs = [[0f32; 8]; R];
    // SAFETY: the `2·NP` rows of `rb` bytes lie inside `w`, blocks `b..b + n` inside each row;
    // activation rows are padded to whole groups of 8 blocks (checked by `Kernels::quant_dot`).
    unsafe {
        let p: [*const u8; 8] = std::array::from_fn(|i| w.as_ptr().add(i.min(2 * NP - 1) * rb));
        let mut b = 0;
        while b < nb {
            let n = (nb - b).min(8);
            let q: [*const u8; 8] = std::array::from_fn(|i| p[i].add(b * ts));
            // The rows are read side by side: prefetch each one's next group of blocks, which
            // the hardware prefetchers do not do well for interleaved streams.
            for &qi in q.iter().take(2 * NP) {
                for l in (0..8 * ts).step_by(64) {
                    _mm_prefetch::<_MM_HINT_T0>(qi.add(8 * ts + l) as *const i8);
                }
            }
            if KIND == Q4_1 {
                for i in 0..2 * NP {
                    let mut m = [0f32; 8];
                    _mm256_storeu_ps(m.as_mut_ptr(), gather_f16x8(q[i], ts, 2, n));
                    for r in 0..R {
                        for (jb, &mj) in m.iter().enumerate().take(n) {
                            summs[r][i] = mj.mul_add(*xs32[r].add(b + jb), summs[r][i]);
                        }
                    }
                }
            }
            let mut dd = [[_mm512_setzero_ps(); NP]; R];
            for h in 0..NP {
                let (dw0, dw1) = (gather_f16x8(q[2 * h], ts, 0, n), gather_f16x8(q[2 * h + 1], ts, 0, n));
                for r in 0..R {
                    let dx = _mm256_loadu_ps(xd[r].add(b));
                    let lo = _mm512_castps256_ps512(_mm256_mul_ps(dw0, dx));
                    dd[r][h] = _mm512_castpd_ps(_mm512_insertf64x4::<1>(
                        _mm512_castps_pd(lo),
                        _mm256_castps_pd(_mm256_mul_ps(dw1, dx)),
                    ));
                }
            }
            for (jb, &ix) in idx.iter().enumerate().take(n) {
                let blk = b + jb;
                let mut xv = [_mm512_setzero_si512(); R];
                let mut off = [_mm512_setzero_si512(); R];
                for r in 0..R {
                    xv[r] = _mm512_broadcast_i64x4(_mm256_loadu_si256(xq[r].add(32 * blk) as *const __m256i));
                    if KIND != Q4_1 {
                        let s4 = _mm512_broadcast_i64x4(_mm256_loadu_si256(x4[r].add(8 * blk) as *const __m256i));
                        off[r] = _mm512_sllv_epi32(s4, shift);
                    }
                }
                for h in 0..NP {
                    let wv = unpack_pair::<KIND>(q[2 * h].add(jb * ts), q[2 * h + 1].add(jb * ts), true);
                    for r in 0..R {
                        let mut dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv, xv[r]);
                        if KIND != Q4_1 {
                            dot = _mm512_sub_epi32(dot, off[r]);
                        }
                        acc[r][h] =
                            _mm512_fmadd_ps(_mm512_permutexvar_ps(ix, dd[r][h]), _mm512_cvtepi32_ps(dot), acc[r][h]);
                    }
                }
            }
            b += 8;
        }
    }
    for r in 0..R {
        for h in 0..NP {
            let mut a = [0f32; 16];
            // SAFETY: `a` holds 16 f32.
            unsafe { _mm512_storeu_ps(a.as_mut_ptr(), acc[r][h]) };
            for e in 0..2 {
                let lanes: &[f32; 8] = a[8 * e..8 * e + 8].try_into().expect("8 lanes");
                out[(2 * h + e) * stride + r] = super::scalar::hsum8(lanes) + summs[r][2 * h + e];
            }
        }
    }
}

/// Weight rows four (with several activation rows) or two at a time through [`legacy2`], an odd
/// last one through [`legacy`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn rows<const KIND: u8, const R: usize>(w: &[u8], rb: usize, xs: &[ActRow<'_>], out: &mut [f32], stride: usize) {
    let n = w.len() / rb;
    let mut j = 0;
    // SAFETY: as `legacy` / `legacy2`, for rows inside `w` and outputs inside `out`.
    unsafe {
        // Four rows (two chains) keep more work in flight when several activation rows share
        // the weights (prefill tiles, in cache); a single activation row streams weights from
        // memory, where two rows at a time read faster.
        while R > 1 && j + 4 <= n {
            legacy2::<KIND, R, 2>(&w[j * rb..(j + 4) * rb], rb, xs, &mut out[j * stride..], stride);
            j += 4;
        }
        while j + 2 <= n {
            legacy2::<KIND, R, 1>(&w[j * rb..(j + 2) * rb], rb, xs, &mut out[j * stride..], stride);
            j += 2;
        }
        if j < n {
            legacy::<KIND, R>(&w[j * rb..(j + 1) * rb], xs, &mut out[j * stride..j * stride + R]);
        }
    }
}

macro_rules! entry {
    ($name:ident, $kind:expr) => {
        /// Safety: as [`super::QuantDot`] (the CPU has AVX-512 F/BW/VL/VNNI, FMA, F16C).
        pub(super) unsafe fn $name(w: &[u8], rb: usize, xs: &[ActRow<'_>], out: &mut [f32], stride: usize) {
            // SAFETY: the caller (`Kernels`, built after detection) upholds the contract.
            unsafe {
                match xs.len() {
                    1 => rows::<{ $kind }, 1>(w, rb, xs, out, stride),
                    2 => rows::<{ $kind }, 2>(w, rb, xs, out, stride),
                    3 => rows::<{ $kind }, 3>(w, rb, xs, out, stride),
                    _ => rows::<{ $kind }, 4>(w, rb, xs, out, stride),
                }
            }
        }
    };
}

entry!(q4_0, Q4_0);
entry!(q4_1, Q4_1);
entry!(q5_0, Q5_0);
entry!(q8_0, Q8_0);
