//! Q6_K weights packed once for AVX-512 VNNI, 16 rows per zmm as in [`super::avx512_gemm`], and
//! their matmul against Q8_K activations (prefill, batched and single-row decode).
//!
//! ggml's `ggml_vec_dot_q6_K_q8_K` (and our dot kernels, see [`super::scalar`]) keep 8 integer
//! lanes per super-block: lane `l` sums `sc[2c + l/4] · Σ q·x` over values `32c + 4l .. + 4` of
//! the 8 chunks `c`, minus `32 · (bsum[2l]·sc[2l] + bsum[2l+1]·sc[2l+1])`; then
//! `acc_l = fma(d_x · d, lane, acc_l)` per super-block, and the 8 `acc_l` are summed at the end
//! (`hsum_float_8`). Here zmm lane `i` is weight row `i`, so the 8 chains of each row live in 8
//! registers, exactly as for the legacy blocks: for one lane group, `vpmaddubsw` against a
//! broadcast activation dword gives two i16 sums of 2 products for all 16 rows (6-bit unsigned
//! weights: no saturation), and `vpmaddwd` with the rows' scales (an i16 pair per dword) turns
//! them into `sc · Σ_4 q·x`. Every lane sees ggml's integers and float operations: the same
//! bits.
//!
//! # The packed layout
//! Per super-block of a group, 53 lines of 64 bytes:
//! * 32 `ql` lines: line `j` holds, in dword lane `i`, dword `j` of row `i`'s 128 `ql` bytes;
//! * 16 `qh` lines: line `32 + j`, dword `j` of the 64 `qh` bytes;
//! * the scales, byte `16s + i` = `sc_s` of row `i` (4 lines);
//! * the 16 fp16 `d` (half a line).
//!
//! That is 212 bytes per row and super-block, against GGUF's 210.

use std::arch::x86_64::*;

use super::avx512_gemm::{prefetch_ahead, transpose16, Line, GROUP};
use super::avx512_kpacked::Layout;
use crate::quant::act::ActRow;

/// Lines per super-block of a packed group.
const SB_LINES: usize = 53;
/// Activation rows per micro-kernel call.
const ROWS: usize = 4;
/// Bytes of a Q6_K block.
const BLOCK: usize = 210;
/// The first line of the `qh` bytes, of the scales and of `d` in a super-block.
const QH: usize = 32;
const SCALES: usize = 48;
const D: usize = 52;

/// This type's packed layout and kernels, for [`super::avx512_kpacked`].
pub(super) const LAYOUT: Layout =
    Layout { block: BLOCK, sb_lines: SB_LINES, rows: ROWS, pack: pack_group, run: run_rows };

/// One packed group against 1..=[`ROWS`] activation rows `xs`, writing `valid` outputs of row
/// `r` at `out + r·n` (Q6_K rounds alike in and out of groups of 4).
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
    _grouped: bool,
    prefetch: bool,
    out: *mut f32,
    n: usize,
    valid: usize,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match xs.len() {
            1 => group::<1>(lines, nsb, xs, prefetch, out, n, valid),
            2 => group::<2>(lines, nsb, xs, prefetch, out, n, valid),
            3 => group::<3>(lines, nsb, xs, prefetch, out, n, valid),
            _ => group::<4>(lines, nsb, xs, prefetch, out, n, valid),
        }
    }
}

/// Packs `valid` (1..=16) rows of `w` (`rb` bytes each, `nsb` blocks) into the group `dst`;
/// missing rows repeat the last one.
///
/// # Safety
/// The CPU has AVX-512 F/BW/VNNI; `w` holds `valid` rows; `dst` is `nsb · 53` lines.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn pack_group(w: &[u8], rb: usize, valid: usize, nsb: usize, dst: &mut [Line]) {
    debug_assert!(valid >= 1 && w.len() >= valid * rb && dst.len() == nsb * SB_LINES);
    let row: [*const u8; GROUP] = std::array::from_fn(|i| w.as_ptr().wrapping_add(i.min(valid - 1) * rb));
    // SAFETY: every read is inside block `sb` of one of the `valid` rows, every write inside the
    // super-block's 53 lines of `dst`.
    unsafe {
        for sb in 0..nsb {
            let rec = dst.as_mut_ptr().add(sb * SB_LINES);
            let blk: [*const u8; GROUP] = std::array::from_fn(|i| row[i].add(sb * BLOCK));
            // ql (128 bytes) then qh (64 bytes): dword `j` of the 192 bytes goes to line `j`.
            for u in 0..12 {
                for (l, v) in transpose16(&blk, 16 * u).into_iter().enumerate() {
                    _mm512_store_si512(rec.add(4 * u + l) as *mut __m512i, v);
                }
            }
            let scales = rec.add(SCALES) as *mut u8;
            let d = rec.add(D) as *mut u8;
            std::ptr::write_bytes(d, 0, 64);
            for (i, &b) in blk.iter().enumerate() {
                for s in 0..16 {
                    *scales.add(16 * s + i) = *b.add(192 + s);
                }
                std::ptr::copy_nonoverlapping(b.add(208), d.add(2 * i), 2);
            }
        }
    }
}

