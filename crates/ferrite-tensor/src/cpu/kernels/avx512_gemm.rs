//! AVX-512 VNNI matmul for the 32-weight blocks (Q4_0, Q4_1, Q5_0, Q8_0) against one or more
//! activation rows, rounded exactly as the dot kernels of [`super::avx512_legacy`] and ggml
//! round.
//!
//! ggml keeps, per weight row and activation row, an 8-lane f32 accumulator: lane `l` gets
//! `fma(d_w · d_x, Σ_{4 values} w·x, acc_l)` block after block, and the 8 lanes are summed at the
//! end (`hsum_float_8`). The dot kernels run that chain for one or two weight rows at a time, so
//! each block costs a scale broadcast (a permute) besides the integer dot, conversion and FMA.
//! Here the weights are laid out 16 rows at a time so that **zmm lane `i` is weight row `i`**:
//! for lane group `l` one 512-bit `vpdpbusd` gives `Σ w·x` over values `4l..4l+4` for all 16
//! rows against one broadcast activation dword, and the 8 chains of each row live in 8
//! registers (`acc[l]`). The scale `d_w · d_x` is one multiply per block for all 16 rows, the
//! final `hsum_float_8` is the same tree of vertical adds, and every lane sees exactly the
//! integers and float operations of ggml's chain: the same bits.
//!
//! Signed weights are used unsigned with an offset (Q4_0: `q`, value `q - 8`; Q5_0: `q - 16`;
//! Q8_0: `q ^ 0x80`, value `q - 128`), and `vpdpbusd` starts from `-offset · Σ_4 x` (the
//! activations' 4-value sums), which leaves exactly ggml's integers.
//!
//! # The packed layout
//! A group of 16 weight rows and `nb` blocks is a run of 64-byte lines, part after part:
//! * quants, per block 4 lines (Q8_0: 8): line `j` holds, in dword lane `i`, dword `j` of row
//!   `i`'s 16 quant bytes, nibbles as stored (low nibbles: lane group `j`, high: `j + 4`); Q8_0's
//!   line `l` holds dword `l` of the 32 quants, `^ 0x80`;
//! * the 16 fp16 scales of each block (32 bytes per block);
//! * Q4_1: the 16 fp16 mins of each block, likewise;
//! * Q5_0: per block 8 masks of 64 bits, one per lane group `l`: bit `4i + t` is the fifth bit
//!   of value `4l + t` of row `i` (added as 16 with a masked byte add).
//!
//! That is the GGUF size (plus half a line per group when `nb` is odd), so a whole matrix can
//! be kept in this layout ([`Packed`], made once from a mapped model's weights) and streamed by
//! decode with no per-call work; [`gemm`] instead packs one group at a time into scratch for
//! weights seen once. The nibbles are split in registers, once per block for up to [`ROWS`]
//! activation rows; five rows or more against 512 weight rows or more take the chunked kernel
//! of [`super::avx512_chunks`] instead (same bits).

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::avx512_chunks::{RowChunk, CHUNK_MIN_ROWS, WIDENED};
use crate::cpu::OutPtr;
use crate::quant::act::{ActRow, QuantizedActs};
use crate::{DType, Error, Result};

/// Weight rows per packed group (zmm lanes).
pub(crate) const GROUP: usize = 16;
/// Activation rows per micro-kernel call (8 accumulators each).
const ROWS: usize = 3;
pub(super) const Q4_0: u8 = 0;
pub(super) const Q4_1: u8 = 1;
pub(super) const Q5_0: u8 = 2;
pub(super) const Q8_0: u8 = 3;

/// One cache line of packed data.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(super) struct Line(pub(super) [u8; 64]);

/// How far ahead of the kernel the packed weight stream is prefetched, in bytes.
///
/// A decode matvec streams its packed weights once, from memory, in runs of a few hundred
/// KiB per thread; the hardware prefetchers ramp up anew on each 4 KiB page and leave the
/// kernel waiting on DRAM latency. Fetching the lines 4 KiB ahead, as the kernel walks
/// them, raised the matvec rate of Q4_1 576x1536 from 8.8 to 12.1 GB/s (median, 2 threads,
/// an experiment build with the distance set at run time, calls alternated in one process),
/// Q5_0 896x4864 from 9.6 to 12.3 and Q8_0 576x49152 from 14.5 to 18.3; 8 and 16 KiB ahead
/// did no better.
pub(super) const PREFETCH_AHEAD: usize = 4096;

/// Prefetches `lines` cache lines starting [`PREFETCH_AHEAD`] bytes past `p` (into L1).
#[inline(always)]
pub(super) fn prefetch_ahead(p: *const u8, lines: usize) {
    for j in 0..lines {
        let at = p.wrapping_add(PREFETCH_AHEAD + 64 * j) as *const i8;
        // SAFETY: a prefetch is a hint that never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(at) };
    }
}

