//! Q4_K weights packed once for AVX-512 VNNI, 16 rows per zmm as in [`super::avx512_gemm`], and
//! their matmul against Q8_K activations (prefill, batched and single-row decode).
//!
//! Per super-block of 256 values a row's result is
//! `d·d_x·Σ_j sc_j·(Σ_32 q·x) − dmin·d_x·Σ_j m_j·bsum_j` over its 8 sub-blocks `j`. With lane
//! `i` = weight row `i`, one `vpdpbusd` gives 4 values of a sub-block for all 16 rows (the
//! nibbles are unsigned, so no offset), 8 of them a sub-block's integer dot; the 6-bit scales
//! and mins, unpacked at packing time to one byte per row, multiply in 32-bit integers (exact),
//! and the two terms are one FMA each per activation row, rounded as the dot kernels of
//! [`super::avx512_kquants`] (llama.cpp's repacked Q4_K kernels) round: per super-block for a
//! single row (`ggml_gemv_q4_K_8x8_q8_K`), per 64 values for rows in groups of 4
//! (`ggml_gemm_q4_K_8x8_q8_K`). [`gemm`] gives rows `0 .. 4·⌊m/4⌋` the latter and the rest
//! the former, as the row-group matmul of the dot kernels does: the same bits.
//!
//! # The packed layout
//! Per super-block of a group, 37 lines of 64 bytes:
//! * 32 quant lines: line `8p + t` holds, in dword lane `i`, dword `t` of row `i`'s 32 quant
//!   bytes of chunk `p` (low nibbles: sub-block `2p`, values `4t..4t+4`; high: sub-block `2p+1`);
//! * the 16 fp16 `d`, then the 16 fp16 `dmin` (one line);
//! * the scales, byte `16j + i` = `sc_j` of row `i` (2 lines); the mins likewise (2 lines).
//!
//! That is 148 bytes per row and super-block, against GGUF's 144.

use std::arch::x86_64::*;

use super::avx512_gemm::{prefetch_ahead, transpose16, Line, GROUP};
use super::avx512_kpacked::Layout;
use crate::quant::act::ActRow;
use crate::quant::blocks::get_scale_min_k4;

/// Lines per super-block of a packed group.
const SB_LINES: usize = 37;
/// Activation rows per micro-kernel call.
const ROWS: usize = 3;
/// Bytes of a Q4_K block.
const BLOCK: usize = 144;

/// This type's packed layout and kernels, for [`super::avx512_kpacked`].
pub(super) const LAYOUT: Layout =
    Layout { block: BLOCK, sb_lines: SB_LINES, rows: ROWS, pack: pack_group, run: run_rows };

/// One packed group against 1..=[`ROWS`] activation rows `xs`, writing `valid` outputs of row
/// `r` at `out + r·n`; rows of a group of 4 (`grouped`) round per 64 values, the others per
/// super-block.
///
/// # Safety
/// The CPU has AVX-512 VNNI; `lines` is one packed group of `nsb` super-blocks; every row covers
/// them; the outputs are writable.
// The arguments of `GroupKernel`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn run_rows(
    lines: &[Line],
    nsb: usize,
    xs: &[ActRow<'_>],
    grouped: bool,
    prefetch: bool,
    out: *mut f32,
    n: usize,
    valid: usize,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match (xs.len(), grouped) {
            (1, false) => group::<1, false>(lines, nsb, xs, prefetch, out, n, valid),
            (2, false) => group::<2, false>(lines, nsb, xs, prefetch, out, n, valid),
            (_, false) => group::<3, false>(lines, nsb, xs, prefetch, out, n, valid),
            (1, true) => group::<1, true>(lines, nsb, xs, prefetch, out, n, valid),
            (2, true) => group::<2, true>(lines, nsb, xs, prefetch, out, n, valid),
            (_, true) => group::<3, true>(lines, nsb, xs, prefetch, out, n, valid),
        }
    }
}

/// Packs `valid` (1..=16) rows of `w` (`rb` bytes each, `nsb` blocks) into the group `dst`;
/// missing rows repeat the last one.
///
/// # Safety
/// The CPU has AVX-512 F/BW/VNNI; `w` holds `valid` rows; `dst` is `nsb · 37` lines.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn pack_group(w: &[u8], rb: usize, valid: usize, nsb: usize, dst: &mut [Line]) {
    debug_assert!(valid >= 1 && w.len() >= valid * rb && dst.len() == nsb * SB_LINES);
    let row: [*const u8; GROUP] = std::array::from_fn(|i| w.as_ptr().wrapping_add(i.min(valid - 1) * rb));
    // SAFETY: every read is inside block `sb` of one of the `valid` rows, every write inside the
    // super-block's 37 lines of `dst`.
    unsafe {
        for sb in 0..nsb {
            let rec = dst.as_mut_ptr().add(sb * SB_LINES) as *mut u8;
            let blk: [*const u8; GROUP] = std::array::from_fn(|i| row[i].add(sb * BLOCK));
            for p in 0..4 {
                for h in 0..2 {
                    for (l, v) in transpose16(&blk, 16 + 32 * p + 16 * h).into_iter().enumerate() {
                        _mm512_store_si512((rec as *mut __m512i).add(8 * p + 4 * h + l), v);
                    }
                }
            }
            let dm = rec.add(32 * 64);
            for (i, &b) in blk.iter().enumerate() {
                std::ptr::copy_nonoverlapping(b, dm.add(2 * i), 2);
                std::ptr::copy_nonoverlapping(b.add(2), dm.add(32 + 2 * i), 2);
                let scales: [u8; 12] = std::ptr::read_unaligned(b.add(4) as *const [u8; 12]);
                for j in 0..8 {
                    let (sc, mn) = get_scale_min_k4(j, &scales);
                    *dm.add(64 + 16 * j + i) = sc;
                    *dm.add(192 + 16 * j + i) = mn;
                }
            }
        }
    }
}

