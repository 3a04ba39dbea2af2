//! AVX2 dot products for Q4_0, Q4_1, Q5_0, Q8_0 (CPUs without AVX-512 VNNI), rounded as
//! ggml's kernels (see [`super::scalar`]), which are themselves AVX2 code: one 32-weight block
//! per step, `vpmaddubsw` + `vpmaddwd` into 8 i32 lanes (lane `l`: values `4l..4l+4`), then
//! `fma(d_w · d_x, lane, acc)`. Q4_0/Q5_0 weights go in unsigned and their offset times the
//! activations' 4-value sums is subtracted per lane; Q8_0 uses the sign trick
//! (`|w| · sign(x, w)`) as ggml does.
//!
//! With several activation rows (prefill, batched decode) [`legacy_pair`] takes a tile of two
//! weight rows × up to 4 activation rows: each weight block is unpacked once per tile, the
//! activation block and its offset once per pair of weight rows, and the scale products
//! `d_w · d_x` are computed up to 64 blocks at a time into a table that the FMAs broadcast from
//! (before the block loop, so that loop keeps its accumulators in registers).

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::UnpackedRows;
use crate::quant::act::ActRow;

const Q4_0: u8 = 0;
const Q4_1: u8 = 1;
const Q5_0: u8 = 2;
const Q8_0: u8 = 3;

/// Blocks per scale table of [`legacy_pair`] (a multiple of 8).
const TABLE: usize = 64;

const fn type_size(kind: u8) -> usize {
    match kind {
        Q4_0 => 18,
        Q4_1 => 20,
        Q5_0 => 22,
        _ => 34,
    }
}

/// The f16 at `p` as f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees 2 readable bytes.
    let h = unsafe { std::ptr::read_unaligned(p as *const u16) };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
}

/// Horizontal sum of 8 lanes (for the float kernels).
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
    let shift = _mm_cvtsi32_si128(match KIND {
        Q4_0 => 3,
        Q5_0 => 4,
        _ => 0,
    });
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); R];
    let mut summs = [0f32; R];
    // SAFETY: block `b` lies inside `w`; activation rows cover every block (checked by
    // `Kernels::quant_dot`).
    unsafe {
        for b in 0..nb {
            let p = w.as_ptr().add(b * ts);
            let dw = f16_at(p);
            if KIND == Q4_1 {
                // ggml's scalar `summs = fma(m, s, summs)`, block by block.
                let m = f16_at(p.add(2));
                for r in 0..R {
                    summs[r] = m.mul_add(xs[r].s32[b], summs[r]);
                }
            }
            let wv = unpack::<KIND>(p);
            for r in 0..R {
                let xv = _mm256_loadu_si256(xs[r].qs.as_ptr().add(32 * b) as *const __m256i);
                let dot = if KIND == Q8_0 {
                    _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv)), ones)
                } else {
                    let d = _mm256_madd_epi16(_mm256_maddubs_epi16(wv, xv), ones);
                    if KIND == Q4_1 {
                        d
                    } else {
                        let s4 = _mm256_loadu_si256(xs[r].sum4.as_ptr().add(8 * b) as *const __m256i);
                        _mm256_sub_epi32(d, _mm256_sll_epi32(s4, shift))
                    }
                };
                let dd = _mm256_set1_ps(dw * xs[r].d[b]);
                acc[r] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(dot), acc[r]);
            }
        }
    }
    for r in 0..R {
        let mut a = [0f32; 8];
        // SAFETY: `a` holds 8 f32.
        unsafe { _mm256_storeu_ps(a.as_mut_ptr(), acc[r]) };
        out[r] = super::scalar::hsum8(&a) + summs[r];
    }
}

/// The fp16 values at `p + off + i·ts` for `i < n` (zero for `n <= i < 8`) as 8 f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16x8(p: *const u8, ts: usize, off: usize, n: usize) -> __m256 {
    // SAFETY: the caller guarantees blocks `0..n` are readable; others are not touched.
    unsafe {
        let h: [u16; 8] = if n >= 8 {
            std::array::from_fn(|i| std::ptr::read_unaligned(p.add(i * ts + off) as *const u16))
        } else {
            std::array::from_fn(|i| if i < n { std::ptr::read_unaligned(p.add(i * ts + off) as *const u16) } else { 0 })
        };
        _mm256_cvtph_ps(_mm_loadu_si128(h.as_ptr() as *const __m128i))
    }
}

