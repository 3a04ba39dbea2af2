//! AVX2 dot products for Q4_0, Q4_1, Q5_0, Q8_0 (CPUs without AVX-512 VNNI).
//!
//! One 32-weight block per 256-bit step: unsigned weight bytes times signed activations with
//! `vpmaddubsw` (no saturation: weights are at most 31) and `vpmaddwd`, converted and
//! accumulated with the block's scale. Scales are converted 8 at a time, offsets applied per
//! group of 8 blocks through the activation block sums. Q8_0 uses the sign trick
//! (`|w| · sign(x, w)`) instead of an offset, as `vpmaddubsw` would saturate on `w + 128`.

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

/// The 8 fp16 values at `p + off + i·ts` (`i < n`, zero for `i >= n`) as f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn gather_f16x8(p: *const u8, ts: usize, off: usize, n: usize) -> __m256 {
    // SAFETY: the caller guarantees blocks `0..n` are readable; others are not touched.
    unsafe {
        let rd = |i: usize| if i < n { std::ptr::read_unaligned(p.add(i * ts + off) as *const i16) } else { 0 };
        _mm256_cvtph_ps(_mm_set_epi16(rd(7), rd(6), rd(5), rd(4), rd(3), rd(2), rd(1), rd(0)))
    }
}

/// `acc + f32(Σ4 w·x) · scale`: one 32-weight step (`w` unsigned bytes, at most 63).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn step(acc: __m256, w: __m256i, x: *const i8, scale: __m256) -> __m256 {
    // SAFETY: the caller guarantees 32 readable bytes at `x`.
    unsafe {
        let xv = _mm256_loadu_si256(x as *const __m256i);
        let dot = _mm256_madd_epi16(_mm256_maddubs_epi16(w, xv), _mm256_set1_epi16(1));
        _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc)
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// 32 bits to 32 bytes of 0xFF / 0x00.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn bytes_from_bits(bits: u32) -> __m256i {
    let shuf = _mm256_set_epi64x(0x0303_0303_0303_0303, 0x0202_0202_0202_0202, 0x0101_0101_0101_0101, 0);
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), shuf);
    let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
    _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
}

/// The 32 weights of block `p` as unsigned bytes (Q8_0: signed).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn unpack<const KIND: u8>(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees the block at `p` is readable.
    unsafe {
        if KIND == Q8_0 {
            return _mm256_loadu_si256(p.add(2) as *const __m256i);
        }
        let qs = match KIND {
            Q4_0 => 2,
            Q4_1 => 4,
            _ => 6,
        };
        let x = _mm_loadu_si128(p.add(qs) as *const __m128i);
        let w = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16::<4>(x), x), _mm256_set1_epi8(0xF));
        if KIND == Q5_0 {
            let h = bytes_from_bits(std::ptr::read_unaligned(p.add(2) as *const u32));
            return _mm256_or_si256(w, _mm256_and_si256(h, _mm256_set1_epi8(16)));
        }
        w
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn legacy<const KIND: u8, const R: usize>(w: &[u8], xs: &[ActRow<'_>], out: &mut [f32]) {
    let ts = type_size(KIND);
    let nb = w.len() / ts;
    let xq: [*const i8; R] = std::array::from_fn(|r| xs[r].qs.as_ptr());
    let xd: [*const f32; R] = std::array::from_fn(|r| xs[r].d.as_ptr());
    let xs32: [*const f32; R] = std::array::from_fn(|r| xs[r].s32.as_ptr());
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    let mut off = [_mm256_setzero_ps(); R];
    // SAFETY: blocks `b..b + n` lie inside `w`; activation rows are padded to whole groups of
    // 8 blocks (checked by `Kernels::quant_dot`).
    unsafe {
        let wp = w.as_ptr();
        let mut b = 0;
        while b < nb {
            let n = (nb - b).min(8);
            let p = wp.add(b * ts);
            let dw = gather_f16x8(p, ts, 0, n);
            let mut sc = [_mm256_setzero_ps(); R];
            for r in 0..R {
                sc[r] = _mm256_mul_ps(dw, _mm256_loadu_ps(xd[r].add(b)));
            }
            if KIND != Q8_0 {
                let coef = match KIND {
                    Q4_0 => _mm256_mul_ps(dw, _mm256_set1_ps(-8.0)),
                    Q4_1 => gather_f16x8(p, ts, 2, n),
                    _ => _mm256_mul_ps(dw, _mm256_set1_ps(-16.0)),
                };
                for r in 0..R {
                    off[r] = _mm256_fmadd_ps(coef, _mm256_loadu_ps(xs32[r].add(b)), off[r]);
                }
            }
            for j in 0..n {
                let wv = unpack::<KIND>(p.add(j * ts));
                let lane = _mm256_set1_epi32(j as i32);
                for r in 0..R {
                    let s = _mm256_permutevar8x32_ps(sc[r], lane);
                    let x = xq[r].add((b + j) * 32);
                    acc[r][j & 1] = if KIND == Q8_0 {
                        let xv = _mm256_loadu_si256(x as *const __m256i);
                        let prod = _mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv));
                        let dot = _mm256_madd_epi16(prod, _mm256_set1_epi16(1));
                        _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), s, acc[r][j & 1])
                    } else {
                        step(acc[r][j & 1], wv, x, s)
                    };
                }
            }
            b += 8;
        }
    }
    for r in 0..R {
        out[r] = hsum(_mm256_add_ps(_mm256_add_ps(acc[r][0], acc[r][1]), off[r]));
    }
}

macro_rules! entry {
    ($name:ident, $kind:expr) => {
        /// Safety: as [`super::QuantDot`] (the CPU has AVX2, FMA, F16C).
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
