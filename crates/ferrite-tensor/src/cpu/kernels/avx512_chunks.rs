//! The AVX-512 VNNI GEMM of [`super::avx512_gemm`] for five activation rows or more against
//! 512 weight rows or more: the rows are interleaved once per call in chunks of [`BYTE_ROWS`]
//! ([`RowChunk`]), so that the kernel finds each value from one pointer, and each packed
//! group of 4- or 5-bit weights is widened to bytes once for all the chunks
//! ([`widen_group`]). The kernel ([`group_chunk`]) runs the lane groups 0-3 and 4-7 in two
//! passes over the blocks, so that 4 rows' accumulators stay in registers; every accumulator
//! sees ggml's chain, as in [`super::avx512_gemm`]: the same bits.

use std::arch::x86_64::*;

use super::avx512_gemm::{finish, for_kind, group_lines, offset_shift, prefetch_ahead, split_line, Line, Q4_1, Q8_0};
use crate::quant::act::ActRow;

/// Activation rows per call of [`group_chunk`] (4 accumulators each per pass).
const BYTE_ROWS: usize = 4;
/// Weight rows from which [`group_chunk`] runs (for 5 activation rows or more): interleaving
/// the activations and widening each group cost about as much as they saved at 192 rows
/// (576 x 192 Q4_1, 16 rows: 12% slower, median of 8 alternated runs; 9-11% faster at 576 and
/// 1536 rows).
pub(super) const CHUNK_MIN_ROWS: usize = 512;

/// Up to [`BYTE_ROWS`] activation rows interleaved for [`group_chunk`]: value `(b, l, r)` of
/// each array at `(8·b + l)·R + r` (per block: `b·R + r`), `R` the chunk's rows.
pub(super) struct RowChunk {
    /// First row.
    row0: usize,
    rows: usize,
    /// Dword `l` (values `4l..4l+4`) of block `b` of each row.
    x: Vec<i32>,
    /// The starting values of `vpdpbusd` (empty for Q4_1).
    start: Vec<i32>,
    /// The rows' block scales.
    d: Vec<f32>,
    /// Q4_1: the rows' `d · Σ q` per block (else empty).
    s32: Vec<f32>,
}

impl RowChunk {
    /// The rows in chunks of [`BYTE_ROWS`] (one more than a chunk takes: two of about half).
    pub(super) fn split(kind: u8, rows: &[ActRow<'_>], nb: usize) -> Vec<RowChunk> {
        let shift = offset_shift(kind);
        let mut chunks = Vec::new();
        let mut row0 = 0;
        while row0 < rows.len() {
            let left = rows.len() - row0;
            let r = if left == BYTE_ROWS + 1 { left / 2 } else { BYTE_ROWS.min(left) };
            let xs = &rows[row0..row0 + r];
            let dword = |a: &ActRow<'_>, t: usize| {
                let q = &a.qs[4 * t..4 * t + 4];
                i32::from_le_bytes([q[0] as u8, q[1] as u8, q[2] as u8, q[3] as u8])
            };
            let c = RowChunk {
                row0,
                rows: r,
                x: (0..8 * nb).flat_map(|t| xs.iter().map(move |a| dword(a, t))).collect(),
                // `-offset · Σ_4 x`, as `avx512_gemm`'s `start_values` gives them.
                start: if shift == 0 {
                    Vec::new()
                } else {
                    (0..8 * nb).flat_map(|t| xs.iter().map(move |a| -(a.sum4[t] << shift))).collect()
                },
                d: (0..nb).flat_map(|b| xs.iter().map(move |a| a.d[b])).collect(),
                s32: if kind == Q4_1 {
                    (0..nb).flat_map(|b| xs.iter().map(move |a| a.s32[b])).collect()
                } else {
                    Vec::new()
                },
            };
            chunks.push(c);
            row0 += r;
        }
        chunks
    }
}