/// Two weight rows (`w[..rb]`, `w[rb..2·rb]`) × `R` activation rows, into `out[i·stride + r]`.
/// Every output keeps the chain of [`legacy`] (and ggml): its own 8 f32 lanes, one
/// `fma(d_w · d_x, lane, acc)` per block in block order, and for Q4_1 the scalar `fma(m, s)`
/// chain; only the loop order across the independent chains differs.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn legacy_pair<const KIND: u8, const R: usize, const PRE: bool>(
    w: &[u8],
    rb: usize,
    pre: Option<PairPtrs>,
    xs: &[ActRow<'_>],
    out: &mut [f32],
    stride: usize,
) {
    let ts = type_size(KIND);
    let nb = rb / ts;
    let shift = _mm_cvtsi32_si128(match KIND {
        Q4_0 => 3,
        Q5_0 => 4,
        _ => 0,
    });
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    // Q4_1: ggml's `summs = fma(m, s, summs)` chains of the 2·R outputs, one per lane
    // (`i·4 + r`): the lanes' FMAs are the scalar ones, block by block.
    let mut summv = _mm256_setzero_ps();
    // `dd[r][i][j]`: `d_w · d_x` of block `b + j` for weight row `i` and activation row `r`
    // (only the entries written for this run of blocks are read).
    let mut dd = [[[MaybeUninit::<f32>::uninit(); TABLE]; 2]; R];
    // Q4_1: the weight blocks' mins `m` per weight row, and the activation rows' block sums
    // `s` per block (`stab[j][r]`; rows past `R` hold zero).
    let mut mins = [[MaybeUninit::<f32>::uninit(); TABLE]; 2];
    let mut stab = [[MaybeUninit::<f32>::uninit(); 4]; TABLE];
    // SAFETY: both rows of `rb` bytes lie inside `w` and blocks `b..b + n` inside each row;
    // activation rows are padded to whole groups of 8 blocks (checked by `Kernels::quant_dot`),
    // so the 8-block loads of their scales and sums fit (`b + j0` is a multiple of 8); the
    // tables are written for blocks `0..n` (rounded up to 8) before they are read.
    unsafe {
        let p = [w.as_ptr(), w.as_ptr().add(rb)];
        // PRE: the two rows' unpacked blocks, scales and mins (see [`UnpackedRows`]).
        let (pq, pd, pm) = match pre {
            Some(u) if PRE => (
                [u.q, u.q.add(32 * nb)],
                [u.d, u.d.add(nb)],
                if KIND == Q4_1 { [u.m, u.m.add(nb)] } else { [std::ptr::null(); 2] },
            ),
            _ => ([std::ptr::null(); 2], [std::ptr::null(); 2], [std::ptr::null(); 2]),
        };
        let mut b = 0;
        while b < nb {
            let n = (nb - b).min(TABLE);
            let q = [p[0].add(b * ts), p[1].add(b * ts)];
            // The tables for all `n` blocks first, so the block loop below keeps its
            // accumulators in registers for the whole run.
            let mut j0 = 0;
            while j0 < n {
                let m = (n - j0).min(8);
                for i in 0..2 {
                    let dw = if PRE { _mm256_loadu_ps(pd[i].add(b + j0)) } else { f16x8(q[i].add(j0 * ts), ts, 0, m) };
                    for r in 0..R {
                        _mm256_storeu_ps(
                            dd[r][i].as_mut_ptr().add(j0) as *mut f32,
                            _mm256_mul_ps(dw, _mm256_loadu_ps(xs[r].d.as_ptr().add(b + j0))),
                        );
                    }
                    if KIND == Q4_1 {
                        let mn =
                            if PRE { _mm256_loadu_ps(pm[i].add(b + j0)) } else { f16x8(q[i].add(j0 * ts), ts, 2, m) };
                        _mm256_storeu_ps(mins[i].as_mut_ptr().add(j0) as *mut f32, mn);
                    }
                }
                if KIND == Q4_1 {
                    let s: [__m256; 4] = std::array::from_fn(|r| {
                        if r < R {
                            _mm256_loadu_ps(xs[r].s32.as_ptr().add(b + j0))
                        } else {
                            _mm256_setzero_ps()
                        }
                    });
                    // 4 rows x 8 blocks to 8 blocks x 4 rows.
                    let (t0, t1) = (_mm256_unpacklo_ps(s[0], s[1]), _mm256_unpackhi_ps(s[0], s[1]));
                    let (t2, t3) = (_mm256_unpacklo_ps(s[2], s[3]), _mm256_unpackhi_ps(s[2], s[3]));
                    let u = [
                        _mm256_shuffle_ps::<0x44>(t0, t2),
                        _mm256_shuffle_ps::<0xEE>(t0, t2),
                        _mm256_shuffle_ps::<0x44>(t1, t3),
                        _mm256_shuffle_ps::<0xEE>(t1, t3),
                    ];
                    for (c, v) in u.iter().enumerate() {
                        _mm_storeu_ps(stab[j0 + c].as_mut_ptr() as *mut f32, _mm256_castps256_ps128(*v));
                        _mm_storeu_ps(stab[j0 + c + 4].as_mut_ptr() as *mut f32, _mm256_extractf128_ps::<1>(*v));
                    }
                }
                j0 += 8;
            }
            // `j` indexes the weight blocks, the scale table and the activation blocks alike.
            #[allow(clippy::needless_range_loop)]
            for j in 0..n {
                let wv = if PRE {
                    [
                        _mm256_loadu_si256(pq[0].add(32 * (b + j)) as *const __m256i),
                        _mm256_loadu_si256(pq[1].add(32 * (b + j)) as *const __m256i),
                    ]
                } else {
                    [unpack::<KIND>(q[0].add(j * ts)), unpack::<KIND>(q[1].add(j * ts))]
                };
                if KIND == Q4_1 {
                    let mv = _mm256_set_m128(
                        _mm_broadcast_ss(&*(mins[1].as_ptr().add(j) as *const f32)),
                        _mm_broadcast_ss(&*(mins[0].as_ptr().add(j) as *const f32)),
                    );
                    let sv = _mm256_broadcast_ps(&*(stab[j].as_ptr() as *const __m128));
                    summv = _mm256_fmadd_ps(mv, sv, summv);
                }
                let wabs =
                    if KIND == Q8_0 { [_mm256_sign_epi8(wv[0], wv[0]), _mm256_sign_epi8(wv[1], wv[1])] } else { wv };
                for r in 0..R {
                    let xv = _mm256_loadu_si256(xs[r].qs.as_ptr().add(32 * (b + j)) as *const __m256i);
                    let off = if KIND == Q4_0 || KIND == Q5_0 {
                        let s4 = _mm256_loadu_si256(xs[r].sum4.as_ptr().add(8 * (b + j)) as *const __m256i);
                        _mm256_sll_epi32(s4, shift)
                    } else {
                        _mm256_setzero_si256()
                    };
                    for i in 0..2 {
                        let xi = if KIND == Q8_0 { _mm256_sign_epi8(xv, wv[i]) } else { xv };
                        let mut dot = _mm256_madd_epi16(_mm256_maddubs_epi16(wabs[i], xi), ones);
                        if KIND == Q4_0 || KIND == Q5_0 {
                            dot = _mm256_sub_epi32(dot, off);
                        }
                        let d = _mm256_broadcast_ss(&*(dd[r][i].as_ptr().add(j) as *const f32));
                        acc[r][i] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot), acc[r][i]);
                    }
                }
            }
            b += n;
        }
    }
    // Lane `i·4 + r`: output (weight row `i`, activation row `r`).
    let v: [__m256; 8] = std::array::from_fn(|l| if l % 4 < R { acc[l % 4][l / 4] } else { _mm256_setzero_ps() });
    let sums = _mm256_add_ps(hsum8x8(v), summv);
    if stride == 4 && R == 4 {
        // SAFETY: `out` holds `stride + R` values (2 weight rows of `stride`).
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sums) };
    } else {
        let mut a = [0f32; 8];
        // SAFETY: `a` holds 8 f32.
        unsafe { _mm256_storeu_ps(a.as_mut_ptr(), sums) };
        for r in 0..R {
            for i in 0..2 {
                out[i * stride + r] = a[i * 4 + r];
            }
        }
    }
}