/// Quant lines per block.
const fn quant_lines(kind: u8) -> usize {
    if kind == Q8_0 {
        8
    } else {
        4
    }
}

/// Lines of one packed group of `nb` blocks.
pub(super) const fn group_lines(kind: u8, nb: usize) -> usize {
    let halves = nb.div_ceil(2);
    nb * quant_lines(kind)
        + halves
        + match kind {
            Q4_1 => halves,
            Q5_0 => nb,
            _ => 0,
        }
}

/// log2 of the unsigned offset of the weights (0: none).
pub(super) const fn offset_shift(kind: u8) -> u32 {
    match kind {
        Q4_0 => 3,
        Q5_0 => 4,
        Q8_0 => 7,
        _ => 0,
    }
}

fn kind_of(dtype: DType) -> Option<u8> {
    match dtype {
        DType::Q4_0 => Some(Q4_0),
        DType::Q4_1 => Some(Q4_1),
        DType::Q5_0 => Some(Q5_0),
        DType::Q8_0 => Some(Q8_0),
        _ => None,
    }
}

/// Whether [`gemm`] and [`Packed`] run `dtype` on this CPU.
pub(crate) fn supports(dtype: DType) -> bool {
    kind_of(dtype).is_some() && super::Isa::Avx512Vnni.supported()
}

/// Checks `dtype`, the CPU and the sizes: the kind, blocks per row and bytes per row.
fn check(dtype: DType, w_len: usize, n: usize, k: usize) -> Result<(u8, usize, usize)> {
    let kind = kind_of(dtype).ok_or(Error::UnsupportedDType { dtype, op: "avx512 legacy gemm" })?;
    if !super::Isa::Avx512Vnni.supported() {
        return Err(Error::Backend("the AVX-512 legacy GEMM needs AVX-512 VNNI".into()));
    }
    let nb = k / 32;
    let rb = nb * dtype.type_size();
    if !k.is_multiple_of(32) || Some(w_len) != n.checked_mul(rb) {
        return Err(Error::shape("avx512 legacy gemm", format!("k {k}, w {w_len} bytes for {n} rows")));
    }
    Ok((kind, nb, rb))
}

/// Packs all groups of `w` (`n` rows of `rb` bytes) into `gl` lines each with
/// `pack(rows, valid, dst)`, calling `done` with each stretch of `w` (about 1 MiB) once it is
/// packed.
pub(super) fn pack_groups(
    w: &[u8],
    n: usize,
    rb: usize,
    gl: usize,
    done: &dyn Fn(&[u8]),
    mut pack: impl FnMut(&[u8], usize, &mut [Line]),
) -> Vec<Line> {
    let mut lines = vec![Line([0; 64]); n.div_ceil(GROUP) * gl];
    if gl == 0 || rb == 0 {
        return lines;
    }
    let stretch = ((1 << 20) / (GROUP * rb)).max(1);
    for (g, dst) in lines.chunks_exact_mut(gl).enumerate() {
        let valid = (n - g * GROUP).min(GROUP);
        pack(&w[g * GROUP * rb..(g * GROUP + valid) * rb], valid, dst);
        if (g + 1) % stretch == 0 {
            done(&w[(g + 1 - stretch) * GROUP * rb..(g * GROUP + valid) * rb]);
        }
    }
    lines
}

/// Splits the 16-row groups of an `n`-column output over the rayon threads (a few tasks per
/// thread); `run(state, g, valid rows, pointer to column g·16 of out's first row)` per group,
/// with one `state` per task. Each column belongs to one group, so tasks write disjoint parts.
pub(super) fn par_groups<S: Default>(n: usize, out: &mut [f32], run: impl Fn(&mut S, usize, usize, *mut f32) + Sync) {
    let groups = n.div_ceil(GROUP);
    let threads = rayon::current_num_threads().max(1);
    let per_task = groups.div_ceil(threads * 4).max(1);
    let out_ptr = OutPtr(out.as_mut_ptr());
    (0..groups.div_ceil(per_task)).into_par_iter().for_each(|t| {
        let mut state = S::default();
        for g in t * per_task..((t + 1) * per_task).min(groups) {
            run(&mut state, g, (n - g * GROUP).min(GROUP), out_ptr.get().wrapping_add(g * GROUP));
        }
    });
}

/// A whole weight matrix (`n` rows of `k` values) in the packed layout.
pub(crate) struct Packed {
    kind: u8,
    dtype: DType,
    n: usize,
    k: usize,
    lines: Vec<Line>,
}

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Packed({:?}, {}x{}, {} bytes)", self.dtype, self.n, self.k, self.size_bytes())
    }
}

impl Packed {
    /// Packs `w` (`n` rows of `k` values of `dtype`, GGUF blocks) on the calling thread.
    #[cfg(test)]
    pub(crate) fn new(w: &[u8], dtype: DType, n: usize, k: usize) -> Result<Packed> {
        Self::new_releasing(w, dtype, n, k, &|_| ())
    }

