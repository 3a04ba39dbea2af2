//! AVX-512 VNNI dot products for the 256-weight K-quant super-blocks: Q4_K, Q5_K, Q6_K.
//!
//! Per super-block: the packed 6-bit scales/mins (Q4_K/Q5_K) or the 16 i8 scales (Q6_K) are
//! unpacked and converted as one vector, multiplied by `d` and by the activation scales, and
//! the mins (or Q6_K's -32 offset) are applied with one FMA against the activation block sums.
//! Then 4 steps of 64 weights: unpack to unsigned bytes, one 512-bit `vpdpbusd`, convert and
//! accumulate with per-lane scales, as in [`super::avx512_legacy`].

use std::arch::x86_64::*;

use super::avx512_legacy::{pair_index, step};
use crate::quant::act::ActRow;

const K1: u32 = 0x3f3f_3f3f;
const K2: u32 = 0x0f0f_0f0f;
const K3: u32 = 0x0303_0303;

/// The 8 scales (bytes 0..8) and 8 mins (bytes 8..16) of a Q4_K/Q5_K block's 12 packed bytes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn k4_scales_mins(p: *const u8) -> __m128i {
    // SAFETY: the caller guarantees the 12 bytes at `p` are readable.
    let [u0, u1, u2] = unsafe {
        let rd = |i: usize| std::ptr::read_unaligned(p.add(4 * i) as *const u32);
        [rd(0), rd(1), rd(2)]
    };
    let m_hi = ((u2 >> 4) & K2) | (((u1 >> 6) & K3) << 4);
    let m_lo = u1 & K1;
    let s_hi = (u2 & K2) | (((u0 >> 6) & K3) << 4);
    let s_lo = u0 & K1;
    _mm_set_epi32(m_hi as i32, m_lo as i32, s_hi as i32, s_lo as i32)
}