/// Lane `k` of the result is [`super::scalar::hsum8`] of `v[k]` (ggml's `hsum_float_8`,
/// `((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))`), for 8 vectors at once.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn hsum8x8(v: [__m256; 8]) -> __m256 {
    // `t[p]`: `[s_2p | s_2p+1]` with `s_k[i] = v_k[i] + v_k[i + 4]`.
    let t: [__m256; 4] = std::array::from_fn(|p| {
        let (a, b) = (v[2 * p], v[2 * p + 1]);
        _mm256_add_ps(_mm256_permute2f128_ps::<0x20>(a, b), _mm256_permute2f128_ps::<0x31>(a, b))
    });
    // `[s_k[0] + s_k[2], s_k[1] + s_k[3]]` for k = 0, 2 (low half) and 1, 3 (high half); 4..7.
    let q01 = _mm256_add_ps(_mm256_shuffle_ps::<0x44>(t[0], t[1]), _mm256_shuffle_ps::<0xEE>(t[0], t[1]));
    let q23 = _mm256_add_ps(_mm256_shuffle_ps::<0x44>(t[2], t[3]), _mm256_shuffle_ps::<0xEE>(t[2], t[3]));
    // Lanes `[x0, x2, x4, x6, x1, x3, x5, x7]`.
    let e = _mm256_add_ps(_mm256_shuffle_ps::<0x88>(q01, q23), _mm256_shuffle_ps::<0xDD>(q01, q23));
    _mm256_permutevar8x32_ps(e, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// Pairs of weight rows through [`legacy_pair`] (reading `pre`, the rows unpacked by
/// [`unpack_rows`], when given), an odd last one through [`legacy`].
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows<const KIND: u8, const R: usize>(
    w: &[u8],
    rb: usize,
    pre: Option<&UnpackedRows>,
    xs: &[ActRow<'_>],
    out: &mut [f32],
    stride: usize,
) {
    let n = w.len() / rb;
    let nb = rb / type_size(KIND);
    let mut j = 0;
    // SAFETY: as `legacy` / `legacy_pair`, for rows inside `w` and outputs inside `out`; `pre`
    // holds the unpacked rows of `w` (checked by `Kernels::quant_dot_unpacked`).
    unsafe {
        // One activation row: pairs too (the activation block and its offset are loaded once
        // for two weight rows, the scales come from the table), but for Q4_1, whose scalar
        // `summs` chains make the pair slower than single rows (in-cache rates, 1 thread).
        while (R > 1 || KIND != Q4_1) && j + 2 <= n {
            let o = &mut out[j * stride..];
            match pre {
                Some(u) => {
                    let at = PairPtrs {
                        q: u.q.as_ptr().add(32 * nb * j),
                        d: u.d.as_ptr().add(nb * j),
                        m: if KIND == Q4_1 { u.m.as_ptr().add(nb * j) } else { u.m.as_ptr() },
                    };
                    legacy_pair::<KIND, R, true>(&w[j * rb..(j + 2) * rb], rb, Some(at), xs, o, stride)
                }
                None => legacy_pair::<KIND, R, false>(&w[j * rb..(j + 2) * rb], rb, None, xs, o, stride),
            }
            j += 2;
        }
        while j < n {
            legacy::<KIND, R>(&w[j * rb..(j + 1) * rb], xs, &mut out[j * stride..j * stride + R]);
            j += 1;
        }
    }
}

/// Where a pair of weight rows starts in an [`UnpackedRows`] (its first row's blocks, scales and,
/// for Q4_1, mins; the second row follows).
#[derive(Clone, Copy)]
struct PairPtrs {
    q: *const u8,
    d: *const f32,
    m: *const f32,
}

/// Unpacks every row of `w` (`rb` bytes each) into `u`.
///
/// # Safety
/// The CPU has AVX2, FMA, F16C; `w.len()` is a multiple of `rb`, itself a multiple of the
/// block size of `KIND`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn unpack_rows<const KIND: u8>(w: &[u8], u: &mut UnpackedRows) {
    let ts = type_size(KIND);
    let blocks = w.len() / ts;
    let (dn, mn) = (blocks + 8, if KIND == Q4_1 { blocks + 8 } else { 8 });
    // Written in full below (no zero fill first: a fresh scratch would pay for one per tile).
    u.q.clear();
    u.q.reserve(32 * blocks);
    u.d.clear();
    u.d.reserve(dn.next_multiple_of(8));
    u.m.clear();
    u.m.reserve(mn.next_multiple_of(8));
    let (q, d, m) = (u.q.as_mut_ptr(), u.d.as_mut_ptr(), u.m.as_mut_ptr());
    // SAFETY: block `b` lies inside `w`; its 32 unpacked bytes lie inside `q`'s capacity, the
    // scales (8 at a time, past `blocks` the zero padding) inside `d`'s and `m`'s; every value
    // below the new lengths is written before they are set.
    unsafe {
        for b in 0..blocks {
            _mm256_storeu_si256(q.add(32 * b) as *mut __m256i, unpack::<KIND>(w.as_ptr().add(b * ts)));
        }
        let mut b = 0;
        while b < dn {
            let n = blocks.saturating_sub(b).min(8);
            let p = w.as_ptr().add(b.min(blocks) * ts);
            _mm256_storeu_ps(d.add(b), f16x8(p, ts, 0, n));
            if KIND == Q4_1 {
                _mm256_storeu_ps(m.add(b), f16x8(p, ts, 2, n));
            }
            b += 8;
        }
        if KIND != Q4_1 {
            _mm256_storeu_ps(m, _mm256_setzero_ps());
        }
        u.q.set_len(32 * blocks);
        u.d.set_len(dn);
        u.m.set_len(mn);
    }
}

macro_rules! entry {
    ($name:ident, $kind:expr) => {
        /// Safety: as [`super::QuantDot`] (the CPU has AVX2, FMA, F16C).
        pub(super) unsafe fn $name(w: &[u8], rb: usize, xs: &[ActRow<'_>], out: &mut [f32], stride: usize) {
            // SAFETY: the caller (`Kernels`, built after detection) upholds the contract.
            unsafe { dispatch::<{ $kind }>(w, rb, None, xs, out, stride) }
        }
    };
}

/// [`rows`] with `R = xs.len()` fixed at compile time.
///
/// # Safety
/// As [`super::QuantDot`] (the CPU has AVX2, FMA, F16C); `pre`, when given, holds the unpacked
/// rows of `w`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dispatch<const KIND: u8>(
    w: &[u8],
    rb: usize,
    pre: Option<&UnpackedRows>,
    xs: &[ActRow<'_>],
    out: &mut [f32],
    stride: usize,
) {
    // SAFETY: the caller upholds the contract.
    unsafe {
        match xs.len() {
            1 => rows::<KIND, 1>(w, rb, pre, xs, out, stride),
            2 => rows::<KIND, 2>(w, rb, pre, xs, out, stride),
            3 => rows::<KIND, 3>(w, rb, pre, xs, out, stride),
            _ => rows::<KIND, 4>(w, rb, pre, xs, out, stride),
        }
    }
}

entry!(q4_0, Q4_0);
entry!(q4_1, Q4_1);
entry!(q5_0, Q5_0);
entry!(q8_0, Q8_0);

/// Safety: as [`super::UnpackFn`] (the CPU has AVX2, FMA, F16C).
pub(super) unsafe fn unpack_tile(dtype: crate::DType, w: &[u8], u: &mut UnpackedRows) -> bool {
    use crate::DType;
    // SAFETY: the caller upholds the contract.
    unsafe {
        match dtype {
            DType::Q4_0 => unpack_rows::<Q4_0>(w, u),
            DType::Q4_1 => unpack_rows::<Q4_1>(w, u),
            DType::Q5_0 => unpack_rows::<Q5_0>(w, u),
            // Q8_0 blocks are already bytes: nothing to save.
            _ => return false,
        }
    }
    true
}

/// Safety: as [`super::UnpackedDot`] (the CPU has AVX2, FMA, F16C).
pub(super) unsafe fn dot_unpacked(
    dtype: crate::DType,
    w: &[u8],
    rb: usize,
    u: &UnpackedRows,
    xs: &[ActRow<'_>],
    out: &mut [f32],
    stride: usize,
) {
    use crate::DType;
    // SAFETY: the caller upholds the contract.
    unsafe {
        match dtype {
            DType::Q4_0 => dispatch::<Q4_0>(w, rb, Some(u), xs, out, stride),
            DType::Q4_1 => dispatch::<Q4_1>(w, rb, Some(u), xs, out, stride),
            _ => dispatch::<Q5_0>(w, rb, Some(u), xs, out, stride),
        }
    }
}