/// The micro-kernel: 16 weight rows (lanes) x `R` activation rows, over `nsb` super-blocks.
///
/// # Safety
/// As [`run_rows`], with `xs.len() == R`.
// Indexed loops over constant ranges keep the accumulators in registers.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn group<const R: usize>(
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
    let (m4, m30) = (_mm512_set1_epi8(0x0F), _mm512_set1_epi8(0x30));
    let low16 = _mm512_set1_epi32(0xFFFF);
    let mut acc = [[_mm512_setzero_ps(); R]; 8];
    // SAFETY: reads of super-block `sb < nsb` of the group and of each activation row.
    unsafe {
        for sb in 0..nsb {
            let rec = lines.as_ptr().add(sb * SB_LINES);
            if prefetch {
                prefetch_ahead(rec as *const u8, SB_LINES);
            }
            let line = |j: usize| _mm512_load_si512(rec.add(j) as *const __m512i);
            let scales = rec.add(SCALES) as *const u8;
            // Scale `s` of the 16 rows, widened to dwords, and as a pair of i16 in each dword.
            let scale = |s: usize| _mm512_cvtepi8_epi32(_mm_load_si128(scales.add(16 * s) as *const __m128i));
            let pairs: [__m512i; 16] = std::array::from_fn(|s| {
                let v = scale(s);
                _mm512_or_si512(_mm512_slli_epi32::<16>(v), _mm512_and_si512(v, low16))
            });
            let dv = _mm512_cvtph_ps(_mm256_load_si256(rec.add(D) as *const __m256i));
            let dd: [__m512; R] = std::array::from_fn(|r| _mm512_mul_ps(_mm512_set1_ps(*dx[r].add(8 * sb)), dv));
            for l in 0..8 {
                // −32 · (bsum[2l]·sc[2l] + bsum[2l+1]·sc[2l+1]) (one i16 pair multiply-add),
                // then the chunks' sums.
                let sc2 =
                    _mm512_or_si512(_mm512_and_si512(scale(2 * l), low16), _mm512_slli_epi32::<16>(scale(2 * l + 1)));
                let mut isum: [__m512i; R] = std::array::from_fn(|r| {
                    let b = _mm512_set1_epi32(std::ptr::read_unaligned(bs[r].add(16 * sb + 2 * l) as *const i32));
                    _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32::<5>(_mm512_madd_epi16(b, sc2)))
                });
                for half in 0..2 {
                    // Chunk c = 4·half + t: its low 4 bits in the low (t < 2) or high nibbles of
                    // ql dword 16·half + 8·(t % 2) + l, its top 2 bits at 2t of qh dword 8·half + l.
                    let (a, b, h) = (line(16 * half + l), line(16 * half + 8 + l), line(QH + 8 * half + l));
                    let ws = [
                        _mm512_or_si512(_mm512_and_si512(a, m4), _mm512_and_si512(_mm512_slli_epi16::<4>(h), m30)),
                        _mm512_or_si512(_mm512_and_si512(b, m4), _mm512_and_si512(_mm512_slli_epi16::<2>(h), m30)),
                        _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16::<4>(a), m4), _mm512_and_si512(h, m30)),
                        _mm512_or_si512(
                            _mm512_and_si512(_mm512_srli_epi16::<4>(b), m4),
                            _mm512_and_si512(_mm512_srli_epi16::<2>(h), m30),
                        ),
                    ];
                    for (t, &w) in ws.iter().enumerate() {
                        let c = 4 * half + t;
                        let sc = pairs[2 * c + l / 4];
                        for r in 0..R {
                            let at = q[r].add(256 * sb + 32 * c + 4 * l);
                            let x = _mm512_set1_epi32(std::ptr::read_unaligned(at as *const i32));
                            // Two i16 sums of 2 products (at most 2·63·128: no saturation),
                            // then times the scale and added in pairs: sc · Σ_4 q·x.
                            let dot = _mm512_madd_epi16(_mm512_maddubs_epi16(w, x), sc);
                            isum[r] = _mm512_add_epi32(isum[r], dot);
                        }
                    }
                }
                for r in 0..R {
                    acc[l][r] = _mm512_fmadd_ps(dd[r], _mm512_cvtepi32_ps(isum[r]), acc[l][r]);
                }
            }
        }
        let mask: __mmask16 = if valid >= GROUP { 0xFFFF } else { (1u16 << valid) - 1 };
        for r in 0..R {
            // hsum_float_8: ((a4 + a0) + (a6 + a2)) + ((a5 + a1) + (a7 + a3)).
            let s0 = _mm512_add_ps(_mm512_add_ps(acc[4][r], acc[0][r]), _mm512_add_ps(acc[6][r], acc[2][r]));
            let s1 = _mm512_add_ps(_mm512_add_ps(acc[5][r], acc[1][r]), _mm512_add_ps(acc[7][r], acc[3][r]));
            _mm512_mask_storeu_ps(out.wrapping_add(r * n), mask, _mm512_add_ps(s0, s1));
        }
    }
}