    /// `Packed::new`, calling `done` with each stretch of `w` (about 1 MiB) once it is packed.
    pub(crate) fn new_releasing(w: &[u8], dtype: DType, n: usize, k: usize, done: &dyn Fn(&[u8])) -> Result<Packed> {
        let (kind, nb, rb) = check(dtype, w.len(), n, k)?;
        let lines = pack_groups(w, n, rb, group_lines(kind, nb), done, |rows, valid, dst| {
            // SAFETY: AVX-512 VNNI was checked; `rows` holds `valid` rows of `nb` blocks and
            // `dst` one group's lines.
            unsafe { pack_group(kind, rows, rb, valid, nb, dst) }
        });
        Ok(Packed { kind, dtype, n, k, lines })
    }

    pub(crate) fn dtype(&self) -> DType {
        self.dtype
    }

    /// Weight rows.
    pub(crate) fn n(&self) -> usize {
        self.n
    }

    /// Values per row.
    pub(crate) fn k(&self) -> usize {
        self.k
    }

    /// Bytes held.
    pub(crate) fn size_bytes(&self) -> usize {
        self.lines.len() * 64
    }

    /// The starting values the kernels need for `row` (see [`matvec_groups`]).
    pub(crate) fn start_values(&self, row: &ActRow<'_>) -> Vec<Vec<i32>> {
        start_values(self.kind, std::slice::from_ref(row), self.k / 32)
    }

    /// The 16-row groups.
    pub(crate) fn groups(&self) -> usize {
        self.n.div_ceil(GROUP)
    }

    fn group(&self, g: usize) -> &[Line] {
        let gl = group_lines(self.kind, self.k / 32);
        &self.lines[g * gl..(g + 1) * gl]
    }
}

