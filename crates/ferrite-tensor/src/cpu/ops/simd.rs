//! Small f32/f16 vector primitives for the attention and norm ops, with AVX-512 and AVX2+F16C
//! versions chosen at run time and a portable fallback.

use half::f16;
use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    Avx512,
    Avx2,
    Scalar,
}

/// The best instruction set this CPU has (detected once).
pub(crate) fn level() -> Level {
    static L: OnceLock<Level> = OnceLock::new();
    *L.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 =
                is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c");
            // The AVX-512 level may also call the AVX2 kernels.
            if avx2 && is_x86_feature_detected!("avx512f") {
                return Level::Avx512;
            }
            if avx2 {
                return Level::Avx2;
            }
        }
        Level::Scalar
    })
}

/// A vector element the kernels can read: f32 or f16.
pub(crate) trait Elem: Copy + Send + Sync + bytemuck::Pod {
    const IS_F16: bool;
    fn to_f32(self) -> f32;
    /// `dst[i] = src[i].to_f32()` (the same values), converted with SIMD where there is some.
    fn widen(src: &[Self], dst: &mut [f32]);
}
impl Elem for f32 {
    const IS_F16: bool = false;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline]
    fn widen(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
}
impl Elem for f16 {
    const IS_F16: bool = true;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    /// `half`'s slice conversion: one CPU-feature check per call, 8 values per `vcvtph2ps`
    /// (converting value by value checks the CPU's features for each).
    #[inline]
    fn widen(src: &[f16], dst: &mut [f32]) {
        half::slice::HalfFloatSliceExt::convert_to_f32_slice(src, dst);
    }
}

fn dot_scalar<T: Elem>(a: &[f32], b: &[T]) -> f32 {
    let mut acc = [0f32; 8];
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        for j in 0..8 {
            acc[j] += a[i + j] * b[i + j].to_f32();
        }
        i += 8;
    }
    let mut s: f32 = acc.iter().sum();
    while i < n {
        s += a[i] * b[i].to_f32();
        i += 1;
    }
    s
}

fn axpy_scalar<T: Elem>(out: &mut [f32], w: f32, v: &[T]) {
    for (o, x) in out.iter_mut().zip(v) {
        *o += w * x.to_f32();
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Elem;
    use std::arch::x86_64::*;

    /// Loads 16 elements as f32.
    #[inline(always)]
    unsafe fn load16<T: Elem>(p: *const T) -> __m512 {
        // SAFETY: the caller guarantees 16 readable elements at `p`.
        unsafe {
            if T::IS_F16 {
                _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
            } else {
                _mm512_loadu_ps(p as *const f32)
            }
        }
    }

    #[inline(always)]
    unsafe fn load8<T: Elem>(p: *const T) -> __m256 {
        // SAFETY: the caller guarantees 8 readable elements at `p`.
        unsafe {
            if T::IS_F16 {
                _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
            } else {
                _mm256_loadu_ps(p as *const f32)
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dot_avx512<T: Elem>(a: &[f32], b: &[T]) -> f32 {
        let n = a.len().min(b.len());
        let (mut s0, mut s1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let mut i = 0;
        // SAFETY: every load reads within `0..n` of both slices.
        unsafe {
            while i + 32 <= n {
                s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a.as_ptr().add(i)), load16(b.as_ptr().add(i)), s0);
                s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a.as_ptr().add(i + 16)), load16(b.as_ptr().add(i + 16)), s1);
                i += 32;
            }
            if i + 16 <= n {
                s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a.as_ptr().add(i)), load16(b.as_ptr().add(i)), s0);
                i += 16;
            }
        }
        let mut s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
        while i < n {
            s += a[i] * b[i].to_f32();
            i += 1;
        }
        s
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn axpy_avx512<T: Elem>(out: &mut [f32], w: f32, v: &[T]) {
        let n = out.len().min(v.len());
        let wv = _mm512_set1_ps(w);
        let mut i = 0;
        // SAFETY: every access is within `0..n` of both slices.
        unsafe {
            while i + 16 <= n {
                let o = out.as_mut_ptr().add(i);
                _mm512_storeu_ps(o, _mm512_fmadd_ps(wv, load16(v.as_ptr().add(i)), _mm512_loadu_ps(o)));
                i += 16;
            }
        }
        while i < n {
            out[i] += w * v[i].to_f32();
            i += 1;
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_avx2<T: Elem>(a: &[f32], b: &[T]) -> f32 {
        let n = a.len().min(b.len());
        let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        // SAFETY: every load reads within `0..n` of both slices.
        unsafe {
            while i + 16 <= n {
                s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a.as_ptr().add(i)), load8(b.as_ptr().add(i)), s0);
                s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a.as_ptr().add(i + 8)), load8(b.as_ptr().add(i + 8)), s1);
                i += 16;
            }
        }
        let s = _mm256_add_ps(s0, s1);
        let h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        let h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
        let mut s = _mm_cvtss_f32(h);
        while i < n {
            s += a[i] * b[i].to_f32();
            i += 1;
        }
        s
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn axpy_avx2<T: Elem>(out: &mut [f32], w: f32, v: &[T]) {
        let n = out.len().min(v.len());
        let wv = _mm256_set1_ps(w);
        let mut i = 0;
        // SAFETY: every access is within `0..n` of both slices.
        unsafe {
            while i + 8 <= n {
                let o = out.as_mut_ptr().add(i);
                _mm256_storeu_ps(o, _mm256_fmadd_ps(wv, load8(v.as_ptr().add(i)), _mm256_loadu_ps(o)));
                i += 8;
            }
        }
        while i < n {
            out[i] += w * v[i].to_f32();
            i += 1;
        }
    }
}

