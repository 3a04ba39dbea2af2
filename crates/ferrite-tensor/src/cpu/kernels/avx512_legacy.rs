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
        let rd = |i: usize| if i < n { std::ptr::read_unaligned(p.add(i * ts + off) as *const i16) } else { 0 };
        _mm256_cvtph_ps(_mm_set_epi16(rd(7), rd(6), rd(5), rd(4), rd(3), rd(2), rd(1), rd(0)))
    }
}

/// The 64 weights of blocks `p` and `p + ts` as unsigned bytes in element order (the second
/// block only when `second`, zero otherwise).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn unpack_pair<const KIND: u8>(p: *const u8, second: bool) -> __m512i {
    let ts = type_size(KIND);
    // SAFETY: the caller guarantees block `p` (and `p + ts` when `second`) is readable.
    unsafe {
        if KIND == Q8_0 {
            let lo = _mm256_loadu_si256(p.add(2) as *const __m256i);
            let hi = if second { _mm256_loadu_si256(p.add(ts + 2) as *const __m256i) } else { _mm256_setzero_si256() };
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
            _mm512_mask_broadcast_i32x4(a, 0xFF00, _mm_loadu_si128(p.add(ts + qs) as *const __m128i))
        } else {
            _mm512_maskz_mov_epi64(0x0F, a)
        };
        let w = _mm512_and_si512(_mm512_srlv_epi64(v, _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0)), _mm512_set1_epi8(0xF));
        if KIND == Q5_0 {
            let h0 = std::ptr::read_unaligned(p.add(2) as *const u32) as u64;
            let h1 = if second { std::ptr::read_unaligned(p.add(ts + 2) as *const u32) as u64 } else { 0 };
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
    let mut acc = [_mm256_setzero_ps(); R];
    // SAFETY: blocks `b..b + n` lie inside `w`; the activation rows are padded to whole groups
    // of 8 blocks (checked by `Kernels::quant_dot`), so every group's activation reads fit.
    unsafe {
        let wp = w.as_ptr();
        let mut b = 0;
        while b < nb {
            let n = (nb - b).min(8);
            let p = wp.add(b * ts);
            let dw = gather_f16x8(p, ts, 0, n);
            let mut dd = [[0f32; 8]; R];
            for r in 0..R {
                _mm256_storeu_ps(dd[r].as_mut_ptr(), _mm256_mul_ps(dw, _mm256_loadu_ps(xd[r].add(b))));
            }
            for pi in 0..n.div_ceil(2) {
                let second = 2 * pi + 1 < n;
                let wv = unpack_pair::<KIND>(p.add(2 * pi * ts), second);
                let blk = b + 2 * pi;
                for r in 0..R {
                    let mut dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv, _mm512_loadu_si512(xq[r].add(blk * 32) as *const _));
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
        out[r] = super::scalar::hsum8(&a) + if KIND == Q4_1 { super::scalar::q4_1_mins(w, &xs[r]) } else { 0.0 };
    }
}

macro_rules! entry {
    ($name:ident, $kind:expr) => {
        /// Safety: as [`super::QuantDot`] (the CPU has AVX-512 F/BW/VL/VNNI, FMA, F16C).
        pub(super) unsafe fn $name(w: &[u8], rb: usize, xs: &[ActRow<'_>], out: &mut [f32], stride: usize) {
            // SAFETY: the caller (`Kernels`, built after detection) upholds the contract.
            unsafe { row_loop!(legacy, [{ $kind }], w, rb, xs, out, stride) }
        }
    };
}

entry!(q4_0, Q4_0);
entry!(q4_1, Q4_1);
entry!(q5_0, Q5_0);
entry!(q8_0, Q8_0);
