//! AVX2 dot products for Q4_K, Q5_K, Q6_K (CPUs without AVX-512 VNNI): per super-block the
//! scales are converted as vectors and the mins / -32 offsets applied through the activation
//! block sums; then 32 weights per `vpmaddubsw` step, as in [`super::avx2_legacy`].

use std::arch::x86_64::*;

use super::avx2_legacy::{hsum, step};
use crate::quant::act::ActRow;

const K1: u32 = 0x3f3f_3f3f;
const K2: u32 = 0x0f0f_0f0f;
const K3: u32 = 0x0303_0303;

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees 2 readable bytes.
    let h = unsafe { std::ptr::read_unaligned(p as *const u16) };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
}

/// Scales (bytes 0..8) and mins (8..16) of the 12 packed bytes at `p`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k4_scales_mins(p: *const u8) -> __m128i {
    // SAFETY: the caller guarantees the 12 bytes at `p` are readable.
    let [u0, u1, u2] = unsafe {
        let rd = |i: usize| std::ptr::read_unaligned(p.add(4 * i) as *const u32);
        [rd(0), rd(1), rd(2)]
    };
    let m_hi = ((u2 >> 4) & K2) | (((u1 >> 6) & K3) << 4);
    let s_hi = (u2 & K2) | (((u0 >> 6) & K3) << 4);
    _mm_set_epi32(m_hi as i32, (u1 & K1) as i32, s_hi as i32, (u0 & K1) as i32)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k4<const FIVE: bool, const R: usize>(w: &[u8], xs: &[ActRow<'_>], out: &mut [f32]) {
    let ts = if FIVE { 176 } else { 144 };
    let qs_off = if FIVE { 48 } else { 16 };
    let nsb = w.len() / ts;
    let xq: [*const i8; R] = std::array::from_fn(|r| xs[r].qs.as_ptr());
    let xd: [*const f32; R] = std::array::from_fn(|r| xs[r].d.as_ptr());
    let xs32: [*const f32; R] = std::array::from_fn(|r| xs[r].s32.as_ptr());
    let mask4 = _mm256_set1_epi8(0xF);
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    let mut off = [_mm256_setzero_ps(); R];
    // SAFETY: super-block `sb` lies inside `w`; activation rows cover `nsb * 256` values.
    unsafe {
        for sb in 0..nsb {
            let p = w.as_ptr().add(sb * ts);
            let d = _mm256_set1_ps(f16_at(p));
            let dmin = _mm256_set1_ps(f16_at(p.add(2)));
            let sm = k4_scales_mins(p.add(4));
            let sc8 = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(sm)));
            let m8 = _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128::<8>(sm))));
            let mut sc = [_mm256_setzero_ps(); R];
            for r in 0..R {
                sc[r] = _mm256_mul_ps(sc8, _mm256_loadu_ps(xd[r].add(8 * sb)));
                off[r] = _mm256_fnmadd_ps(m8, _mm256_loadu_ps(xs32[r].add(8 * sb)), off[r]);
            }
            let qh = if FIVE { _mm256_loadu_si256(p.add(16) as *const __m256i) } else { mask4 };
            for i in 0..4 {
                let y = _mm256_loadu_si256(p.add(qs_off + 32 * i) as *const __m256i);
                let mut lo = _mm256_and_si256(y, mask4);
                let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(y), mask4);
                if FIVE {
                    let (bl, bh) = (_mm256_set1_epi8(1 << (2 * i)), _mm256_set1_epi8((1u8 << (2 * i + 1)) as i8));
                    let sixteen = _mm256_set1_epi8(16);
                    lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, bl), bl), sixteen));
                    hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, bh), bh), sixteen));
                }
                let (li, hj) = (_mm256_set1_epi32(2 * i as i32), _mm256_set1_epi32(2 * i as i32 + 1));
                for r in 0..R {
                    let x = xq[r].add(256 * sb + 64 * i);
                    acc[r][0] = step(acc[r][0], lo, x, _mm256_permutevar8x32_ps(sc[r], li));
                    acc[r][1] = step(acc[r][1], hi, x.add(32), _mm256_permutevar8x32_ps(sc[r], hj));
                }
            }
        }
    }
    for r in 0..R {
        out[r] = hsum(_mm256_add_ps(_mm256_add_ps(acc[r][0], acc[r][1]), off[r]));
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k6<const R: usize>(w: &[u8], xs: &[ActRow<'_>], out: &mut [f32]) {
    let nsb = w.len() / 210;
    let xq: [*const i8; R] = std::array::from_fn(|r| xs[r].qs.as_ptr());
    let xd: [*const f32; R] = std::array::from_fn(|r| xs[r].d.as_ptr());
    let xs16: [*const f32; R] = std::array::from_fn(|r| xs[r].s16.as_ptr());
    let mask4 = _mm256_set1_epi8(0xF);
    let mask_hi = _mm256_set1_epi8(0x30);
    let dup_lo = _mm256_set_epi32(3, 3, 2, 2, 1, 1, 0, 0);
    let dup_hi = _mm256_set_epi32(7, 7, 6, 6, 5, 5, 4, 4);
    // Chunk `t` (32 weights, sub-blocks 2t and 2t+1) takes lanes 0..4 from scale 2t, 4..8 from 2t+1.
    let lanes: [__m256i; 4] = std::array::from_fn(|t| {
        let a = 2 * t as i32;
        _mm256_set_epi32(a + 1, a + 1, a + 1, a + 1, a, a, a, a)
    });
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    let mut off = [_mm256_setzero_ps(); R];
    // SAFETY: as in `k4`.
    unsafe {
        for sb in 0..nsb {
            let p = w.as_ptr().add(sb * 210);
            let d = _mm256_set1_ps(f16_at(p.add(208)));
            let raw = _mm_loadu_si128(p.add(192) as *const __m128i);
            let sa = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(raw)));
            let sb_ = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128::<8>(raw))));
            let m32 = _mm256_set1_ps(-32.0);
            let mut sc = [[_mm256_setzero_ps(); 2]; R];
            for r in 0..R {
                let dx = _mm256_loadu_ps(xd[r].add(8 * sb));
                sc[r][0] = _mm256_mul_ps(sa, _mm256_permutevar8x32_ps(dx, dup_lo));
                sc[r][1] = _mm256_mul_ps(sb_, _mm256_permutevar8x32_ps(dx, dup_hi));
                let s16 = xs16[r].add(16 * sb);
                off[r] = _mm256_fmadd_ps(_mm256_mul_ps(sa, m32), _mm256_loadu_ps(s16), off[r]);
                off[r] = _mm256_fmadd_ps(_mm256_mul_ps(sb_, m32), _mm256_loadu_ps(s16.add(8)), off[r]);
            }
            for n in [0usize, 1] {
                let qla = _mm256_loadu_si256(p.add(64 * n) as *const __m256i);
                let qlb = _mm256_loadu_si256(p.add(64 * n + 32) as *const __m256i);
                let qh = _mm256_loadu_si256(p.add(128 + 32 * n) as *const __m256i);
                let wv = [
                    _mm256_or_si256(_mm256_and_si256(qla, mask4), _mm256_and_si256(_mm256_slli_epi16::<4>(qh), mask_hi)),
                    _mm256_or_si256(_mm256_and_si256(qlb, mask4), _mm256_and_si256(_mm256_slli_epi16::<2>(qh), mask_hi)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(qla), mask4), _mm256_and_si256(qh, mask_hi)),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<4>(qlb), mask4),
                        _mm256_and_si256(_mm256_srli_epi16::<2>(qh), mask_hi),
                    ),
                ];
                for (t, &wt) in wv.iter().enumerate() {
                    for r in 0..R {
                        let x = xq[r].add(256 * sb + 128 * n + 32 * t);
                        let s = _mm256_permutevar8x32_ps(sc[r][n], lanes[t]);
                        acc[r][t & 1] = step(acc[r][t & 1], wt, x, s);
                    }
                }
            }
        }
    }
    for r in 0..R {
        out[r] = hsum(_mm256_add_ps(_mm256_add_ps(acc[r][0], acc[r][1]), off[r]));
    }
}

macro_rules! entry {
    ($name:ident, $body:ident $(, $arg:expr)?) => {
        /// Safety: as [`super::QuantDot`] (the CPU has AVX2, FMA, F16C).
        pub(super) unsafe fn $name(w: &[u8], rb: usize, xs: &[ActRow<'_>], out: &mut [f32], stride: usize) {
            // SAFETY: the caller (`Kernels`, built after detection) upholds the contract.
            unsafe { row_loop!($body, [$($arg)?], w, rb, xs, out, stride) }
        }
    };
}

entry!(q4_k, k4, false);
entry!(q5_k, k4, true);
entry!(q6_k, k6);
