//! AVX2 dot products for Q4_K, Q5_K, Q6_K (CPUs without AVX-512 VNNI), rounded as ggml's
//! kernels (see [`super::scalar`]): 32 weights per `vpmaddubsw` + `vpmaddwd` step with the
//! 16-bit sub-block scales into 8 i32 lanes; Q4_K/Q5_K reduce them to one exact integer per
//! super-block, Q6_K keeps the 8 lanes of `ggml_vec_dot_q6_K_q8_K`.

use std::arch::x86_64::*;

use super::avx2_legacy::f16_at;
use crate::quant::act::ActRow;

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s)))
}

/// The lane sums of four vectors: `[Σ v[0], Σ v[1], Σ v[2], Σ v[3]]` (exact integers).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_i32x4(v: &[__m256i; 4]) -> __m128i {
    let c = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    _mm_add_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256::<1>(c))
}

/// The sum of the 4 i32 lanes (exact integers).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_i32_128(s: __m128i) -> i32 {
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s)))
}

/// The 8 6-bit scales (i16 lanes 0..8) and 8 mins (lanes 8..16) of the Q4_K/Q5_K block at
/// `p`, from its 12 packed bytes at `p + 4` (the same values as `scalar::k4_scales_mins`,
/// unpacked 4 at a time with 32-bit masks).
///
/// # Safety
/// The 16 bytes at `p` are readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k4_scales_mins_v(p: *const u8) -> __m256i {
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const LOW2: u32 = 0x0303_0303;
    // SAFETY: the caller guarantees bytes `p + 4 .. p + 16`.
    let u: [u32; 3] = std::array::from_fn(|i| unsafe { std::ptr::read_unaligned(p.add(4 + 4 * i) as *const u32) });
    let scales_lo = u[0] & LOW6;
    let scales_hi = (u[2] & LOW4) | (((u[0] >> 6) & LOW2) << 4);
    let mins_lo = u[1] & LOW6;
    let mins_hi = ((u[2] >> 4) & LOW4) | (((u[1] >> 6) & LOW2) << 4);
    _mm256_cvtepu8_epi16(_mm_set_epi32(mins_hi as i32, mins_lo as i32, scales_hi as i32, scales_lo as i32))
}