/// `-offset · Σ_4 x` per lane group of each row (the starting values of `vpdpbusd`; empty for
/// Q4_1, which has no offset).
fn start_values(kind: u8, rows: &[ActRow<'_>], nb: usize) -> Vec<Vec<i32>> {
    let shift = offset_shift(kind);
    if shift == 0 {
        return Vec::new();
    }
    rows.iter().map(|a| a.sum4[..8 * nb].iter().map(|&s| -(s << shift)).collect()).collect()
}

/// Where the groups come from: packed once, or packed per call from GGUF rows.
enum Source<'a> {
    Packed(&'a Packed),
    Raw { w: &'a [u8], rb: usize },
}

impl Source<'_> {
    /// Group `g` (`valid` rows), packed into `scratch` if need be.
    fn group<'s>(&'s self, g: usize, valid: usize, kind: u8, nb: usize, scratch: &'s mut Vec<Line>) -> &'s [Line] {
        match self {
            Source::Packed(p) => p.group(g),
            Source::Raw { w, rb } => {
                let gl = group_lines(kind, nb);
                if scratch.len() != gl {
                    *scratch = vec![Line([0; 64]); gl];
                }
                // SAFETY: the caller checked AVX-512 VNNI and the sizes; `valid` rows of group
                // `g` are inside `w`.
                unsafe { pack_group(kind, &w[g * GROUP * rb..(g * GROUP + valid) * rb], *rb, valid, nb, scratch) };
                scratch
            }
        }
    }
}

/// `out [m, n] = x [m, k] · w [n, k]ᵀ` for legacy-block weights `w` (`n` rows of whole blocks)
/// and `x` quantized in `acts` (`m` rows, the format ggml pairs with `dtype`); the same bits as
/// the dot kernels row by row. Each group of 16 weight rows is packed once per call.
pub(crate) fn gemm(acts: &QuantizedActs, w: &[u8], dtype: DType, n: usize, out: &mut [f32]) -> Result<()> {
    let (kind, nb, rb) = check(dtype, w.len(), n, acts.k())?;
    drive(acts, Source::Raw { w, rb }, kind, nb, n, out)
}

/// [`gemm`] over weights packed beforehand (`acts` quantized in the format of `p.dtype()`).
pub(crate) fn gemm_packed(acts: &QuantizedActs, p: &Packed, out: &mut [f32]) -> Result<()> {
    if acts.k() != p.k {
        return Err(Error::shape(
            "avx512 packed gemm",
            format!("activations of {} values, weights of {}", acts.k(), p.k),
        ));
    }
    drive(acts, Source::Packed(p), p.kind, p.k / 32, p.n, out)
}

/// Splits the groups over the rayon threads; each group meets every activation row.
fn drive(acts: &QuantizedActs, src: Source<'_>, kind: u8, nb: usize, n: usize, out: &mut [f32]) -> Result<()> {
    let m = acts.rows();
    if Some(out.len()) != m.checked_mul(n) {
        return Err(Error::shape("avx512 legacy gemm", format!("{m} rows of {n} outputs, out {}", out.len())));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let rows: Vec<_> = (0..m).map(|r| acts.row(r)).collect();
    // More rows than two calls of `group` take, and enough groups to repay interleaving them:
    // `group_chunk` over interleaved rows (with their own starting values).
    let chunked = m > ROWS + 1 && n >= CHUNK_MIN_ROWS;
    let chunks = if chunked { RowChunk::split(kind, &rows, nb) } else { Vec::new() };
    let starts = if chunked { Vec::new() } else { start_values(kind, &rows, nb) };
    // A group packed into scratch is in cache already; only a packed matrix is streamed.
    let stream = matches!(src, Source::Packed(_));
    par_groups(n, out, |scratch: &mut Vec<Line>, g, valid, o| {
        let lines = src.group(g, valid, kind, nb, scratch);
        // SAFETY: AVX-512 VNNI was checked when `src` was made; columns `g·16 ..
        // g·16 + valid` of every row of `out` (`m·n` long) belong to this task alone.
        unsafe {
            if chunks.is_empty() {
                run_rows(kind, lines, nb, &rows, &starts, stream, o, n, valid)
            } else {
                WIDENED.with_borrow_mut(|bytes| {
                    super::avx512_chunks::run_chunks(kind, lines, nb, &chunks, stream, o, n, valid, bytes)
                })
            }
        };
    });
    Ok(())
}

/// `out[j] = row · w_jᵀ` for the weight rows of groups `groups` of `p` (`out` holds exactly
/// those rows' outputs): one task of a fused matvec. `starts` comes from
/// [`Packed::start_values`] for the same row.
pub(crate) fn matvec_groups(
    p: &Packed,
    row: &ActRow<'_>,
    starts: &[Vec<i32>],
    groups: std::ops::Range<usize>,
    out: &mut [f32],
) -> Result<()> {
    let nb = p.k / 32;
    each_group("avx512 packed matvec", p.n, p.k, row, groups, out, |g, valid, o| {
        // SAFETY: `p` exists only where AVX-512 VNNI does; `o` holds this group's outputs.
        unsafe { run_rows(p.kind, p.group(g), nb, std::slice::from_ref(row), starts, true, o, 0, valid) }
    })
}

/// Checks one task of a fused matvec over a packed matrix of `n` rows of `k` values (`groups`
/// of it, `out` exactly their rows' outputs, `row` covering `k`), then calls
/// `run(g, valid rows, pointer to g's outputs)` per group.
pub(super) fn each_group(
    op: &'static str,
    n: usize,
    k: usize,
    row: &ActRow<'_>,
    groups: std::ops::Range<usize>,
    out: &mut [f32],
    mut run: impl FnMut(usize, usize, *mut f32),
) -> Result<()> {
    let first = groups.start * GROUP;
    let end = (groups.end * GROUP).min(n);
    if groups.end > n.div_ceil(GROUP) || out.len() != end.saturating_sub(first) || row.qs.len() < k {
        return Err(Error::shape(op, format!("groups {groups:?} of {n} rows, out {}", out.len())));
    }
    let base = out.as_mut_ptr();
    for g in groups {
        run(g, (n - g * GROUP).min(GROUP), base.wrapping_add(g * GROUP - first));
    }
    Ok(())
}

/// `$go!(KIND, $r)` with `$kind` (a runtime kind) as the constant `KIND` (the kinds named by
/// path, so that a caller without them in scope cannot turn a pattern into a binding).
macro_rules! for_kind {
    ($kind:expr, $go:ident, $r:literal) => {
        match $kind {
            $crate::cpu::kernels::avx512_gemm::Q4_0 => $go!($crate::cpu::kernels::avx512_gemm::Q4_0, $r),
            $crate::cpu::kernels::avx512_gemm::Q4_1 => $go!($crate::cpu::kernels::avx512_gemm::Q4_1, $r),
            $crate::cpu::kernels::avx512_gemm::Q5_0 => $go!($crate::cpu::kernels::avx512_gemm::Q5_0, $r),
            _ => $go!($crate::cpu::kernels::avx512_gemm::Q8_0, $r),
        }
    };
}
pub(super) use for_kind;

/// One packed group against every activation row, [`ROWS`] at a time, writing `valid` outputs
/// of row `r` at `out + r·n`. `stream`: `lines` lie in a packed matrix streamed from memory, so
/// the first run over them prefetches ahead ([`prefetch_ahead`]); a group packed into scratch
/// does not.
///
/// # Safety
/// The CPU has AVX-512 VNNI; `lines` is one packed group of `nb` blocks; every row covers `nb`
/// blocks (`starts`: `8·nb` values per row, or empty for Q4_1); the outputs are writable.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn run_rows(
    kind: u8,
    lines: &[Line],
    nb: usize,
    rows: &[ActRow<'_>],
    starts: &[Vec<i32>],
    stream: bool,
    out: *mut f32,
    n: usize,
    valid: usize,
) {
    let m = rows.len();
    let mut r0 = 0;
    while r0 < m {
        // 4 rows left: 2 + 2 rather than 3 + 1 (a single row wastes the loaded weights).
        let take = if m - r0 == ROWS + 1 { 2 } else { ROWS.min(m - r0) };
        let xs = &rows[r0..r0 + take];
        macro_rules! go {
            ($k:expr, $r:literal) => {
                group::<{ $k }, $r>(lines, nb, &Rows::<$r>::new(xs, starts, r0, out, n), stream && r0 == 0, valid)
            };
        }
        // SAFETY: forwarded from the caller.
        unsafe {
            match take {
                1 => for_kind!(kind, go, 1),
                2 => for_kind!(kind, go, 2),
                _ => for_kind!(kind, go, 3),
            }
        }
        r0 += take;
    }
}

/// Packs `valid` (1..=16) rows of `w` (`rb` bytes each, `nb` blocks) into the group `dst`;
/// missing rows repeat the last one (their lanes are computed and never stored).
///
/// # Safety
/// The CPU has AVX-512 F/BW/VNNI, F16C; `w` holds `valid` rows; `dst` is
/// `group_lines(kind, nb)` long.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn pack_group(kind: u8, w: &[u8], rb: usize, valid: usize, nb: usize, dst: &mut [Line]) {
    let ts = rb / nb;
    debug_assert!(valid >= 1 && w.len() >= valid * rb && dst.len() == group_lines(kind, nb));
    let row: [*const u8; GROUP] = std::array::from_fn(|i| w.as_ptr().wrapping_add(i.min(valid - 1) * rb));
    let base = dst.as_mut_ptr() as *mut u8;
    let ql = quant_lines(kind);
    // SAFETY: every pointer read is inside block `b` of one of the `valid` rows; every write
    // inside `dst` (quants, then 32 bytes per block of scales, then mins or masks).
    unsafe {
        let q = base as *mut __m512i;
        let scales = base.add(nb * ql * 64);
        let aux = scales.add(nb.div_ceil(2) * 64);
        for b in 0..nb {
            let blk: [*const u8; GROUP] = std::array::from_fn(|i| row[i].add(b * ts));
            // The fp16 at `off` of the 16 blocks.
            let halves = |off: usize| -> __m256i {
                let h: [u16; GROUP] = std::array::from_fn(|i| std::ptr::read_unaligned(blk[i].add(off) as *const u16));
                _mm256_loadu_si256(h.as_ptr() as *const __m256i)
            };
            _mm256_store_si256(scales.add(32 * b) as *mut __m256i, halves(0));
            match kind {
                Q8_0 => {
                    let flip = _mm512_set1_epi8(0x80u8 as i8);
                    for h in 0..2 {
                        for (l, v) in transpose16(&blk, 2 + 16 * h).into_iter().enumerate() {
                            _mm512_store_si512(q.add(8 * b + 4 * h + l), _mm512_xor_si512(v, flip));
                        }
                    }
                }
                _ => {
                    let qs = match kind {
                        Q4_0 => 2,
                        Q4_1 => 4,
                        _ => 6,
                    };
                    for (j, v) in transpose16(&blk, qs).into_iter().enumerate() {
                        _mm512_store_si512(q.add(4 * b + j), v);
                    }
                    if kind == Q4_1 {
                        _mm256_store_si256(aux.add(32 * b) as *mut __m256i, halves(2));
                    }
                    if kind == Q5_0 {
                        // Bits 4l..4l+4 of each row's qh, as nibble `i` of mask `l`.
                        let h: [i32; GROUP] =
                            std::array::from_fn(|i| std::ptr::read_unaligned(blk[i].add(2) as *const i32));
                        let qh = _mm512_loadu_si512(h.as_ptr() as *const _);
                        let nibble = _mm512_set1_epi32(0xF);
                        let pair = _mm_set1_epi16(0x1001);
                        let masks = aux as *mut u64;
                        for l in 0..8 {
                            let bits = _mm512_and_si512(_mm512_srlv_epi32(qh, _mm512_set1_epi32(4 * l as i32)), nibble);
                            // 16 nibbles, one per byte; then byte pairs `lo | hi << 4`.
                            let bytes = _mm512_cvtepi32_epi8(bits);
                            let packed = _mm_packus_epi16(_mm_maddubs_epi16(bytes, pair), _mm_setzero_si128());
                            *masks.add(8 * b + l) = _mm_cvtsi128_si64(packed) as u64;
                        }
                    }
                }
            }
        }
    }
}

/// The 16 bytes at `off` of each of the 16 blocks, as 4 vectors: vector `l` holds dword `l` of
/// block `i` in lane `i`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn transpose16(blk: &[*const u8; GROUP], off: usize) -> [__m512i; 4] {
    // SAFETY: the caller guarantees 16 readable bytes at `off` of every block.
    unsafe {
        let ld = |i: usize| _mm_loadu_si128(blk[i].add(off) as *const __m128i);
        // z[s], 128-bit lane t: block 4t + s.
        let z: [__m512i; 4] = std::array::from_fn(|s| {
            let v = _mm512_castsi128_si512(ld(s));
            let v = _mm512_inserti32x4::<1>(v, ld(4 + s));
            let v = _mm512_inserti32x4::<2>(v, ld(8 + s));
            _mm512_inserti32x4::<3>(v, ld(12 + s))
        });
        let t0 = _mm512_unpacklo_epi32(z[0], z[1]);
        let t1 = _mm512_unpackhi_epi32(z[0], z[1]);
        let t2 = _mm512_unpacklo_epi32(z[2], z[3]);
        let t3 = _mm512_unpackhi_epi32(z[2], z[3]);
        [
            _mm512_unpacklo_epi64(t0, t2),
            _mm512_unpackhi_epi64(t0, t2),
            _mm512_unpacklo_epi64(t1, t3),
            _mm512_unpackhi_epi64(t1, t3),
        ]
    }
}

