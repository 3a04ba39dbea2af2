//! Activation block quantization with AVX-512 (the scalar version is
//! [`crate::quant::act::quantize_block_scalar`]), as ggml's `quantize_row_q8_0`:
//! `q = round(x · 127/amax)` (to nearest, ties to even), the f32 scale `amax/127` and the two
//! 16-value sums.

use std::arch::x86_64::*;

/// Safety: the CPU has AVX-512 F/BW/VL (checked by [`super::Kernels::for_isa`]).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
pub(super) unsafe fn block_avx512(x: &[f32; 32], q: &mut [i8; 32]) -> (f32, i32, i32) {
    // SAFETY: the arrays have exactly the 32 values / bytes read and written.
    unsafe {
        let a = _mm512_loadu_ps(x.as_ptr());
        let b = _mm512_loadu_ps(x.as_ptr().add(16));
        let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
        let d = amax / 127.0;
        let id = _mm512_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
        let qa = _mm512_cvtps_epi32(_mm512_mul_ps(a, id));
        let qb = _mm512_cvtps_epi32(_mm512_mul_ps(b, id));
        _mm_storeu_si128(q.as_mut_ptr() as *mut __m128i, _mm512_cvtsepi32_epi8(qa));
        _mm_storeu_si128(q.as_mut_ptr().add(16) as *mut __m128i, _mm512_cvtsepi32_epi8(qb));
        (d, _mm512_reduce_add_epi32(qa), _mm512_reduce_add_epi32(qb))
    }
}

/// The same with AVX2 (ggml's AVX2 `quantize_row_q8_0`: `_mm256_round_ps` to nearest, ties to
/// even, then saturating packs).
///
/// Safety: the CPU has AVX2 and FMA (checked by [`super::Kernels::for_isa`]).
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn block_avx2(x: &[f32; 32], q: &mut [i8; 32]) -> (f32, i32, i32) {
    // SAFETY: the arrays have exactly the 32 values / bytes read and written.
    unsafe {
        let v: [__m256; 4] = std::array::from_fn(|i| _mm256_loadu_ps(x.as_ptr().add(8 * i)));
        let sign = _mm256_set1_ps(-0.0);
        let abs = |a: __m256| _mm256_andnot_ps(sign, a);
        let m = _mm256_max_ps(_mm256_max_ps(abs(v[0]), abs(v[1])), _mm256_max_ps(abs(v[2]), abs(v[3])));
        let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        let amax = _mm_cvtss_f32(_mm_max_ss(m2, _mm_movehdup_ps(m2)));
        let d = amax / 127.0;
        let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
        let r: [__m256i; 4] = std::array::from_fn(|i| {
            _mm256_cvtps_epi32(_mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
                v[i], id,
            )))
        });
        let hsum = |a: __m256i, b: __m256i| {
            let s = _mm256_add_epi32(a, b);
            let s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
            let s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
            _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32::<1>(s2)))
        };
        let (sa, sb) = (hsum(r[0], r[1]), hsum(r[2], r[3]));
        // Packs interleave the 128-bit lanes; the permute puts the 32 bytes back in order.
        let p16a = _mm256_packs_epi32(r[0], r[1]);
        let p16b = _mm256_packs_epi32(r[2], r[3]);
        let p8 = _mm256_packs_epi16(p16a, p16b);
        let ordered = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(q.as_mut_ptr() as *mut __m256i, ordered);
        (d, sa, sb)
    }
}