/// The micro-kernel: 16 weight rows (lanes) x `R` activation rows, over `nsb` super-blocks;
/// the float sums take each 64-value chunk (`CHUNKED`) or each super-block.
///
/// # Safety
/// As [`run_rows`], with `xs.len() == R`.
// Indexed loops over constant ranges keep the accumulators in registers.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn group<const R: usize, const CHUNKED: bool>(
    lines: &[Line],
    nsb: usize,
    xs: &[ActRow<'_>],
    prefetch: bool,
    out: *mut f32,
    n: usize,
    valid: usize,
) {
    debug_assert!(xs.len() == R && lines.len() == nsb * SB_LINES);
    let q: [*const i8; R] = std::array::from_fn(|r| xs[r].qs.as_ptr());
    let dx: [*const f32; R] = std::array::from_fn(|r| xs[r].d.as_ptr());
    let bs: [*const i16; R] = std::array::from_fn(|r| xs[r].bsums.as_ptr());
    let low = _mm512_set1_epi8(0x0F);
    let mut acc = [_mm512_setzero_ps(); R];
    let mut accm = [_mm512_setzero_ps(); R];
    // SAFETY: reads of super-block `sb < nsb` of the group and of each activation row.
    unsafe {
        for sb in 0..nsb {
            let rec = lines.as_ptr().add(sb * SB_LINES) as *const u8;
            if prefetch {
                prefetch_ahead(rec, SB_LINES);
            }
            let ql = rec as *const __m512i;
            let dm = rec.add(32 * 64);
            let dv = _mm512_cvtph_ps(_mm256_load_si256(dm as *const __m256i));
            let mv = _mm512_cvtph_ps(_mm256_load_si256(dm.add(32) as *const __m256i));
            // `d·d_x` and `dmin·d_x` per activation row.
            let dd: [__m512; R] = std::array::from_fn(|r| _mm512_mul_ps(dv, _mm512_set1_ps(*dx[r].add(8 * sb))));
            let dmn: [__m512; R] = std::array::from_fn(|r| _mm512_mul_ps(mv, _mm512_set1_ps(*dx[r].add(8 * sb))));
            let mut isum = [_mm512_setzero_si512(); R];
            let mut msum = [_mm512_setzero_si512(); R];
            for p in 0..4 {
                let mut lo_dot = [_mm512_setzero_si512(); R];
                let mut hi_dot = [_mm512_setzero_si512(); R];
                for t in 0..8 {
                    let v = _mm512_load_si512(ql.add(8 * p + t));
                    let lo = _mm512_and_si512(v, low);
                    let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), low);
                    for r in 0..R {
                        let at = q[r].add(256 * sb + 64 * p + 4 * t);
                        let xl = _mm512_set1_epi32(std::ptr::read_unaligned(at as *const i32));
                        let xh = _mm512_set1_epi32(std::ptr::read_unaligned(at.add(32) as *const i32));
                        lo_dot[r] = _mm512_dpbusd_epi32(lo_dot[r], lo, xl);
                        hi_dot[r] = _mm512_dpbusd_epi32(hi_dot[r], hi, xh);
                    }
                }
                let widen = |off: usize| _mm512_cvtepu8_epi32(_mm_load_si128(dm.add(off) as *const __m128i));
                let (s_lo, s_hi) = (widen(64 + 32 * p), widen(64 + 32 * p + 16));
                let (m_lo, m_hi) = (widen(192 + 32 * p), widen(192 + 32 * p + 16));
                for r in 0..R {
                    let b = bs[r].add(16 * sb + 4 * p);
                    let b_lo = _mm512_set1_epi32(*b as i32 + *b.add(1) as i32);
                    let b_hi = _mm512_set1_epi32(*b.add(2) as i32 + *b.add(3) as i32);
                    isum[r] = _mm512_add_epi32(
                        isum[r],
                        _mm512_add_epi32(_mm512_mullo_epi32(s_lo, lo_dot[r]), _mm512_mullo_epi32(s_hi, hi_dot[r])),
                    );
                    msum[r] = _mm512_add_epi32(
                        msum[r],
                        _mm512_add_epi32(_mm512_mullo_epi32(m_lo, b_lo), _mm512_mullo_epi32(m_hi, b_hi)),
                    );
                    if CHUNKED {
                        acc[r] = _mm512_fmadd_ps(dd[r], _mm512_cvtepi32_ps(isum[r]), acc[r]);
                        accm[r] = _mm512_fmadd_ps(dmn[r], _mm512_cvtepi32_ps(msum[r]), accm[r]);
                        isum[r] = _mm512_setzero_si512();
                        msum[r] = _mm512_setzero_si512();
                    }
                }
            }
            if !CHUNKED {
                for r in 0..R {
                    acc[r] = _mm512_fmadd_ps(dd[r], _mm512_cvtepi32_ps(isum[r]), acc[r]);
                    accm[r] = _mm512_fmadd_ps(dmn[r], _mm512_cvtepi32_ps(msum[r]), accm[r]);
                }
            }
        }
        let mask: __mmask16 = if valid >= GROUP { 0xFFFF } else { (1u16 << valid) - 1 };
        for r in 0..R {
            _mm512_mask_storeu_ps(out.wrapping_add(r * n), mask, _mm512_sub_ps(acc[r], accm[r]));
        }
    }
}
