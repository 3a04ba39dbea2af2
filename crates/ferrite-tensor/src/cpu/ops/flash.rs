//! The f16 vector primitives of ggml's CPU flash attention, rounded exactly as ggml rounds them
//! on an AVX-512 CPU (`ggml_compute_forward_flash_attn_ext_f16_one_chunk`, the path
//! `llama-simple` takes with an f16 KV cache):
//!
//! * [`dot`]: `ggml_vec_dot_f16` — 4 accumulators of 16 f32 lanes, one FMA per 64 values, summed
//!   `(a0 + a2) + (a1 + a3)` and reduced like GCC's `_mm512_reduce_add_ps`; a tail that is not a
//!   multiple of 64 is added in f64, as ggml does.
//! * [`mad`]: `ggml_vec_mad_f16` — `y = f16(fma(x, v, y))` per element.
//! * [`scale`]: `ggml_vec_scale_f16` — `y = f16(y · v)` per element.
//!
//! Each has an AVX-512, an AVX2 (two 8-lane halves per 16-lane accumulator) and a portable
//! version; all three give identical bits (FMA is `f32::mul_add`, conversions round to nearest
//! even as `vcvtps2ph` does).

use half::f16;

use super::simd::{level, Level};

/// GCC's `_mm512_reduce_add_ps` order: 256-bit halves, then 128-bit halves, then
/// `(l0 + l2) + (l1 + l3)`.
fn reduce16(a: &[f32; 16]) -> f32 {
    let r8: [f32; 8] = std::array::from_fn(|i| a[i + 8] + a[i]);
    let r4: [f32; 4] = std::array::from_fn(|i| r8[i + 4] + r8[i]);
    (r4[0] + r4[2]) + (r4[1] + r4[3])
}

fn dot_scalar(x: &[f16], y: &[f16]) -> f32 {
    let n = x.len().min(y.len());
    let np = n & !63;
    let mut s = [[0f32; 16]; 4];
    for i in (0..np).step_by(64) {
        for (j, sj) in s.iter_mut().enumerate() {
            for (l, v) in sj.iter_mut().enumerate() {
                let e = i + 16 * j + l;
                *v = x[e].to_f32().mul_add(y[e].to_f32(), *v);
            }
        }
    }
    let a: [f32; 16] = std::array::from_fn(|l| (s[0][l] + s[2][l]) + (s[1][l] + s[3][l]));
    tail(reduce16(&a), x, y, np, n)
}

/// ggml adds the values past the last 64 one by one in f64 (`ggml_float`).
fn tail(head: f32, x: &[f16], y: &[f16], np: usize, n: usize) -> f32 {
    let mut s = head as f64;
    for i in np..n {
        s += (x[i].to_f32() * y[i].to_f32()) as f64;
    }
    s as f32
}

/// `ggml_vec_dot_f16(x, y)` (see the module docs).
pub(crate) fn dot(x: &[f16], y: &[f16]) -> f32 {
    match level() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level()` detected AVX-512F (F16 conversions and FMA are part of it).
        Level::Avx512 => unsafe { x86::dot_avx512(x, y) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level()` detected AVX2, FMA and F16C.
        Level::Avx2 => unsafe { x86::dot_avx2(x, y) },
        _ => dot_scalar(x, y),
    }
}