/// The activation rows of one micro-kernel call, as raw pointers.
struct Rows<const R: usize> {
    q: [*const i8; R],
    d: [*const f32; R],
    s32: [*const f32; R],
    start: [*const i32; R],
    out: [*mut f32; R],
}

impl<const R: usize> Rows<R> {
    fn new(xs: &[ActRow<'_>], starts: &[Vec<i32>], r0: usize, out: *mut f32, n: usize) -> Self {
        Rows {
            q: std::array::from_fn(|r| xs[r].qs.as_ptr()),
            d: std::array::from_fn(|r| xs[r].d.as_ptr()),
            s32: std::array::from_fn(|r| xs[r].s32.as_ptr()),
            start: std::array::from_fn(|r| starts.get(r0 + r).map_or(std::ptr::null(), |v| v.as_ptr())),
            out: std::array::from_fn(|r| out.wrapping_add((r0 + r) * n)),
        }
    }
}

/// The weight bytes of lane groups `j` and `j + 4` of block `b` of a packed 4- or 5-bit group
/// (quants at `q`, Q5_0's masks at `aux`): the low and high nibbles of quant line `4·b + j`,
/// Q5_0's with its fifth bit added as 16.
///
/// # Safety
/// The CPU has AVX-512 F/BW; block `b` lies inside the group of [`pack_group`]'s layout.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn split_line(kind: u8, q: *const __m512i, aux: *const u8, b: usize, j: usize) -> (__m512i, __m512i) {
    let low = _mm512_set1_epi8(0x0F);
    // SAFETY: the caller guarantees that line `4·b + j` and block `b`'s masks are readable.
    unsafe {
        let v = _mm512_load_si512(q.add(4 * b + j));
        let lo = _mm512_and_si512(v, low);
        let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), low);
        if kind != Q5_0 {
            return (lo, hi);
        }
        let masks = aux as *const u64;
        let sixteen = _mm512_set1_epi8(16);
        (
            _mm512_mask_add_epi8(lo, _cvtu64_mask64(*masks.add(8 * b + j)), lo, sixteen),
            _mm512_mask_add_epi8(hi, _cvtu64_mask64(*masks.add(8 * b + j + 4)), hi, sixteen),
        )
    }
}

