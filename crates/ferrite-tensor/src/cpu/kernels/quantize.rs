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
