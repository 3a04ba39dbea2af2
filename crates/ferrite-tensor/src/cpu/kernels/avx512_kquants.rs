//! AVX-512 dot products for the 256-weight K-quant super-blocks, rounded as ggml's kernels
//! (see [`super::scalar`]): Q4_K/Q5_K as the repacked `ggml_gemv_q4_K_8x8_q8_K` (exact integer
//! super-block sums, two f32 FMA chains), Q6_K as `ggml_vec_dot_q6_K_q8_K` (8 exact integer
//! lanes per super-block, one 8-lane FMA chain).
//!
//! Per 64 weights: unpack to unsigned bytes, `vpmaddubsw` against the activations (16-bit pair
//! sums, no saturation for 6-bit weights) and `vpmaddwd` with the 16-bit sub-block scales, into
//! 16 i32 lanes.

use std::arch::x86_64::*;

use crate::quant::act::ActRow;

/// The f16 at `p` as f32.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees 2 readable bytes.
    let h = unsafe { std::ptr::read_unaligned(p as *const u16) };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
}

/// 32 i16 lanes: the first 16 `a`, the last 16 `b`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn halves16(a: i16, b: i16) -> __m512i {
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(_mm256_set1_epi16(a)), _mm256_set1_epi16(b))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn k4<const FIVE: bool, const R: usize>(w: &[u8], xs: &[ActRow<'_>], out: &mut [f32]) {
    let ts = if FIVE { 176 } else { 144 };
    let qs_off = if FIVE { 48 } else { 16 };
    let nsb = w.len() / ts;
    let nib_shift = _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0);
    let mask4 = _mm512_set1_epi8(0xF);
    let bit5: [__m512i; 4] = std::array::from_fn(|i| {
        let lo = _mm256_set1_epi8(1 << (2 * i));
        let hi = _mm256_set1_epi8((1u8 << (2 * i + 1)) as i8);
        _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
    });
    let mut acc = [0f32; R];
    let mut acc_min = [0f32; R];
    // SAFETY: super-block `sb` lies inside `w`; activation rows cover `nsb * 256` values
    // (checked by `Kernels::quant_dot`).
    unsafe {
        for sb in 0..nsb {
            let p = w.as_ptr().add(sb * ts);
            let blk = std::slice::from_raw_parts(p, 16);
            let (sc, mn) = super::scalar::k4_scales_mins(blk);
            let (d, dmin) = (f16_at(p), f16_at(p.add(2)));
            let qh = if FIVE { _mm512_broadcast_i64x4(_mm256_loadu_si256(p.add(16) as *const __m256i)) } else { mask4 };
            let mut iacc = [_mm512_setzero_si512(); R];
            for i in 0..4 {
                let y = _mm256_loadu_si256(p.add(qs_off + 32 * i) as *const __m256i);
                let v = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(y), y);
                let mut wv = _mm512_and_si512(_mm512_srlv_epi64(v, nib_shift), mask4);
                if FIVE {
                    let k = _mm512_test_epi8_mask(qh, bit5[i]);
                    wv = _mm512_mask_add_epi8(wv, k, wv, _mm512_set1_epi8(16));
                }
                let scv = halves16(sc[2 * i] as i16, sc[2 * i + 1] as i16);
                for r in 0..R {
                    let x = _mm512_loadu_si512(xs[r].qs.as_ptr().add(256 * sb + 64 * i) as *const _);
                    let p32 = _mm512_madd_epi16(_mm512_maddubs_epi16(wv, x), scv);
                    iacc[r] = _mm512_add_epi32(iacc[r], p32);
                }
                if R == super::MAX_ROWS || i == 3 {
                    let js = if R == super::MAX_ROWS { 2 * i..2 * i + 2 } else { 0..8 };
                    for r in 0..R {
                        let isum = _mm512_reduce_add_epi32(iacc[r]);
                        iacc[r] = _mm512_setzero_si512();
                        let bs = &xs[r].bsums[16 * sb..16 * sb + 16];
                        let imin: i32 = js.clone().map(|j| mn[j] * (bs[2 * j] as i32 + bs[2 * j + 1] as i32)).sum();
                        let dx = xs[r].d[8 * sb];
                        acc[r] = (isum as f32).mul_add(d * dx, acc[r]);
                        acc_min[r] = (imin as f32).mul_add(dmin * dx, acc_min[r]);
                    }
                }
            }
        }
    }
    for r in 0..R {
        out[r] = acc[r] - acc_min[r];
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn k6<const R: usize>(w: &[u8], xs: &[ActRow<'_>], out: &mut [f32]) {
    let nsb = w.len() / 210;
    let mask4 = _mm512_set1_epi8(0xF);
    let mask_hi = _mm512_set1_epi8(0x30);
    let shl_even = _mm512_set_epi64(2, 2, 2, 2, 4, 4, 4, 4);
    let shr_odd = _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0);
    // i16 lane `k` of step `s` takes scale `4s + k/8`.
    let sidx: [__m512i; 4] = std::array::from_fn(|s| {
        let v: [i16; 32] = std::array::from_fn(|k| (4 * s + k / 8) as i16);
        // SAFETY: `v` holds 64 bytes.
        unsafe { _mm512_loadu_si512(v.as_ptr() as *const _) }
    });
    let mut acc = [_mm256_setzero_ps(); R];
    // SAFETY: as in `k4`.
    unsafe {
        for sb in 0..nsb {
            let p = w.as_ptr().add(sb * 210);
            let dw = f16_at(p.add(208));
            let sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(192) as *const __m128i));
            let sc512 = _mm512_castsi256_si512(sc16);
            let mut iacc = [_mm512_setzero_si512(); R];
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
                let (se, so) =
                    (_mm512_permutexvar_epi16(sidx[2 * n], sc512), _mm512_permutexvar_epi16(sidx[2 * n + 1], sc512));
                for r in 0..R {
                    let x = xs[r].qs.as_ptr().add(256 * sb + 128 * n);
                    let xe = _mm512_loadu_si512(x as *const _);
                    let xo = _mm512_loadu_si512(x.add(64) as *const _);
                    let pe = _mm512_madd_epi16(_mm512_maddubs_epi16(even, xe), se);
                    let po = _mm512_madd_epi16(_mm512_maddubs_epi16(odd, xo), so);
                    iacc[r] = _mm512_add_epi32(iacc[r], _mm512_add_epi32(pe, po));
                }
            }
            for r in 0..R {
                let lanes = _mm256_add_epi32(_mm512_castsi512_si256(iacc[r]), _mm512_extracti64x4_epi64::<1>(iacc[r]));
                let bs = _mm256_loadu_si256(xs[r].bsums.as_ptr().add(16 * sb) as *const __m256i);
                let sub = _mm256_slli_epi32::<5>(_mm256_madd_epi16(bs, sc16));
                let lanes = _mm256_sub_epi32(lanes, sub);
                let d = _mm256_set1_ps(xs[r].d[8 * sb] * dw);
                acc[r] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(lanes), acc[r]);
            }
        }
    }
    for r in 0..R {
        let mut a = [0f32; 8];
        // SAFETY: `a` holds 8 f32.
        unsafe { _mm256_storeu_ps(a.as_mut_ptr(), acc[r]) };
        out[r] = super::scalar::hsum8(&a);
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