/// For 4 activation rows `r` and the 4 sub-block pairs `i` of super-block `sb`: the exact
/// integers `Σ_{j ∈ {2i, 2i+1}} mn[j] · (bsums[2j] + bsums[2j+1])` as `out[i] = [row 0..4]`,
/// with the 8 mins `mn` as i16 lanes.
///
/// # Safety
/// Every row's `bsums` covers `16·sb + 16` values.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k4_mins_x4(mins: __m128i, xs: &[ActRow<'_>], sb: usize) -> [__m128i; 4] {
    // Each min twice, for the two 16-value sums of its 32-value sub-block.
    let m = _mm256_set_m128i(_mm_unpackhi_epi16(mins, mins), _mm_unpacklo_epi16(mins, mins));
    // SAFETY: the caller guarantees the 16 sums at `16·sb` exist in each row.
    let v: [__m256i; 4] = std::array::from_fn(|r| unsafe {
        _mm256_madd_epi16(_mm256_loadu_si256(xs[r].bsums.as_ptr().add(16 * sb) as *const __m256i), m)
    });
    // Lanes `[r0i0 r0i1 r1i0 r1i1 | r0i2 r0i3 r1i2 r1i3]`, and the same for rows 2, 3.
    let (h01, h23) = (_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    let idx = _mm256_setr_epi32(0, 2, 1, 3, 4, 6, 5, 7);
    let (p01, p23) = (_mm256_permutevar8x32_epi32(h01, idx), _mm256_permutevar8x32_epi32(h23, idx));
    let (lo, hi) = (_mm256_unpacklo_epi64(p01, p23), _mm256_unpackhi_epi64(p01, p23));
    [
        _mm256_castsi256_si128(lo),
        _mm256_castsi256_si128(hi),
        _mm256_extracti128_si256::<1>(lo),
        _mm256_extracti128_si256::<1>(hi),
    ]
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k4<const FIVE: bool, const R: usize>(w: &[u8], xs: &[ActRow<'_>], out: &mut [f32]) {
    let ts = if FIVE { 176 } else { 144 };
    let qs_off = if FIVE { 48 } else { 16 };
    let nsb = w.len() / ts;
    let mask4 = _mm256_set1_epi8(0xF);
    let mut acc = [0f32; R];
    let mut acc_min = [0f32; R];
    // 4 rows: the same per-row chains, one lane per row.
    let mut acc4 = _mm_setzero_ps();
    let mut acc_min4 = _mm_setzero_ps();
    // SAFETY: super-block `sb` lies inside `w`; activation rows cover `nsb * 256` values.
    unsafe {
        for sb in 0..nsb {
            let p = w.as_ptr().add(sb * ts);
            let scales_mins = k4_scales_mins_v(p);
            let mins = _mm256_extracti128_si256::<1>(scales_mins);
            let mut sc = [0i16; 16];
            _mm256_storeu_si256(sc.as_mut_ptr() as *mut __m256i, scales_mins);
            let (d, dmin) = (f16_at(p), f16_at(p.add(2)));
            let qh = if FIVE { _mm256_loadu_si256(p.add(16) as *const __m256i) } else { mask4 };
            let mut iacc = [_mm256_setzero_si256(); R];
            // 4 rows: `d · dx` and `dmin · dx` per row, and the mins' integer sums per pair.
            let (mut dd4, mut dm4, mut imin4) = (_mm_setzero_ps(), _mm_setzero_ps(), [_mm_setzero_si128(); 4]);
            if R == super::MAX_ROWS {
                let dx = _mm_setr_ps(xs[0].d[8 * sb], xs[1].d[8 * sb], xs[2].d[8 * sb], xs[3].d[8 * sb]);
                dd4 = _mm_mul_ps(_mm_set1_ps(d), dx);
                dm4 = _mm_mul_ps(_mm_set1_ps(dmin), dx);
                imin4 = k4_mins_x4(mins, xs, sb);
            }
            for i in 0..4 {
                let y = _mm256_loadu_si256(p.add(qs_off + 32 * i) as *const __m256i);
                let mut lo = _mm256_and_si256(y, mask4);
                let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(y), mask4);
                if FIVE {
                    let (bl, bh) = (_mm256_set1_epi8(1 << (2 * i)), _mm256_set1_epi8((1u8 << (2 * i + 1)) as i8));
                    let sixteen = _mm256_set1_epi8(16);
                    lo =
                        _mm256_or_si256(lo, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, bl), bl), sixteen));
                    hi =
                        _mm256_or_si256(hi, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, bh), bh), sixteen));
                }
                let (sl, sh) = (_mm256_set1_epi16(sc[2 * i]), _mm256_set1_epi16(sc[2 * i + 1]));
                for r in 0..R {
                    let x = xs[r].qs.as_ptr().add(256 * sb + 64 * i);
                    let xl = _mm256_loadu_si256(x as *const __m256i);
                    let xh = _mm256_loadu_si256(x.add(32) as *const __m256i);
                    let pl = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, xl), sl);
                    let ph = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, xh), sh);
                    iacc[r] = _mm256_add_epi32(iacc[r], _mm256_add_epi32(pl, ph));
                }
                // As the scalar kernel: 4 rows accumulate per sub-block pair (ggml's GEMM).
                if R == super::MAX_ROWS {
                    let v: [__m256i; 4] = std::array::from_fn(|r| iacc[r]);
                    let isum = _mm_cvtepi32_ps(hsum_i32x4(&v));
                    iacc = [_mm256_setzero_si256(); R];
                    acc4 = _mm_fmadd_ps(isum, dd4, acc4);
                    acc_min4 = _mm_fmadd_ps(_mm_cvtepi32_ps(imin4[i]), dm4, acc_min4);
                } else if i == 3 {
                    for r in 0..R {
                        let isum = hsum_i32(iacc[r]);
                        // `Σ_j mn[j] · (bsums[2j] + bsums[2j+1])`, exactly (the pair sums fit
                        // i16: 32 values of at most 128 in magnitude).
                        let bs = _mm256_loadu_si256(xs[r].bsums.as_ptr().add(16 * sb) as *const __m256i);
                        let pairs = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256::<1>(bs));
                        let imin = hsum_i32_128(_mm_madd_epi16(mins, pairs));
                        let dx = xs[r].d[8 * sb];
                        acc[r] = (isum as f32).mul_add(d * dx, acc[r]);
                        acc_min[r] = (imin as f32).mul_add(dmin * dx, acc_min[r]);
                    }
                }
            }
        }
    }
    if R == super::MAX_ROWS {
        let mut a = [0f32; 4];
        // SAFETY: `a` holds 4 f32.
        unsafe { _mm_storeu_ps(a.as_mut_ptr(), _mm_sub_ps(acc4, acc_min4)) };
        out[..R].copy_from_slice(&a[..R]);
    } else {
        for r in 0..R {
            out[r] = acc[r] - acc_min[r];
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k6<const R: usize>(w: &[u8], xs: &[ActRow<'_>], out: &mut [f32]) {
    let nsb = w.len() / 210;
    let mask4 = _mm256_set1_epi8(0xF);
    let m3 = _mm256_set1_epi8(3);
    let mut acc = [_mm256_setzero_ps(); R];
    // SAFETY: as in `k4`.
    unsafe {
        for sb in 0..nsb {
            let p = w.as_ptr().add(sb * 210);
            let dw = f16_at(p.add(208));
            let sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(192) as *const __m128i));
            let mut sc = [0i16; 16];
            _mm256_storeu_si256(sc.as_mut_ptr() as *mut __m256i, sc16);
            let mut iacc = [_mm256_setzero_si256(); R];
            for n in 0..2 {
                let q1 = _mm256_loadu_si256(p.add(64 * n) as *const __m256i);
                let q2 = _mm256_loadu_si256(p.add(64 * n + 32) as *const __m256i);
                let qh = _mm256_loadu_si256(p.add(128 + 32 * n) as *const __m256i);
                let wv = [
                    _mm256_or_si256(_mm256_and_si256(q1, mask4), _mm256_slli_epi16::<4>(_mm256_and_si256(qh, m3))),
                    _mm256_or_si256(
                        _mm256_and_si256(q2, mask4),
                        _mm256_slli_epi16::<2>(_mm256_and_si256(qh, _mm256_set1_epi8(12))),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<4>(q1), mask4),
                        _mm256_and_si256(qh, _mm256_set1_epi8(48)),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<4>(q2), mask4),
                        _mm256_srli_epi16::<2>(_mm256_and_si256(qh, _mm256_set1_epi8(-64))),
                    ),
                ];
                for (t, &wt) in wv.iter().enumerate() {
                    let c = 4 * n + t;
                    let s = _mm256_inserti128_si256::<1>(
                        _mm256_castsi128_si256(_mm_set1_epi16(sc[2 * c])),
                        _mm_set1_epi16(sc[2 * c + 1]),
                    );
                    for r in 0..R {
                        let x = _mm256_loadu_si256(xs[r].qs.as_ptr().add(256 * sb + 32 * c) as *const __m256i);
                        iacc[r] = _mm256_add_epi32(iacc[r], _mm256_madd_epi16(_mm256_maddubs_epi16(wt, x), s));
                    }
                }
            }
            for r in 0..R {
                let bs = _mm256_loadu_si256(xs[r].bsums.as_ptr().add(16 * sb) as *const __m256i);
                let lanes = _mm256_sub_epi32(iacc[r], _mm256_slli_epi32::<5>(_mm256_madd_epi16(bs, sc16)));
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