/// The micro-kernel: 16 weight rows (lanes) x `R` activation rows, over all `nb` blocks.
///
/// # Safety
/// The CPU has AVX-512 F/BW/VL/VNNI; `lines` is one group of [`pack_group`]'s layout; each
/// row of `a` covers `nb` blocks (and, but for Q4_1, `8·nb` start values); `valid` floats are
/// writable at each output pointer. `prefetch`: the first run over this group (the first rows),
/// which fetches the weight stream ahead ([`prefetch_ahead`]); later runs find it in cache.
// Indexed loops over constant ranges keep the accumulators in registers.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn group<const KIND: u8, const R: usize>(lines: &[Line], nb: usize, a: &Rows<R>, prefetch: bool, valid: usize) {
    debug_assert_eq!(lines.len(), group_lines(KIND, nb));
    let ql = quant_lines(KIND);
    // Lines per block in the whole group (quants, scales, mins, masks), for the prefetch to
    // keep pace with the stream.
    let per_block = group_lines(KIND, nb).div_ceil(nb);
    let mut acc = [[_mm512_setzero_ps(); R]; 8];
    // SAFETY: reads of block `b < nb` of the group's parts and of each activation row.
    unsafe {
        let base = lines.as_ptr() as *const u8;
        let q = base as *const __m512i;
        let scales = base.add(nb * ql * 64);
        let aux = scales.add(nb.div_ceil(2) * 64);
        for b in 0..nb {
            if prefetch {
                prefetch_ahead(base.add(b * per_block * 64), per_block);
            }
            let dw = _mm512_cvtph_ps(_mm256_load_si256(scales.add(32 * b) as *const __m256i));
            let d: [__m512; R] = std::array::from_fn(|r| _mm512_mul_ps(dw, _mm512_set1_ps(*a.d[r].add(b))));
            // Lane group `l` (weights `wl`) against every row.
            macro_rules! step {
                ($l:expr, $wl:expr) => {{
                    let (l, wl) = ($l, $wl);
                    for r in 0..R {
                        let start = if KIND == Q4_1 {
                            _mm512_setzero_si512()
                        } else {
                            _mm512_set1_epi32(*a.start[r].add(8 * b + l))
                        };
                        let x = _mm512_set1_epi32(std::ptr::read_unaligned(a.q[r].add(32 * b + 4 * l) as *const i32));
                        let dot = _mm512_dpbusd_epi32(start, wl, x);
                        acc[l][r] = _mm512_fmadd_ps(d[r], _mm512_cvtepi32_ps(dot), acc[l][r]);
                    }
                }};
            }
            if KIND == Q8_0 {
                for l in 0..8 {
                    step!(l, _mm512_load_si512(q.add(8 * b + l)));
                }
            } else {
                for j in 0..4 {
                    let (lo, hi) = split_line(KIND, q, aux, b, j);
                    step!(j, lo);
                    step!(j + 4, hi);
                }
            }
        }
        finish::<KIND, R>(&acc, aux, nb, |b, r| *a.s32[r].add(b), a.out, valid);
    }
}