/// One packed group against every chunk of activation rows through [`group_chunk`], writing
/// `valid` outputs of row `r` at `out + r·n`. The 4- and 5-bit weights are first widened to
/// bytes in `bytes` ([`widen_group`]), once for all the chunks; Q8_0's are bytes already.
/// `stream`: as for [`super::avx512_gemm`]'s `run_rows`.
///
/// # Safety
/// As for `avx512_gemm`'s `run_rows`; `chunks` come from [`RowChunk::split`] for this kind and `nb`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn run_chunks(
    kind: u8,
    lines: &[Line],
    nb: usize,
    chunks: &[RowChunk],
    stream: bool,
    out: *mut f32,
    n: usize,
    valid: usize,
    bytes: &mut Vec<Line>,
) {
    let (lines, stream) = if kind == Q8_0 {
        (lines, stream)
    } else {
        let len = byte_group_lines(kind, nb);
        if bytes.len() < len {
            bytes.resize(len, Line([0; 64]));
        }
        // SAFETY: forwarded from the caller; `bytes` has the widened group's length.
        unsafe { widen_group(kind, lines, nb, stream, &mut bytes[..len]) };
        (&bytes[..len], false)
    };
    for (i, c) in chunks.iter().enumerate() {
        let prefetch = stream && i == 0;
        let o = out.wrapping_add(c.row0 * n);
        macro_rules! go {
            ($k:expr, $r:literal) => {
                group_chunk::<{ $k }, $r>(lines, nb, c, o, n, prefetch, valid)
            };
        }
        // SAFETY: forwarded from the caller.
        unsafe {
            match c.rows {
                1 => for_kind!(kind, go, 1),
                2 => for_kind!(kind, go, 2),
                3 => for_kind!(kind, go, 3),
                _ => for_kind!(kind, go, 4),
            }
        }
    }
}

/// The micro-kernel over byte lines (8 per block: Q8_0's packed group, or a group widened by
/// [`widen_group`]) against the `R` interleaved rows of chunk `c` (row `r`'s outputs at
/// `out + r·n`): two passes over the blocks, lane groups 0-3 then 4-7, so that the
/// accumulators stay in registers, and each row's values are found from one pointer. Each
/// accumulator sees the same chain as in `avx512_gemm`'s `group`: the same bits. `prefetch`: `lines` lie in a
/// packed matrix streamed from memory, and this is the first run over them.
///
/// # Safety
/// The CPU has AVX-512 F/BW/VL/VNNI; `lines` holds `nb` blocks of 8 byte lines, then the
/// scales (and Q4_1's mins) as in `avx512_gemm`'s `pack_group`; `c` has `R` rows of `nb` blocks (made by
/// [`RowChunk::split`] for this kind); `valid` floats are writable at each row's outputs.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn group_chunk<const KIND: u8, const R: usize>(
    lines: &[Line],
    nb: usize,
    c: &RowChunk,
    out: *mut f32,
    n: usize,
    prefetch: bool,
    valid: usize,
) {
    debug_assert!(c.rows == R && c.x.len() == 8 * nb * R && c.d.len() == nb * R);
    debug_assert!(KIND == Q4_1 || c.start.len() == 8 * nb * R);
    debug_assert_eq!(lines.len(), byte_group_lines(KIND, nb));
    let per_block = lines.len().div_ceil(nb.max(1));
    let (xp, sp, dp) = (c.x.as_ptr(), c.start.as_ptr(), c.d.as_ptr());
    // SAFETY: reads of block `b < nb` of the group's parts and of the chunk's arrays.
    unsafe {
        let base = lines.as_ptr() as *const u8;
        let q = base as *const __m512i;
        let scales = base.add(nb * 8 * 64);
        let aux = scales.add(nb.div_ceil(2) * 64);
        // One pass over the blocks for lane groups `4·half .. 4·half + 4`.
        macro_rules! pass {
            ($half:literal) => {{
                let mut part = [[_mm512_setzero_ps(); R]; 4];
                for b in 0..nb {
                    if prefetch && $half == 0 {
                        prefetch_ahead(base.add(b * per_block * 64), per_block);
                    }
                    let dw = _mm512_cvtph_ps(_mm256_load_si256(scales.add(32 * b) as *const __m256i));
                    let d: [__m512; R] = std::array::from_fn(|r| _mm512_mul_ps(dw, _mm512_set1_ps(*dp.add(b * R + r))));
                    for j in 0..4 {
                        let l = 4 * $half + j;
                        let wl = _mm512_load_si512(q.add(8 * b + l));
                        for r in 0..R {
                            let at = (8 * b + l) * R + r;
                            let start =
                                if KIND == Q4_1 { _mm512_setzero_si512() } else { _mm512_set1_epi32(*sp.add(at)) };
                            let dot = _mm512_dpbusd_epi32(start, wl, _mm512_set1_epi32(*xp.add(at)));
                            part[j][r] = _mm512_fmadd_ps(d[r], _mm512_cvtepi32_ps(dot), part[j][r]);
                        }
                    }
                }
                part
            }};
        }
        // The first pass's sums wait in memory, not in registers the second pass needs.
        let first = std::hint::black_box(pass!(0));
        let second = pass!(1);
        let acc: [[__m512; R]; 8] = std::array::from_fn(|l| if l < 4 { first[l] } else { second[l - 4] });
        let outs = std::array::from_fn(|r| out.wrapping_add(r * n));
        finish::<KIND, R>(&acc, aux, nb, |b, r| c.s32[b * R + r], outs, valid);
    }
}