/// The f16 at `p` as f32.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees 2 readable bytes.
    let h = unsafe { std::ptr::read_unaligned(p as *const u16) };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn k4<const FIVE: bool, const R: usize>(w: &[u8], xs: &[ActRow<'_>], out: &mut [f32]) {
    let ts = if FIVE { 176 } else { 144 };
    let qs_off = if FIVE { 48 } else { 16 };
    let nsb = w.len() / ts;
    let xq: [*const i8; R] = std::array::from_fn(|r| xs[r].qs.as_ptr());
    let xd: [*const f32; R] = std::array::from_fn(|r| xs[r].d.as_ptr());
    let xs32: [*const f32; R] = std::array::from_fn(|r| xs[r].s32.as_ptr());
    let idx = [pair_index(0, 1), pair_index(2, 3), pair_index(4, 5), pair_index(6, 7)];
    let nib_shift = _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0);
    let mask4 = _mm512_set1_epi8(0xF);
    let bit5: [__m512i; 4] = std::array::from_fn(|i| {
        let lo = _mm256_set1_epi8(1 << (2 * i));
        let hi = _mm256_set1_epi8((1u8 << (2 * i + 1)) as i8);
        _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
    });
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    let mut off = [_mm256_setzero_ps(); R];
    // SAFETY: super-block `sb` lies inside `w`; activation rows cover `nsb * 256` values
    // (checked by `Kernels::quant_dot`).
    unsafe {
        for sb in 0..nsb {
            let p = w.as_ptr().add(sb * ts);
            let d = _mm256_set1_ps(f16_at(p));
            let dmin = _mm256_set1_ps(f16_at(p.add(2)));
            let sm = k4_scales_mins(p.add(4));
            let sc8 = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(sm)));
            let m8 = _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128::<8>(sm))));
            let mut sc = [_mm512_setzero_ps(); R];
            for r in 0..R {
                sc[r] = _mm512_zextps256_ps512(_mm256_mul_ps(sc8, _mm256_loadu_ps(xd[r].add(8 * sb))));
                off[r] = _mm256_fnmadd_ps(m8, _mm256_loadu_ps(xs32[r].add(8 * sb)), off[r]);
            }
            let qh = if FIVE { _mm512_broadcast_i64x4(_mm256_loadu_si256(p.add(16) as *const __m256i)) } else { mask4 };
            for (i, &ix) in idx.iter().enumerate() {
                let y = _mm256_loadu_si256(p.add(qs_off + 32 * i) as *const __m256i);
                let v = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(y), y);
                let mut wv = _mm512_and_si512(_mm512_srlv_epi64(v, nib_shift), mask4);
                if FIVE {
                    let k = _mm512_test_epi8_mask(qh, bit5[i]);
                    wv = _mm512_mask_add_epi8(wv, k, wv, _mm512_set1_epi8(16));
                }
                for r in 0..R {
                    acc[r][i & 1] = step(acc[r][i & 1], wv, xq[r].add(256 * sb + 64 * i), sc[r], ix);
                }
            }
        }
    }
    for r in 0..R {
        out[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]))
            + _mm512_reduce_add_ps(_mm512_zextps256_ps512(off[r]));
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn k6<const R: usize>(w: &[u8], xs: &[ActRow<'_>], out: &mut [f32]) {
    let nsb = w.len() / 210;
    let xq: [*const i8; R] = std::array::from_fn(|r| xs[r].qs.as_ptr());
    let xd: [*const f32; R] = std::array::from_fn(|r| xs[r].d.as_ptr());
    let xs16: [*const f32; R] = std::array::from_fn(|r| xs[r].s16.as_ptr());
    // Lane l of step t uses the scale of 16-weight sub-block 4t + l/4.
    let idx: [__m512i; 4] = std::array::from_fn(|t| {
        let t = 4 * t as i32;
        _mm512_set_epi32(t + 3, t + 3, t + 3, t + 3, t + 2, t + 2, t + 2, t + 2, t + 1, t + 1, t + 1, t + 1, t, t, t, t)
    });
    let dup = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    let mask4 = _mm512_set1_epi8(0xF);
    let mask_hi = _mm512_set1_epi8(0x30);
    let shl_even = _mm512_set_epi64(2, 2, 2, 2, 4, 4, 4, 4);
    let shr_odd = _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0);
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    let mut off = [_mm512_setzero_ps(); R];
    // SAFETY: as in `k4`.
    unsafe {
        for sb in 0..nsb {
            let p = w.as_ptr().add(sb * 210);
            let d = _mm512_set1_ps(f16_at(p.add(208)));
            let sc16 = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(192) as *const __m128i))));
            let sc16m = _mm512_mul_ps(sc16, _mm512_set1_ps(-32.0));
            let mut sc = [_mm512_setzero_ps(); R];
            for r in 0..R {
                let dx = _mm512_permutexvar_ps(dup, _mm512_castps256_ps512(_mm256_loadu_ps(xd[r].add(8 * sb))));
                sc[r] = _mm512_mul_ps(sc16, dx);
                off[r] = _mm512_fmadd_ps(sc16m, _mm512_loadu_ps(xs16[r].add(16 * sb)), off[r]);
            }
            for n in 0..2 {
                let ql = _mm512_loadu_si512(p.add(64 * n) as *const _);
                let qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(p.add(128 + 32 * n) as *const __m256i));
                let even = _mm512_or_si512(
                    _mm512_and_si512(ql, mask4),
                    _mm512_and_si512(_mm512_sllv_epi64(qh, shl_even), mask_hi),
                );
                let odd = _mm512_or_si512(
                    _mm512_and_si512(_mm512_srli_epi16::<4>(ql), mask4),
                    _mm512_and_si512(_mm512_srlv_epi64(qh, shr_odd), mask_hi),
                );
                for r in 0..R {
                    let x = xq[r].add(256 * sb + 128 * n);
                    acc[r][0] = step(acc[r][0], even, x, sc[r], idx[2 * n]);
                    acc[r][1] = step(acc[r][1], odd, x.add(64), sc[r], idx[2 * n + 1]);
                }
            }
        }
    }
    for r in 0..R {
        out[r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]), off[r]));
    }
}

macro_rules! entry {
    ($name:ident, $body:ident $(, $arg:expr)?) => {
        /// Safety: as [`super::QuantDot`] (the CPU has AVX-512 F/BW/VL/VNNI, FMA, F16C).
        pub(super) unsafe fn $name(w: &[u8], rb: usize, xs: &[ActRow<'_>], out: &mut [f32], stride: usize) {
            // SAFETY: the caller (`Kernels`, built after detection) upholds the contract.
            unsafe { row_loop!($body, [$($arg)?], w, rb, xs, out, stride) }
        }
    };
}

entry!(q4_k, k4, false);
entry!(q5_k, k4, true);
entry!(q6_k, k6);