/// Adds up each row's 8 lane accumulators as ggml's `hsum_float_8` does, plus (Q4_1) the
/// mins' chain (`s32(b, r)`: row `r`'s `d · Σ q` of block `b`), and stores the `valid` outputs
/// of each row at `out[r]`.
///
/// # Safety
/// `aux` points at the group's Q4_1 mins (unused for the other kinds); `s32` reads inside its
/// row; `valid` floats are writable at each output pointer.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
pub(super) unsafe fn finish<const KIND: u8, const R: usize>(
    acc: &[[__m512; R]; 8],
    aux: *const u8,
    nb: usize,
    s32: impl Fn(usize, usize) -> f32,
    out: [*mut f32; R],
    valid: usize,
) {
    // SAFETY: reads of the `nb` blocks' mins and of each row's sums; `valid` writable outputs.
    unsafe {
        // ggml's scalar `summs = fma(m, s, summs)`, block by block: a chain of its own, run
        // after the quants so that its registers do not crowd the accumulators'.
        let mut summs = [_mm512_setzero_ps(); R];
        if KIND == Q4_1 {
            for b in 0..nb {
                let mv = _mm512_cvtph_ps(_mm256_load_si256(aux.add(32 * b) as *const __m256i));
                for r in 0..R {
                    summs[r] = _mm512_fmadd_ps(mv, _mm512_set1_ps(s32(b, r)), summs[r]);
                }
            }
        }
        let mask: __mmask16 = if valid >= GROUP { 0xFFFF } else { (1u16 << valid) - 1 };
        for r in 0..R {
            // hsum_float_8: ((a4 + a0) + (a6 + a2)) + ((a5 + a1) + (a7 + a3)), then `+ summs`.
            let s0 = _mm512_add_ps(_mm512_add_ps(acc[4][r], acc[0][r]), _mm512_add_ps(acc[6][r], acc[2][r]));
            let s1 = _mm512_add_ps(_mm512_add_ps(acc[5][r], acc[1][r]), _mm512_add_ps(acc[7][r], acc[3][r]));
            let v = _mm512_add_ps(_mm512_add_ps(s0, s1), summs[r]);
            _mm512_mask_storeu_ps(out[r], mask, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::cpu::kernels::tests::random_blocks;
    use crate::cpu::kernels::{Isa, Kernels};
    use crate::quant::act::ActFormat;

    /// Every output equals the AVX-512 dot kernel's for the same row, bit for bit, for all four
    /// block types, partial groups, odd block counts, odd row counts and 1..3 threads, through
    /// both the per-call packing and the packed matrix.
    #[test]
    fn gemm_gives_the_dot_kernels_bits() {
        let Some(kern) = Kernels::for_isa(Isa::Avx512Vnni) else {
            eprintln!("skipped: this CPU has no AVX-512 VNNI");
            return;
        };
        let mut rng = StdRng::seed_from_u64(21);
        for dtype in [DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q8_0] {
            for (k, n) in [(64usize, 16usize), (576, 37), (96, 5), (1536, 50), (96, 517)] {
                let w = random_blocks(dtype, n * k / 32, &mut rng);
                let rb = w.len() / n;
                let packed = Packed::new(&w, dtype, n, k).expect("pack");
                assert_eq!(packed.size_bytes(), n.div_ceil(16) * group_lines(kind_of(dtype).unwrap(), k / 32) * 64);
                for m in [1usize, 2, 3, 4, 5, 7, 9, 16] {
                    let mut x: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
                    // Some zero blocks and huge values too.
                    x[..32].fill(0.0);
                    if m * k > 64 {
                        x[40] = 1e4;
                    }
                    let mut acts = QuantizedActs::new();
                    acts.quantize(&x, k, ActFormat::for_weights(dtype).expect("format")).expect("quantize");
                    let mut want = vec![0f32; m * n];
                    for r in 0..m {
                        kern.quant_dot(dtype, &w, rb, &[acts.row(r)], &mut want[r * n..(r + 1) * n], 1).expect("dot");
                    }
                    for threads in [1usize, 3] {
                        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
                        for via_packed in [false, true] {
                            let mut out = vec![f32::NAN; m * n];
                            pool.install(|| {
                                if via_packed {
                                    gemm_packed(&acts, &packed, &mut out)
                                } else {
                                    gemm(&acts, &w, dtype, n, &mut out)
                                }
                            })
                            .expect("gemm");
                            for (j, (o, e)) in out.iter().zip(&want).enumerate() {
                                assert_eq!(
                                    o.to_bits(),
                                    e.to_bits(),
                                    "{dtype:?} k {k} n {n} m {m} packed {via_packed} at {j}: {o} vs {e}",
                                );
                            }
                        }
                    }
                    // The fused matvec's pieces: any split of the groups gives the same bits.
                    let row = acts.row(0);
                    let starts = packed.start_values(&row);
                    let mut out = vec![f32::NAN; n];
                    let split = packed.groups() / 2;
                    let (a, b) = out.split_at_mut((split * 16).min(n));
                    matvec_groups(&packed, &row, &starts, 0..split, a).expect("first groups");
                    matvec_groups(&packed, &row, &starts, split..packed.groups(), b).expect("last groups");
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&out), bits(&want[..n]), "{dtype:?} k {k} n {n}: matvec_groups");
                }
            }
        }
    }

    /// Packing reports the stretches it has read, in order, back to back from the start, and
    /// gives the same matrix as packing without reports.
    #[test]
    fn packing_reports_what_it_has_read() {
        if !supports(DType::Q8_0) {
            eprintln!("skipped: this CPU has no AVX-512 VNNI");
            return;
        }
        let (n, k) = (2000, 1024);
        let w = random_blocks(DType::Q8_0, n * k / 32, &mut StdRng::seed_from_u64(4));
        let seen = std::sync::Mutex::new(Vec::new());
        let base = w.as_ptr() as usize;
        let p = Packed::new_releasing(&w, DType::Q8_0, n, k, &|part: &[u8]| {
            seen.lock().unwrap().push((part.as_ptr() as usize - base, part.len()))
        })
        .expect("pack");
        // 1 MiB / (16 rows of 1088 bytes) = 60 groups per stretch; 125 groups in all.
        let stretch = 60 * 16 * 1088;
        assert_eq!(*seen.lock().unwrap(), vec![(0, stretch), (stretch, stretch)]);
        let q = Packed::new(&w, DType::Q8_0, n, k).expect("pack");
        assert!(p.lines.iter().zip(&q.lines).all(|(a, b)| a.0 == b.0));
    }

    #[test]
    fn bad_shapes_are_errors() {
        if !supports(DType::Q8_0) {
            eprintln!("skipped: this CPU has no AVX-512 VNNI");
            return;
        }
        let mut acts = QuantizedActs::new();
        acts.quantize(&[0.5; 64], 32, ActFormat::Q8_0).expect("quantize");
        let w = vec![0u8; 34 * 3];
        let mut out = vec![0f32; 6];
        assert!(gemm(&acts, &w, DType::Q8_0, 3, &mut out).is_ok());
        assert!(gemm(&acts, &w[..60], DType::Q8_0, 3, &mut out).is_err());
        assert!(gemm(&acts, &w, DType::Q8_0, 3, &mut out[..5]).is_err());
        assert!(gemm(&acts, &w, DType::Q4_K, 3, &mut out).is_err());
        assert!(Packed::new(&w, DType::Q8_0, 3, 64).is_err());
        assert!(Packed::new(&w, DType::Q4_K, 3, 32).is_err());
        let p = Packed::new(&w, DType::Q8_0, 3, 32).expect("pack");
        assert!(gemm_packed(&acts, &p, &mut out).is_ok());
        assert!(gemm_packed(&acts, &p, &mut out[..4]).is_err());
        let row = acts.row(0);
        let starts = p.start_values(&row);
        assert!(matvec_groups(&p, &row, &starts, 0..1, &mut out[..3]).is_ok());
        assert!(matvec_groups(&p, &row, &starts, 0..1, &mut out[..2]).is_err());
        assert!(matvec_groups(&p, &row, &starts, 0..2, &mut out[..3]).is_err());
    }
}