/// `sum(a[i] * b[i])`.
#[inline]
pub(crate) fn dot<T: Elem>(a: &[f32], b: &[T]) -> f32 {
    match level() {
        // SAFETY: `level()` verified the CPU features these functions enable.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { x86::dot_avx512(a, b) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { x86::dot_avx2(a, b) },
        _ => dot_scalar(a, b),
    }
}

/// `out[i] += w * v[i]`.
#[inline]
pub(crate) fn axpy<T: Elem>(out: &mut [f32], w: f32, v: &[T]) {
    match level() {
        // SAFETY: `level()` verified the CPU features these functions enable.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { x86::axpy_avx512(out, w, v) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { x86::axpy_avx2(out, w, v) },
        _ => axpy_scalar(out, w, v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::ops::test_util::rand_vec;

    #[test]
    fn every_level_matches_f64() {
        for n in [1usize, 7, 16, 33, 64, 100, 256] {
            let a = rand_vec(n, n as u64);
            let b = rand_vec(n, 1000 + n as u64);
            let bh: Vec<f16> = b.iter().map(|&x| f16::from_f32(x)).collect();
            let want: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
            let want_h: f64 = a.iter().zip(&bh).map(|(&x, &y)| x as f64 * y.to_f64()).sum();
            let mut got = vec![(dot_scalar(&a, &b), dot_scalar(&a, &bh))];
            let mut axpys = vec![{
                let mut o = a.clone();
                axpy_scalar(&mut o, 0.5, &bh);
                o
            }];
            #[cfg(target_arch = "x86_64")]
            {
                if is_x86_feature_detected!("avx512f") {
                    // SAFETY: feature checked above.
                    unsafe {
                        got.push((x86::dot_avx512(&a, &b), x86::dot_avx512(&a, &bh)));
                        let mut o = a.clone();
                        x86::axpy_avx512(&mut o, 0.5, &bh);
                        axpys.push(o);
                    }
                }
                if is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
                {
                    // SAFETY: features checked above.
                    unsafe {
                        got.push((x86::dot_avx2(&a, &b), x86::dot_avx2(&a, &bh)));
                        let mut o = a.clone();
                        x86::axpy_avx2(&mut o, 0.5, &bh);
                        axpys.push(o);
                    }
                }
            }
            for (f, h) in got {
                assert!((f as f64 - want).abs() < 1e-4 * (1.0 + want.abs()), "n={n}: {f} vs {want}");
                assert!((h as f64 - want_h).abs() < 1e-4 * (1.0 + want_h.abs()), "n={n}: {h} vs {want_h}");
            }
            for o in axpys {
                for i in 0..n {
                    let w = a[i] as f64 + 0.5 * bh[i].to_f64();
                    assert!((o[i] as f64 - w).abs() < 1e-5, "axpy n={n} i={i}");
                }
            }
        }
    }
}