/// `out[i] = ggml_vec_dot_f16(keys[i], q)` ([`dot`]'s bits) for up to 8 keys, with `qf` the
/// query's f16 values widened to f32 (hoisted out of the per-key loop).
pub(crate) fn dots(keys: &[&[f16]], q16: &[f16], qf: &[f32], out: &mut [f32]) {
    match level() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level()` detected AVX2, FMA and F16C (the AVX-512 level too); the 8-lane
        // halves give the AVX-512 order's bits.
        Level::Avx512 | Level::Avx2 if keys.len() <= 8 => unsafe { x86::dots_avx2(keys, q16, qf, out) },
        _ => {
            for (o, k) in out.iter_mut().zip(keys) {
                *o = dot(k, q16);
            }
        }
    }
}

/// `ggml_vec_mad_f16`: `y[i] = f16(fma(x[i], v, y[i]))`.
pub(crate) fn mad(y: &mut [f16], x: &[f16], v: f32) {
    match level() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level()` detected AVX-512F.
        Level::Avx512 => unsafe { x86::mad_avx512(y, x, v) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level()` detected AVX2, FMA and F16C.
        Level::Avx2 => unsafe { x86::mad_avx2(y, x, v) },
        _ => {
            for (o, &xv) in y.iter_mut().zip(x) {
                *o = f16::from_f32(xv.to_f32().mul_add(v, o.to_f32()));
            }
        }
    }
}

/// One head's online-softmax steps over a run of keys: for each `i`, when `rescale[i]`,
/// [`scale`]`(acc, ms[i])`, then [`mad`]`(acc, vals[i], vs[i])` — the same bits as those calls
/// in turn, with the running output kept in registers across the keys.
pub(crate) fn mad_run(acc: &mut [f16], vals: &[&[f16]], ms: &[f32], vs: &[f32], rescale: &[bool]) {
    match level() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level()` detected AVX2, FMA and F16C (AVX-512F implies them).
        Level::Avx512 | Level::Avx2 if acc.len().is_multiple_of(8) => unsafe {
            x86::mad_run_avx2(acc, vals, ms, vs, rescale)
        },
        _ => {
            for (i, x) in vals.iter().enumerate() {
                if rescale[i] {
                    scale(acc, ms[i]);
                }
                mad(acc, x, vs[i]);
            }
        }
    }
}

/// [`dots`] for the `out.len()` query heads that share the keys (`q16`, `qf`: `[heads, d]`):
/// `out[h][i] = ggml_vec_dot_f16(keys[i], q_h)`, each key widened once for all heads.
pub(crate) fn dots_heads(keys: &[&[f16]], q16: &[f16], qf: &[f32], d: usize, out: &mut [[f32; 8]]) {
    match level() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level()` detected AVX-512F, AVX2, FMA and F16C.
        Level::Avx512 if keys.len() <= 8 && d.is_multiple_of(64) && qf.len() >= out.len() * d => unsafe {
            x86::dots_heads_avx512(keys, qf, d, out)
        },
        _ => {
            for (h, o) in out.iter_mut().enumerate() {
                let hd = h * d..(h + 1) * d;
                dots(keys, &q16[hd.clone()], &qf[hd], &mut o[..keys.len()]);
            }
        }
    }
}

/// [`mad_run`] for the heads that share the value rows (`acc`: `[heads, d]`, head `h` with
/// `ms[h]`, `vs[h]`, `rescale[h]`): each head's bits, with the value rows widened once for all
/// heads and the heads' chains interleaved.
pub(crate) fn mad_run_heads(
    acc: &mut [f16],
    d: usize,
    vals: &[&[f16]],
    ms: &[[f32; 8]],
    vs: &[[f32; 8]],
    rescale: &[[bool; 8]],
) {
    match level() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level()` detected AVX-512F, AVX2, FMA and F16C.
        Level::Avx512 if d > 0 && d.is_multiple_of(16) && vals.len() <= 8 && acc.len() == ms.len() * d => unsafe {
            x86::mad_run_heads_avx512(acc, d, vals, ms, vs, rescale)
        },
        _ => {
            for (h, a) in acc.chunks_exact_mut(d.max(1)).enumerate().take(ms.len()) {
                mad_run(a, vals, &ms[h], &vs[h], &rescale[h]);
            }
        }
    }
}

