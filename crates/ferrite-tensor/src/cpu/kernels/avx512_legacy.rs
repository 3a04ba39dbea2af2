//! AVX-512 VNNI dot products for the 32-weight blocks: Q4_0, Q4_1, Q5_0, Q8_0.
//!
//! Per group of 8 blocks (256 weights): the 8 fp16 scales are converted in one `vcvtph2ps` and
//! multiplied by the 8 activation scales; the weight offsets (-8·d, +m, -16·d, -128·d) are
//! applied once per group as one FMA against the activation block sums. Then 4 steps of two
//! blocks (64 bytes): the weights are unpacked to unsigned bytes in a zmm, one 512-bit
//! `vpdpbusd` against the activations gives 16 i32 lanes (8 per block), converted to f32 and
//! accumulated with a per-lane scale (`vpermps` of the 8 group scales), into two accumulators per
//! activation row. No horizontal sums until the end of the row.
//!
//! Signed Q8_0 weights are made unsigned with `xor 0x80` (= `q + 128`) and the `128·d·Σx` this
//! adds is removed through the same block-sum FMA.

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

/// Converts the 8 fp16 values at `p + off + i·ts` (`i < n`, zero for `i >= n`) to f32.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn gather_f16x8(p: *const u8, ts: usize, off: usize, n: usize) -> __m256 {
    // SAFETY: the caller guarantees blocks `0..n` are readable; others are not touched.
    unsafe {
        let rd = |i: usize| if i < n { std::ptr::read_unaligned(p.add(i * ts + off) as *const i16) } else { 0 };
        _mm256_cvtph_ps(_mm_set_epi16(rd(7), rd(6), rd(5), rd(4), rd(3), rd(2), rd(1), rd(0)))
    }
}

/// `acc + f32(vpdpbusd(0, w, x)) · permute(idx, scale)`: one 64-weight step.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn step(acc: __m512, w: __m512i, x: *const i8, scale: __m512, idx: __m512i) -> __m512 {
    // SAFETY: the caller guarantees 64 readable bytes at `x`.
    unsafe {
        let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, _mm512_loadu_si512(x as *const _));
        _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_permutexvar_ps(idx, scale), acc)
    }
}

/// Lanes 0..8 select scale `a`, lanes 8..16 scale `b`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) fn pair_index(a: i32, b: i32) -> __m512i {
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(_mm256_set1_epi32(a)), _mm256_set1_epi32(b))
}

/// The 64 weights of blocks `p` and `p + ts` as unsigned bytes in element order (the second
/// block only when `second`, zero otherwise).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn unpack_pair<const KIND: u8>(p: *const u8, second: bool) -> __m512i {
    let ts = type_size(KIND);
    // SAFETY: the caller guarantees block `p` (and `p + ts` when `second`) is readable.
    unsafe {
        if KIND == Q8_0 {
            let lo = _mm256_loadu_si256(p.add(2) as *const __m256i);
            let hi = if second { _mm256_loadu_si256(p.add(ts + 2) as *const __m256i) } else { _mm256_setzero_si256() };
            let v = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
            return _mm512_xor_si512(v, _mm512_set1_epi8(0x80u8 as i8));
        }
        let qs = match KIND {
            Q4_0 => 2,
            Q4_1 => 4,
            _ => 6,
        };
        // Lanes (128-bit): [qs0, qs0, qs1, qs1], then >> 4 in lanes 1 and 3, & 0xF.
        let a = _mm512_broadcast_i32x4(_mm_loadu_si128(p.add(qs) as *const __m128i));
        let v = if second {
            _mm512_mask_broadcast_i32x4(a, 0xFF00, _mm_loadu_si128(p.add(ts + qs) as *const __m128i))
        } else {
            _mm512_maskz_mov_epi64(0x0F, a)
        };
        let w = _mm512_and_si512(_mm512_srlv_epi64(v, _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0)), _mm512_set1_epi8(0xF));
        if KIND == Q5_0 {
            let h0 = std::ptr::read_unaligned(p.add(2) as *const u32) as u64;
            let h1 = if second { std::ptr::read_unaligned(p.add(ts + 2) as *const u32) as u64 } else { 0 };
            return _mm512_mask_add_epi8(w, h0 | h1 << 32, w, _mm512_set1_epi8(16));
        }
        w
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn legacy<const KIND: u8, const R: usize>(w: &[u8], xs: &[ActRow<'_>], out: &mut [f32]) {
    let ts = type_size(KIND);
    let nb = w.len() / ts;
    let xq: [*const i8; R] = std::array::from_fn(|r| xs[r].qs.as_ptr());
    let xd: [*const f32; R] = std::array::from_fn(|r| xs[r].d.as_ptr());
    let xs32: [*const f32; R] = std::array::from_fn(|r| xs[r].s32.as_ptr());
    let idx = [pair_index(0, 1), pair_index(2, 3), pair_index(4, 5), pair_index(6, 7)];
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    let mut off = [_mm256_setzero_ps(); R];
    // SAFETY: blocks `b..b + n` lie inside `w`; the activation rows are padded to whole groups
    // of 8 blocks (checked by `Kernels::quant_dot`), so every group's activation reads fit.
    unsafe {
        let wp = w.as_ptr();
        let mut b = 0;
        while b < nb {
            let n = (nb - b).min(8);
            let p = wp.add(b * ts);
            let dw = gather_f16x8(p, ts, 0, n);
            let coef = match KIND {
                Q4_0 => _mm256_mul_ps(dw, _mm256_set1_ps(-8.0)),
                Q4_1 => gather_f16x8(p, ts, 2, n),
                Q5_0 => _mm256_mul_ps(dw, _mm256_set1_ps(-16.0)),
                _ => _mm256_mul_ps(dw, _mm256_set1_ps(-128.0)),
            };
            let mut sc = [_mm512_setzero_ps(); R];
            for r in 0..R {
                sc[r] = _mm512_zextps256_ps512(_mm256_mul_ps(dw, _mm256_loadu_ps(xd[r].add(b))));
                off[r] = _mm256_fmadd_ps(coef, _mm256_loadu_ps(xs32[r].add(b)), off[r]);
            }
            if n == 8 {
                for (pi, &ix) in idx.iter().enumerate() {
                    let wv = unpack_pair::<KIND>(p.add(2 * pi * ts), true);
                    for r in 0..R {
                        acc[r][pi & 1] = step(acc[r][pi & 1], wv, xq[r].add((b + 2 * pi) * 32), sc[r], ix);
                    }
                }
            } else {
                for (pi, &ix) in idx.iter().enumerate().take(n.div_ceil(2)) {
                    let wv = unpack_pair::<KIND>(p.add(2 * pi * ts), 2 * pi + 1 < n);
                    for r in 0..R {
                        acc[r][pi & 1] = step(acc[r][pi & 1], wv, xq[r].add((b + 2 * pi) * 32), sc[r], ix);
                    }
                }
            }
            b += 8;
        }
    }
    for r in 0..R {
        out[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1])) + hsum256(off[r]);
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) fn hsum256(v: __m256) -> f32 {
    _mm512_reduce_add_ps(_mm512_zextps256_ps512(v))
}

macro_rules! entry {
    ($name:ident, $kind:expr) => {
        /// Safety: as [`super::QuantDot`] (the CPU has AVX-512 F/BW/VL/VNNI, FMA, F16C).
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