/// Lines of one group as [`group_chunk`] reads it: 8 byte lines per block, then the scales
/// and (Q4_1) mins as in the packed group. Q8_0's packed group is this already.
const fn byte_group_lines(kind: u8, nb: usize) -> usize {
    let halves = nb.div_ceil(2);
    nb * 8 + halves + if kind == Q4_1 { halves } else { 0 }
}

/// Widens packed group `lines` of a 4- or 5-bit kind into `dst` (`byte_group_lines` long):
/// per block line `l` holds the weight bytes of lane group `l` as `avx512_gemm`'s `group` splits them ([`split_line`]) (low
/// nibbles for `l < 4`, high for the rest; Q5_0 with its fifth bit added); the scales and mins
/// are copied. `prefetch`: fetch the packed stream ahead ([`prefetch_ahead`]).
///
/// # Safety
/// The CPU has AVX-512 F/BW; `lines` is one packed group of `nb` blocks of `kind` (not Q8_0).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn widen_group(kind: u8, lines: &[Line], nb: usize, prefetch: bool, dst: &mut [Line]) {
    assert!(kind != Q8_0 && lines.len() == group_lines(kind, nb) && dst.len() == byte_group_lines(kind, nb));
    let per_block = group_lines(kind, nb).div_ceil(nb);
    // SAFETY: reads inside the packed group, writes inside `dst` (lengths asserted above).
    unsafe {
        let base = lines.as_ptr() as *const u8;
        let q = base as *const __m512i;
        let aux = base.add(nb * 4 * 64 + nb.div_ceil(2) * 64);
        let wq = dst.as_mut_ptr() as *mut __m512i;
        for b in 0..nb {
            if prefetch {
                prefetch_ahead(base.add(b * per_block * 64), per_block);
            }
            for j in 0..4 {
                let (lo, hi) = split_line(kind, q, aux, b, j);
                _mm512_store_si512(wq.add(8 * b + j), lo);
                _mm512_store_si512(wq.add(8 * b + j + 4), hi);
            }
        }
    }
    // The scales, then Q4_1's mins, follow the quants in both layouts.
    let tail = nb.div_ceil(2) * if kind == Q4_1 { 2 } else { 1 };
    dst[nb * 8..].copy_from_slice(&lines[nb * 4..nb * 4 + tail]);
}

thread_local! {
    /// Each thread's group widened by [`widen_group`] for [`run_chunks`], kept between calls.
    pub(super) static WIDENED: std::cell::RefCell<Vec<Line>> = const { std::cell::RefCell::new(Vec::new()) };
}