/// `ggml_vec_scale_f16`: `y[i] = f16(y[i] · v)`.
pub(crate) fn scale(y: &mut [f16], v: f32) {
    match level() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level()` detected AVX2 and F16C (AVX-512F implies both).
        Level::Avx512 | Level::Avx2 => unsafe { x86::scale_avx2(y, v) },
        _ => scale_scalar(y, v),
    }
}

fn scale_scalar(y: &mut [f16], v: f32) {
    for o in y.iter_mut() {
        *o = f16::from_f32(o.to_f32() * v);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use half::f16;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    fn reduce512(v: __m512) -> f32 {
        let mut a = [0f32; 16];
        // SAFETY: `a` holds 16 f32.
        unsafe { _mm512_storeu_ps(a.as_mut_ptr(), v) };
        super::reduce16(&a)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dot_avx512(x: &[f16], y: &[f16]) -> f32 {
        let n = x.len().min(y.len());
        let np = n & !63;
        let mut s = [_mm512_setzero_ps(); 4];
        let (xp, yp) = (x.as_ptr() as *const __m256i, y.as_ptr() as *const __m256i);
        // SAFETY: every load reads 16 values inside `0..np` of both slices.
        unsafe {
            for i in (0..np / 16).step_by(4) {
                for (j, sj) in s.iter_mut().enumerate() {
                    let a = _mm512_cvtph_ps(_mm256_loadu_si256(xp.add(i + j)));
                    let b = _mm512_cvtph_ps(_mm256_loadu_si256(yp.add(i + j)));
                    *sj = _mm512_fmadd_ps(a, b, *sj);
                }
            }
        }
        let a = _mm512_add_ps(_mm512_add_ps(s[0], s[2]), _mm512_add_ps(s[1], s[3]));
        super::tail(reduce512(a), x, y, np, n)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_avx2(x: &[f16], y: &[f16]) -> f32 {
        let n = x.len().min(y.len());
        let np = n & !63;
        // Accumulator `j` is lanes 0..8 in `s[j][0]` and 8..16 in `s[j][1]`.
        let mut s = [[_mm256_setzero_ps(); 2]; 4];
        let (xp, yp) = (x.as_ptr() as *const __m128i, y.as_ptr() as *const __m128i);
        // SAFETY: every load reads 8 values inside `0..np` of both slices.
        unsafe {
            for i in (0..np / 8).step_by(8) {
                for (j, sj) in s.iter_mut().enumerate() {
                    for (h, v) in sj.iter_mut().enumerate() {
                        let a = _mm256_cvtph_ps(_mm_loadu_si128(xp.add(i + 2 * j + h)));
                        let b = _mm256_cvtph_ps(_mm_loadu_si128(yp.add(i + 2 * j + h)));
                        *v = _mm256_fmadd_ps(a, b, *v);
                    }
                }
            }
        }
        let mut a = [0f32; 16];
        for (h, half) in a.chunks_exact_mut(8).enumerate() {
            let v = _mm256_add_ps(_mm256_add_ps(s[0][h], s[2][h]), _mm256_add_ps(s[1][h], s[3][h]));
            // SAFETY: `half` holds 8 f32.
            unsafe { _mm256_storeu_ps(half.as_mut_ptr(), v) };
        }
        super::tail(super::reduce16(&a), x, y, np, n)
    }

    /// [`dot_avx2`] for up to 8 keys against one query: the same accumulators per key, the 8
    /// final reductions done together ([`crate::cpu::kernels::hsum8x8`], the same order).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dots_avx2(keys: &[&[f16]], q16: &[f16], qf: &[f32], out: &mut [f32]) {
        let n = q16.len().min(qf.len());
        let np = n & !63;
        let mut r8 = [_mm256_setzero_ps(); 8];
        for (ki, k) in keys.iter().enumerate() {
            assert!(k.len() >= n, "key shorter than the query");
            let mut s = [[_mm256_setzero_ps(); 2]; 4];
            let kp = k.as_ptr() as *const __m128i;
            // SAFETY: every load reads 8 values inside `0..np` of the key and of `qf`.
            unsafe {
                for i in (0..np / 8).step_by(8) {
                    for (j, sj) in s.iter_mut().enumerate() {
                        for (h, v) in sj.iter_mut().enumerate() {
                            let a = _mm256_cvtph_ps(_mm_loadu_si128(kp.add(i + 2 * j + h)));
                            let b = _mm256_loadu_ps(qf.as_ptr().add(8 * (i + 2 * j + h)));
                            *v = _mm256_fmadd_ps(a, b, *v);
                        }
                    }
                }
            }
            let half: [__m256; 2] = std::array::from_fn(|h| {
                _mm256_add_ps(_mm256_add_ps(s[0][h], s[2][h]), _mm256_add_ps(s[1][h], s[3][h]))
            });
            // `reduce16`'s first step, `a[i + 8] + a[i]`.
            r8[ki] = _mm256_add_ps(half[1], half[0]);
        }
        let mut sums = [0f32; 8];
        // SAFETY: `sums` holds 8 f32.
        unsafe { _mm256_storeu_ps(sums.as_mut_ptr(), crate::cpu::kernels::hsum8x8(r8)) };
        for ((o, k), &h) in out.iter_mut().zip(keys).zip(&sums) {
            *o = super::tail(h, k, q16, np, n);
        }
    }

    /// [`super::mad_run`] with 64 values of the output at a time held in registers (as f32
    /// values rounded to f16 after every step, which is what storing them as f16 does).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn mad_run_avx2(acc: &mut [f16], vals: &[&[f16]], ms: &[f32], vs: &[f32], rescale: &[bool]) {
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        fn r16(x: __m256) -> __m256 {
            _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x))
        }
        let n = acc.len();
        assert!(vals.iter().all(|v| v.len() >= n) && ms.len() >= vals.len() && vs.len() >= vals.len());
        assert!(rescale.len() >= vals.len() && n.is_multiple_of(8));
        let mut c0 = 0;
        while c0 < n {
            let w = ((n - c0) / 8).min(8);
            let ap = acc.as_mut_ptr() as *mut __m128i;
            let mut a = [_mm256_setzero_ps(); 8];
            // SAFETY: vectors `c0/8 .. c0/8 + w` lie inside `acc` and every value row.
            unsafe {
                for (j, aj) in a.iter_mut().enumerate().take(w) {
                    *aj = _mm256_cvtph_ps(_mm_loadu_si128(ap.add(c0 / 8 + j)));
                }
                for (i, x) in vals.iter().enumerate() {
                    let xp = x.as_ptr() as *const __m128i;
                    let (mv, vv) = (_mm256_set1_ps(ms[i]), _mm256_set1_ps(vs[i]));
                    for (j, aj) in a.iter_mut().enumerate().take(w) {
                        if rescale[i] {
                            *aj = r16(_mm256_mul_ps(*aj, mv));
                        }
                        let xv = _mm256_cvtph_ps(_mm_loadu_si128(xp.add(c0 / 8 + j)));
                        *aj = r16(_mm256_fmadd_ps(xv, vv, *aj));
                    }
                }
                for (j, aj) in a.iter().enumerate().take(w) {
                    _mm_storeu_si128(ap.add(c0 / 8 + j), _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(*aj));
                }
            }
            c0 += 8 * w;
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn mad_avx2(y: &mut [f16], x: &[f16], v: f32) {
        let n = y.len().min(x.len());
        let vv = _mm256_set1_ps(v);
        let mut i = 0;
        // SAFETY: every access covers 8 values inside `0..n` of both slices.
        unsafe {
            while i + 8 <= n {
                let yp = y.as_mut_ptr().add(i) as *mut __m128i;
                let a = _mm256_cvtph_ps(_mm_loadu_si128(x.as_ptr().add(i) as *const __m128i));
                let r = _mm256_fmadd_ps(a, vv, _mm256_cvtph_ps(_mm_loadu_si128(yp)));
                _mm_storeu_si128(yp, _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(r));
                i += 8;
            }
        }
        for (o, &xv) in y[i..n].iter_mut().zip(&x[i..n]) {
            *o = f16::from_f32(xv.to_f32().mul_add(v, o.to_f32()));
        }
    }

    /// `scale` 8 values at a time (`vcvtph2ps`, `vmulps`, `vcvtps2ph` to nearest even: the
    /// scalar rounding).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn scale_avx2(y: &mut [f16], v: f32) {
        let n = y.len();
        let vv = _mm256_set1_ps(v);
        let mut i = 0;
        // SAFETY: every access covers 8 values inside `0..n`.
        unsafe {
            while i + 8 <= n {
                let yp = y.as_mut_ptr().add(i) as *mut __m128i;
                let r = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(yp)), vv);
                _mm_storeu_si128(yp, _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(r));
                i += 8;
            }
        }
        super::scale_scalar(&mut y[i..n], v);
    }

    /// [`dot_avx512`] for up to 8 keys and several heads (`d` a multiple of 64, `qf`: the
    /// queries `[heads, d]` widened): each key chunk is widened once and meets the heads, 4 at a
    /// time; per head and key the same accumulators, and the 8 keys' final reductions done
    /// together ([`super::reduce16`]'s first step, then [`crate::cpu::kernels::hsum8x8`]).
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    pub(super) unsafe fn dots_heads_avx512(keys: &[&[f16]], qf: &[f32], d: usize, out: &mut [[f32; 8]]) {
        const HB: usize = 4;
        assert!(keys.len() <= 8 && d.is_multiple_of(64) && qf.len() >= out.len() * d);
        assert!(keys.iter().all(|k| k.len() >= d), "key shorter than the query");
        let heads = out.len();
        let mut h0 = 0;
        while h0 < heads {
            let hb = (heads - h0).min(HB);
            let mut r8 = [[_mm256_setzero_ps(); 8]; HB];
            for (ki, k) in keys.iter().enumerate() {
                let kp = k.as_ptr() as *const __m256i;
                let mut s = [[_mm512_setzero_ps(); 4]; HB];
                // SAFETY: chunks `c < d/16` of the key and of each head's query lie inside them.
                unsafe {
                    for c in 0..d / 16 {
                        let kv = _mm512_cvtph_ps(_mm256_loadu_si256(kp.add(c)));
                        for (h, sh) in s.iter_mut().enumerate().take(hb) {
                            let q = _mm512_loadu_ps(qf.as_ptr().add((h0 + h) * d + 16 * c));
                            sh[c % 4] = _mm512_fmadd_ps(kv, q, sh[c % 4]);
                        }
                    }
                }
                for (h, sh) in s.iter().enumerate().take(hb) {
                    let a = _mm512_add_ps(_mm512_add_ps(sh[0], sh[2]), _mm512_add_ps(sh[1], sh[3]));
                    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(a)));
                    r8[h][ki] = _mm256_add_ps(hi, _mm512_castps512_ps256(a));
                }
            }
            for (h, r) in r8.iter().enumerate().take(hb) {
                let mut sums = [0f32; 8];
                // SAFETY: `sums` holds 8 f32.
                unsafe { _mm256_storeu_ps(sums.as_mut_ptr(), crate::cpu::kernels::hsum8x8(*r)) };
                // No tail: `d` is a multiple of 64.
                out[h0 + h][..keys.len()].copy_from_slice(&sums[..keys.len()]);
            }
            h0 += hb;
        }
    }

    /// [`super::mad_run`] for several heads (`acc`: `[heads, d]`, `d` a positive multiple of 16),
    /// 8 heads at a time: up to 12 (chunk, head) chains in registers at once (f32 values rounded
    /// to f16 after every step, which is what storing them as f16 does), each 16-value chunk of a
    /// value row widened once for the heads of the batch.
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    pub(super) unsafe fn mad_run_heads_avx512(
        acc: &mut [f16],
        d: usize,
        vals: &[&[f16]],
        ms: &[[f32; 8]],
        vs: &[[f32; 8]],
        rescale: &[[bool; 8]],
    ) {
        assert!(d > 0 && acc.len() == ms.len() * d && vs.len() >= ms.len() && rescale.len() >= ms.len());
        for (b, acc) in acc.chunks_mut(8 * d).enumerate() {
            let hs = 8 * b..8 * b + acc.len() / d;
            let (ms, vs, rescale) = (&ms[hs.clone()], &vs[hs.clone()], &rescale[hs]);
            macro_rules! go {
                ($h:literal) => {
                    // SAFETY: forwarded from the caller.
                    unsafe { mad_heads::<$h>(acc, d, vals, ms, vs, rescale) }
                };
            }
            match ms.len() {
                1 => go!(1),
                2 => go!(2),
                3 => go!(3),
                4 => go!(4),
                5 => go!(5),
                6 => go!(6),
                7 => go!(7),
                _ => go!(8),
            }
        }
    }

    /// [`mad_run_heads_avx512`] for `H` heads (the register indices are constants once the
    /// loops over chunks and heads are unrolled).
    // Indexed loops over constant ranges keep the chains in registers once unrolled.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    unsafe fn mad_heads<const H: usize>(
        acc: &mut [f16],
        d: usize,
        vals: &[&[f16]],
        ms: &[[f32; 8]],
        vs: &[[f32; 8]],
        rescale: &[[bool; 8]],
    ) {
        const UNITS: usize = 12;
        #[inline]
        #[target_feature(enable = "avx512f")]
        fn r16(x: __m512) -> __m512 {
            _mm512_cvtph_ps(_mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x))
        }
        assert!(H <= 8 && ms.len() == H && d.is_multiple_of(16) && vals.len() <= 8 && acc.len() == H * d);
        assert!(vs.len() >= H && rescale.len() >= H && vals.iter().all(|v| v.len() >= d));
        let chunks = d / 16;
        // Chunks per pass: `nch · H <= UNITS` chains.
        let nch = (UNITS / H).max(1);
        let ap = acc.as_mut_ptr() as *mut __m256i;
        let mut c0 = 0;
        while c0 < chunks {
            let cn = nch.min(chunks - c0);
            let mut a = [_mm512_setzero_ps(); UNITS];
            // SAFETY: chunk `c0 + ci < d/16` of head `h < H` lies inside `acc` (`H·d` values)
            // and chunk `c0 + ci` inside every value row.
            unsafe {
                for ci in 0..UNITS {
                    for h in 0..H {
                        if ci * H + h < UNITS && ci < cn {
                            a[ci * H + h] = _mm512_cvtph_ps(_mm256_loadu_si256(ap.add(h * chunks + c0 + ci)));
                        }
                    }
                }
                for (i, x) in vals.iter().enumerate() {
                    let xp = x.as_ptr() as *const __m256i;
                    let mut xv = [_mm512_setzero_ps(); UNITS];
                    for (ci, v) in xv.iter_mut().enumerate() {
                        if ci < cn && ci * H < UNITS {
                            *v = _mm512_cvtph_ps(_mm256_loadu_si256(xp.add(c0 + ci)));
                        }
                    }
                    for h in 0..H {
                        let (mv, vv, re) = (_mm512_set1_ps(ms[h][i]), _mm512_set1_ps(vs[h][i]), rescale[h][i]);
                        for ci in 0..UNITS {
                            if ci * H + h < UNITS && ci < cn {
                                let u = ci * H + h;
                                if re {
                                    a[u] = r16(_mm512_mul_ps(a[u], mv));
                                }
                                a[u] = r16(_mm512_fmadd_ps(xv[ci], vv, a[u]));
                            }
                        }
                    }
                }
                for ci in 0..UNITS {
                    for h in 0..H {
                        if ci * H + h < UNITS && ci < cn {
                            let v = _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(a[ci * H + h]);
                            _mm256_storeu_si256(ap.add(h * chunks + c0 + ci), v);
                        }
                    }
                }
            }
            c0 += cn;
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn mad_avx512(y: &mut [f16], x: &[f16], v: f32) {
        let n = y.len().min(x.len());
        let vv = _mm512_set1_ps(v);
        let mut i = 0;
        // SAFETY: every access covers 16 values inside `0..n` of both slices.
        unsafe {
            while i + 16 <= n {
                let yp = y.as_mut_ptr().add(i) as *mut __m256i;
                let a = _mm512_cvtph_ps(_mm256_loadu_si256(x.as_ptr().add(i) as *const __m256i));
                let r = _mm512_fmadd_ps(a, vv, _mm512_cvtph_ps(_mm256_loadu_si256(yp)));
                _mm256_storeu_si256(yp, _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(r));
                i += 16;
            }
        }
        for (o, &xv) in y[i..n].iter_mut().zip(&x[i..n]) {
            *o = f16::from_f32(xv.to_f32().mul_add(v, o.to_f32()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Several heads at once give each head's own bits, for head sizes with and without the
    /// AVX-512 paths and groups of 1 to 7 heads.
    #[test]
    fn heads_together_give_each_heads_bits() {
        let vals = |n: usize, seed: usize| -> Vec<f16> {
            (0..n).map(|i| f16::from_f32((((i * 7919 + seed) % 2003) as f32 - 1001.0) * 1.37e-3)).collect()
        };
        for d in [64usize, 80, 256] {
            for heads in [1usize, 3, 7, 10] {
                let keys: Vec<Vec<f16>> = (0..8).map(|s| vals(d, 3 + s)).collect();
                let values: Vec<Vec<f16>> = (0..8).map(|s| vals(d, 40 + s)).collect();
                let (kr, vr): (Vec<&[f16]>, Vec<&[f16]>) =
                    (keys.iter().map(|k| &k[..]).collect(), values.iter().map(|v| &v[..]).collect());
                let q16 = vals(heads * d, 99);
                let qf: Vec<f32> = q16.iter().map(|v| v.to_f32()).collect();
                for nk in [1usize, 5, 8] {
                    let mut got = vec![[0f32; 8]; heads];
                    dots_heads(&kr[..nk], &q16, &qf, d, &mut got);
                    for h in 0..heads {
                        for i in 0..nk {
                            let want = dot_scalar(kr[i], &q16[h * d..(h + 1) * d]);
                            assert_eq!(got[h][i].to_bits(), want.to_bits(), "dots d={d} heads={heads} h={h} key {i}");
                        }
                    }
                    let ms: Vec<[f32; 8]> =
                        (0..heads).map(|h| std::array::from_fn(|i| 0.5 + 0.05 * (h + i) as f32)).collect();
                    let vs: Vec<[f32; 8]> =
                        (0..heads).map(|h| std::array::from_fn(|i| 0.1 * (1 + h + 2 * i) as f32)).collect();
                    let rescale: Vec<[bool; 8]> =
                        (0..heads).map(|h| std::array::from_fn(|i| (h + i) % 3 == 0)).collect();
                    let start = vals(heads * d, 7);
                    let mut together = start.clone();
                    mad_run_heads(&mut together, d, &vr[..nk], &ms, &vs, &rescale);
                    let mut apart = start.clone();
                    for h in 0..heads {
                        let a = &mut apart[h * d..(h + 1) * d];
                        for i in 0..nk {
                            if rescale[h][i] {
                                scale_scalar(a, ms[h][i]);
                            }
                            for (o, &xv) in a.iter_mut().zip(vr[i]) {
                                *o = f16::from_f32(xv.to_f32().mul_add(vs[h][i], o.to_f32()));
                            }
                        }
                    }
                    assert_eq!(together, apart, "mad_run_heads d={d} heads={heads} keys={nk}");
                }
            }
        }
    }

    #[test]
    fn every_level_gives_the_same_bits() {
        let vals = |n: usize, seed: usize| -> Vec<f16> {
            (0..n).map(|i| f16::from_f32((((i * 7919 + seed) % 2003) as f32 - 1001.0) * 1.37e-3)).collect()
        };
        for n in [64usize, 200, 203, 256] {
            let (x, y) = (vals(n, 1), vals(n, 5));
            let want = dot_scalar(&x, &y);
            let exact: f64 = x.iter().zip(&y).map(|(a, b)| a.to_f64() * b.to_f64()).sum();
            assert!((want as f64 - exact).abs() < 1e-4, "{want} vs {exact}");
            assert_eq!(dot(&x, &y).to_bits(), want.to_bits(), "n={n}");
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c") {
                // SAFETY: the features were just detected.
                assert_eq!(unsafe { x86::dot_avx2(&x, &y) }.to_bits(), want.to_bits(), "avx2 n={n}");
            }
            // Several keys at once give each key's bits.
            let keys: Vec<Vec<f16>> = (0..11).map(|s| vals(n, 11 + s)).collect();
            let refs: Vec<&[f16]> = keys.iter().map(|k| &k[..]).collect();
            let qf: Vec<f32> = y.iter().map(|v| v.to_f32()).collect();
            for m in [1usize, 3, 8] {
                let mut got = vec![0f32; m];
                dots(&refs[..m], &y, &qf, &mut got);
                for (g, k) in got.iter().zip(&refs) {
                    assert_eq!(g.to_bits(), dot_scalar(k, &y).to_bits(), "dots n={n} m={m}");
                }
            }
            // A run of rescales and mads in registers gives the calls' bits.
            let (ms, vs) = ([0.5f32, 1.0, 0.25, 1.0, 0.9], [1.0f32, 0.3, 1.0, 0.7, 0.01]);
            let rescale = [true, false, true, false, true];
            let mut want_run = y.clone();
            for i in 0..5 {
                if rescale[i] {
                    scale_scalar(&mut want_run, ms[i]);
                }
                for (o, &xv) in want_run.iter_mut().zip(refs[i]) {
                    *o = f16::from_f32(xv.to_f32().mul_add(vs[i], o.to_f32()));
                }
            }
            let mut got_run = y.clone();
            mad_run(&mut got_run, &refs[..5], &ms, &vs, &rescale);
            assert_eq!(got_run, want_run, "mad_run n={n}");
            let mut a = y.clone();
            mad(&mut a, &x, 0.3);
            for ((o, &xv), &yv) in a.iter().zip(&x).zip(&y) {
                assert_eq!(*o, f16::from_f32(xv.to_f32().mul_add(0.3, yv.to_f32())));
            }
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c") {
                let mut b = y.clone();
                // SAFETY: the features were just detected.
                unsafe { x86::mad_avx2(&mut b, &x, 0.3) };
                assert_eq!(a, b, "avx2 mad n={n}");
            }
            let mut c = y.clone();
            scale(&mut c, 0.7);
            for (o, &yv) in c.iter().zip(&y) {
                assert_eq!(*o, f16::from_f32(yv.to_f32() * 0.7));
            }
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c") {
                let mut d = y.clone();
                // SAFETY: the features were just detected.
                unsafe { x86::scale_avx2(&mut d, 0.7) };
                assert_eq!(c, d, "avx2 scale n={n}");
            }
        }
    }
}
