//! f32 / f16 / bf16 weights times f32 activations (AVX-512 and AVX2). Half-precision weights
//! are widened exactly on the fly (`vcvtph2ps`; bf16 by a 16-bit shift) and accumulated with
//! f32 FMA, so activations keep full precision. Two accumulators per activation row.

use std::arch::x86_64::*;

const F32: u8 = 0;
const F16: u8 = 1;
const BF16: u8 = 2;

const fn elem_size(e: u8) -> usize {
    if e == F32 {
        4
    } else {
        2
    }
}

/// 16 weights from `p` (element `i`) as f32, the lanes past `n` zero.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn load16<const E: u8>(p: *const u8, i: usize, n: usize) -> __m512 {
    let m: u16 = if n >= 16 { 0xFFFF } else { (1u16 << n) - 1 };
    // SAFETY: the caller guarantees elements `i..i + n` are readable; masked lanes are not read.
    unsafe {
        let q = p.add(i * elem_size(E));
        match E {
            F32 => _mm512_maskz_loadu_ps(m, q as *const f32),
            F16 => _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, q as *const i16)),
            _ => _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(
                m,
                q as *const i16,
            )))),
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn dot512<const E: u8, const R: usize>(w: &[u8], xs: &[&[f32]], out: &mut [f32]) {
    let k = w.len() / elem_size(E);
    let xp: [*const f32; R] = std::array::from_fn(|r| xs[r].as_ptr());
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    // SAFETY: every row has `k` elements (checked by `Kernels::float_dot`); tails are masked.
    unsafe {
        let mut i = 0;
        while i + 32 <= k {
            let w0 = load16::<E>(w.as_ptr(), i, 16);
            let w1 = load16::<E>(w.as_ptr(), i + 16, 16);
            for r in 0..R {
                acc[r][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xp[r].add(i)), acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xp[r].add(i + 16)), acc[r][1]);
            }
            i += 32;
        }
        while i < k {
            let n = (k - i).min(16);
            let m: u16 = if n >= 16 { 0xFFFF } else { (1u16 << n) - 1 };
            let wv = load16::<E>(w.as_ptr(), i, n);
            for r in 0..R {
                acc[r][0] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, xp[r].add(i)), acc[r][0]);
            }
            i += n;
        }
    }
    for r in 0..R {
        out[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]));
    }
}

/// 8 weights at element `i` as f32 (all 8 must be readable).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load8<const E: u8>(p: *const u8, i: usize) -> __m256 {
    // SAFETY: the caller guarantees elements `i..i + 8` are readable.
    unsafe {
        let q = p.add(i * elem_size(E));
        match E {
            F32 => _mm256_loadu_ps(q as *const f32),
            F16 => _mm256_cvtph_ps(_mm_loadu_si128(q as *const __m128i)),
            _ => _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(
                q as *const __m128i,
            )))),
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot256<const E: u8, const R: usize>(w: &[u8], xs: &[&[f32]], out: &mut [f32]) {
    let k = w.len() / elem_size(E);
    let xp: [*const f32; R] = std::array::from_fn(|r| xs[r].as_ptr());
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    let mut i = 0;
    // SAFETY: every row has `k` elements (checked by `Kernels::float_dot`).
    unsafe {
        while i + 16 <= k {
            let w0 = load8::<E>(w.as_ptr(), i);
            let w1 = load8::<E>(w.as_ptr(), i + 8);
            for r in 0..R {
                acc[r][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xp[r].add(i)), acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xp[r].add(i + 8)), acc[r][1]);
            }
            i += 16;
        }
    }
    let mut wt = [0f32; 16];
    for (o, b) in wt.iter_mut().zip(w[i * elem_size(E)..].chunks_exact(elem_size(E))) {
        *o = match E {
            F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
            _ => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        };
    }
    for r in 0..R {
        let tail: f32 = xs[r][i..].iter().zip(&wt).map(|(a, b)| a * b).sum();
        out[r] = super::avx2_legacy::hsum(_mm256_add_ps(acc[r][0], acc[r][1])) + tail;
    }
}

macro_rules! entries {
    ($($name:ident => $body:ident, $e:expr;)*) => {$(
        /// Safety: as [`super::FloatDot`] (the CPU has the features of this level).
        pub(super) unsafe fn $name(w: &[u8], rb: usize, xs: &[&[f32]], out: &mut [f32], stride: usize) {
            // SAFETY: the caller (`Kernels`, built after detection) upholds the contract.
            unsafe { row_loop!($body, [{ $e }], w, rb, xs, out, stride) }
        }
    )*};
}

entries! {
    f32_avx512 => dot512, F32;
    f16_avx512 => dot512, F16;
    bf16_avx512 => dot512, BF16;
    f32_avx2 => dot256, F32;
    f16_avx2 => dot256, F16;
    bf16_avx2 => dot256, BF16;
}
