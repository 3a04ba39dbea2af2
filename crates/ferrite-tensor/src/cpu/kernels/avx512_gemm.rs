//! AVX-512 VNNI GEMM for the 32-weight blocks (Q4_0, Q4_1, Q5_0, Q8_0) against several
//! activation rows (prefill, batched decode), rounded exactly as the dot kernels of
//! [`super::avx512_legacy`] and ggml round.
//!
//! ggml keeps, per weight row and activation row, an 8-lane f32 accumulator: lane `l` gets
//! `fma(d_w · d_x, Σ_{4 values} w·x, acc_l)` block after block, and the 8 lanes are summed at the
//! end (`hsum_float_8`). The dot kernels run that chain for one or two weight rows at a time, so
//! each block costs a scale broadcast (a permute) besides the integer dot, conversion and FMA.
//! Here the weights are repacked 16 rows at a time so that **zmm lane `i` is weight row `i`**:
//! for lane group `l` one 512-bit `vpdpbusd` gives `Σ w·x` over values `4l..4l+4` for all 16
//! rows against one broadcast activation dword, and the 8 chains of each row live in 8
//! registers (`acc[l]`). The scale `d_w · d_x` is one multiply per block for all 16 rows, the
//! final `hsum_float_8` is the same tree of vertical adds, and every lane sees exactly the
//! integers and float operations of ggml's chain: the same bits.
//!
//! Signed weights are stored unsigned with an offset (Q4_0: `q`, value `q - 8`; Q5_0: `q - 16`;
//! Q8_0: `q ^ 0x80`, value `q - 128`), and `vpdpbusd` starts from `-offset · Σ_4 x` (the
//! activations' 4-value sums), which leaves exactly ggml's integers.
//!
//! A group of 16 rows is packed into L1/L2-sized scratch once per call and then meets every
//! activation row, [`ROWS`] at a time.

use std::arch::x86_64::*;

use rayon::prelude::*;

use crate::cpu::OutPtr;
use crate::quant::act::QuantizedActs;
use crate::{DType, Error, Result};

/// Weight rows per packed group (zmm lanes).
pub(crate) const GROUP: usize = 16;
/// Activation rows per micro-kernel call (8 accumulators each).
const ROWS: usize = 3;

const Q4_0: u8 = 0;
const Q4_1: u8 = 1;
const Q5_0: u8 = 2;
const Q8_0: u8 = 3;

/// One cache line of packed data.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// Packed lines per block of a group: 8 lane groups of weights, the 16 scales, (Q4_1) the 16 mins.
const fn lines_per_block(kind: u8) -> usize {
    if kind == Q4_1 {
        10
    } else {
        9
    }
}

/// log2 of the unsigned offset of the stored weights (0: none).
const fn offset_shift(kind: u8) -> u32 {
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

/// Whether [`gemm`] runs `dtype` on this CPU.
pub(crate) fn supports(dtype: DType) -> bool {
    kind_of(dtype).is_some() && super::Isa::Avx512Vnni.supported()
}

/// `out [m, n] = x [m, k] · w [n, k]ᵀ` for legacy-block weights `w` (`n` rows of whole blocks)
/// and `x` quantized in `acts` (`m` rows, the format ggml pairs with `dtype`); the same bits as
/// the dot kernels row by row.
pub(crate) fn gemm(acts: &QuantizedActs, w: &[u8], dtype: DType, n: usize, out: &mut [f32]) -> Result<()> {
    let kind = kind_of(dtype).ok_or(Error::UnsupportedDType { dtype, op: "avx512 legacy gemm" })?;
    if !super::Isa::Avx512Vnni.supported() {
        return Err(Error::Backend("the AVX-512 legacy GEMM needs AVX-512 VNNI".into()));
    }
    let (m, k) = (acts.rows(), acts.k());
    let nb = k / 32;
    let rb = nb * dtype.type_size();
    if !k.is_multiple_of(32) || Some(w.len()) != n.checked_mul(rb) || Some(out.len()) != m.checked_mul(n) {
        return Err(Error::shape(
            "avx512 legacy gemm",
            format!("k {k}, w {} bytes for {n} rows, out {}", w.len(), out.len()),
        ));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let rows: Vec<_> = (0..m).map(|r| acts.row(r)).collect();
    // `vpdpbusd` starts from `-offset · Σ_4 x`, per activation row and lane group.
    let shift = offset_shift(kind);
    let neg: Vec<Vec<i32>> = if shift == 0 {
        Vec::new()
    } else {
        rows.iter().map(|a| a.sum4[..8 * nb].iter().map(|&s| -(s << shift)).collect()).collect()
    };
    let groups = n.div_ceil(GROUP);
    let threads = rayon::current_num_threads().max(1);
    let per_task = groups.div_ceil(threads * 4).max(1);
    let out_ptr = OutPtr(out.as_mut_ptr());
    (0..groups.div_ceil(per_task)).into_par_iter().for_each(|t| {
        let mut packed = vec![Line([0; 64]); nb * lines_per_block(kind)];
        for g in t * per_task..((t + 1) * per_task).min(groups) {
            let valid = (n - g * GROUP).min(GROUP);
            let wg = &w[g * GROUP * rb..(g * GROUP + valid) * rb];
            // SAFETY: the CPU has AVX-512 VNNI (checked above); `wg` holds `valid` rows of `nb`
            // whole blocks and `packed` `nb` records.
            unsafe { pack_group(kind, wg, rb, valid, nb, &mut packed) };
            let mut r0 = 0;
            while r0 < m {
                // 4 rows left: 2 + 2 rather than 3 + 1 (a single row wastes the loaded weights).
                let take = if m - r0 == ROWS + 1 { 2 } else { ROWS.min(m - r0) };
                let r1 = r0 + take;
                let (xs, o) = (&rows[r0..r1], out_ptr.get().wrapping_add(g * GROUP));
                // SAFETY: as above; rows `r0..r1` of `out` are `m·n` long and columns
                // `g·16 .. g·16 + valid` belong to this task alone (groups are disjoint).
                unsafe {
                    match kind {
                        Q4_0 => run::<Q4_0>(&packed, nb, xs, &neg, r0, o, n, valid),
                        Q4_1 => run::<Q4_1>(&packed, nb, xs, &neg, r0, o, n, valid),
                        Q5_0 => run::<Q5_0>(&packed, nb, xs, &neg, r0, o, n, valid),
                        _ => run::<Q8_0>(&packed, nb, xs, &neg, r0, o, n, valid),
                    }
                }
                r0 = r1;
            }
        }
    });
    Ok(())
}

/// Packs `valid` (1..=16) rows of `w` (`rb` bytes each, `nb` blocks) into `packed`; missing rows
/// repeat the last one (their lanes are computed and never stored).
///
/// # Safety
/// The CPU has AVX-512 F/BW/VNNI, F16C; `w` holds `valid` rows; `packed` `nb` records.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn pack_group(kind: u8, w: &[u8], rb: usize, valid: usize, nb: usize, packed: &mut [Line]) {
    let ts = rb / nb;
    let lines = lines_per_block(kind);
    debug_assert!(valid >= 1 && w.len() >= valid * rb && packed.len() >= nb * lines);
    let row: [*const u8; GROUP] = std::array::from_fn(|i| w.as_ptr().wrapping_add(i.min(valid - 1) * rb));
    let low = _mm512_set1_epi8(0x0F);
    // Q5_0's fifth bits: for a row's 4 bits of one lane group, the bytes to add (16 where set).
    let spread = _mm512_setr_epi32(
        0, 0x10, 0x1000, 0x1010, 0x100000, 0x100010, 0x101000, 0x101010, 0x10000000, 0x10000010, 0x10001000,
        0x10001010, 0x10100000, 0x10100010, 0x10101000, 0x10101010,
    );
    // SAFETY: every pointer read is inside block `b` of one of the `valid` rows; every write
    // inside record `b` of `packed`.
    unsafe {
        for b in 0..nb {
            let rec = packed.as_mut_ptr().add(b * lines) as *mut __m512i;
            let blk: [*const u8; GROUP] = std::array::from_fn(|i| row[i].add(b * ts));
            // The fp16 scale (and Q4_1 min) of the 16 blocks, widened together.
            let halves = |off: usize| -> __m512 {
                let h: [u16; GROUP] = std::array::from_fn(|i| std::ptr::read_unaligned(blk[i].add(off) as *const u16));
                _mm512_cvtph_ps(_mm256_loadu_si256(h.as_ptr() as *const __m256i))
            };
            _mm512_store_ps(rec.add(8) as *mut f32, halves(0));
            if kind == Q4_1 {
                _mm512_store_ps(rec.add(9) as *mut f32, halves(2));
            }
            match kind {
                Q8_0 => {
                    let flip = _mm512_set1_epi8(0x80u8 as i8);
                    for h in 0..2 {
                        let u = transpose16(&blk, 2 + 16 * h);
                        for (l, v) in u.into_iter().enumerate() {
                            _mm512_store_si512(rec.add(4 * h + l), _mm512_xor_si512(v, flip));
                        }
                    }
                }
                _ => {
                    let qs = match kind {
                        Q4_0 => 2,
                        Q4_1 => 4,
                        _ => 6,
                    };
                    // Dword `l` of a row's 16 bytes: low nibbles are values 4l..4l+4, high
                    // nibbles values 16 + 4l..: lane groups `l` and `l + 4`.
                    let u = transpose16(&blk, qs);
                    let qh = if kind == Q5_0 {
                        let h: [i32; GROUP] =
                            std::array::from_fn(|i| std::ptr::read_unaligned(blk[i].add(2) as *const i32));
                        _mm512_loadu_si512(h.as_ptr() as *const _)
                    } else {
                        _mm512_setzero_si512()
                    };
                    for (l, v) in u.into_iter().enumerate() {
                        let mut lo = _mm512_and_si512(v, low);
                        let mut hi = _mm512_and_si512(_mm512_srli_epi32::<4>(v), low);
                        if kind == Q5_0 {
                            // vpermd reads the low 4 bits of each index: bits 4l.. of qh.
                            let sh = _mm512_set1_epi32(4 * l as i32);
                            lo = _mm512_or_si512(lo, _mm512_permutexvar_epi32(_mm512_srlv_epi32(qh, sh), spread));
                            let sh = _mm512_set1_epi32(16 + 4 * l as i32);
                            hi = _mm512_or_si512(hi, _mm512_permutexvar_epi32(_mm512_srlv_epi32(qh, sh), spread));
                        }
                        _mm512_store_si512(rec.add(l), lo);
                        _mm512_store_si512(rec.add(l + 4), hi);
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
unsafe fn transpose16(blk: &[*const u8; GROUP], off: usize) -> [__m512i; 4] {
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

/// Runs the packed group against `xs` (1..=[`ROWS`] activation rows, `r0..` of the call),
/// writing `valid` outputs of each row at `out + r·n`.
///
/// # Safety
/// As [`group`].
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn run<const KIND: u8>(
    packed: &[Line],
    nb: usize,
    xs: &[crate::quant::act::ActRow<'_>],
    neg: &[Vec<i32>],
    r0: usize,
    out: *mut f32,
    n: usize,
    valid: usize,
) {
    macro_rules! go {
        ($r:literal) => {
            group::<KIND, $r>(packed, nb, &Rows::<$r>::new(xs, neg, r0, out, n), valid)
        };
    }
    // SAFETY: forwarded from the caller.
    unsafe {
        match xs.len() {
            1 => go!(1),
            2 => go!(2),
            _ => go!(3),
        }
    }
}

/// The activation rows of one micro-kernel call, as raw pointers.
struct Rows<const R: usize> {
    q: [*const i8; R],
    d: [*const f32; R],
    s32: [*const f32; R],
    neg: [*const i32; R],
    out: [*mut f32; R],
}

impl<const R: usize> Rows<R> {
    fn new(xs: &[crate::quant::act::ActRow<'_>], neg: &[Vec<i32>], r0: usize, out: *mut f32, n: usize) -> Self {
        Rows {
            q: std::array::from_fn(|r| xs[r].qs.as_ptr()),
            d: std::array::from_fn(|r| xs[r].d.as_ptr()),
            s32: std::array::from_fn(|r| xs[r].s32.as_ptr()),
            neg: std::array::from_fn(|r| neg.get(r0 + r).map_or(std::ptr::null(), |v| v.as_ptr())),
            out: std::array::from_fn(|r| out.wrapping_add((r0 + r) * n)),
        }
    }
}

/// The micro-kernel: 16 weight rows (lanes) x `R` activation rows, over all `nb` blocks.
///
/// # Safety
/// The CPU has AVX-512 F/BW/VL/VNNI; `packed` holds `nb` records of [`pack_group`]; each row of
/// `a` covers `nb` blocks (and, but for Q4_1, `8·nb` offsets); `valid` floats are writable at
/// each output pointer.
// Indexed loops over constant ranges keep the accumulators in registers.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn group<const KIND: u8, const R: usize>(packed: &[Line], nb: usize, a: &Rows<R>, valid: usize) {
    let lines = lines_per_block(KIND);
    let mut acc = [[_mm512_setzero_ps(); R]; 8];
    let mut summs = [_mm512_setzero_ps(); R];
    // SAFETY: reads of record `b < nb` of `packed` and of block `b` of each activation row.
    unsafe {
        for b in 0..nb {
            let rec = packed.as_ptr().add(b * lines) as *const __m512i;
            let dw = _mm512_load_ps(rec.add(8) as *const f32);
            let d: [__m512; R] = std::array::from_fn(|r| _mm512_mul_ps(dw, _mm512_set1_ps(*a.d[r].add(b))));
            if KIND == Q4_1 {
                // ggml's scalar `summs = fma(m, s, summs)`, block by block.
                let mv = _mm512_load_ps(rec.add(9) as *const f32);
                for r in 0..R {
                    summs[r] = _mm512_fmadd_ps(mv, _mm512_set1_ps(*a.s32[r].add(b)), summs[r]);
                }
            }
            for (l, acc_l) in acc.iter_mut().enumerate() {
                let wl = _mm512_load_si512(rec.add(l));
                for r in 0..R {
                    let start =
                        if KIND == Q4_1 { _mm512_setzero_si512() } else { _mm512_set1_epi32(*a.neg[r].add(8 * b + l)) };
                    let x = _mm512_set1_epi32(std::ptr::read_unaligned(a.q[r].add(32 * b + 4 * l) as *const i32));
                    let dot = _mm512_dpbusd_epi32(start, wl, x);
                    acc_l[r] = _mm512_fmadd_ps(d[r], _mm512_cvtepi32_ps(dot), acc_l[r]);
                }
            }
        }
        let mask: __mmask16 = if valid >= GROUP { 0xFFFF } else { (1u16 << valid) - 1 };
        for r in 0..R {
            // hsum_float_8: ((a4 + a0) + (a6 + a2)) + ((a5 + a1) + (a7 + a3)), then `+ summs`.
            let s0 = _mm512_add_ps(_mm512_add_ps(acc[4][r], acc[0][r]), _mm512_add_ps(acc[6][r], acc[2][r]));
            let s1 = _mm512_add_ps(_mm512_add_ps(acc[5][r], acc[1][r]), _mm512_add_ps(acc[7][r], acc[3][r]));
            let v = _mm512_add_ps(_mm512_add_ps(s0, s1), summs[r]);
            _mm512_mask_storeu_ps(a.out[r], mask, v);
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
    /// block types, partial groups, odd row counts and 1..3 threads.
    #[test]
    fn gemm_gives_the_dot_kernels_bits() {
        let Some(kern) = Kernels::for_isa(Isa::Avx512Vnni) else {
            eprintln!("skipped: this CPU has no AVX-512 VNNI");
            return;
        };
        let mut rng = StdRng::seed_from_u64(21);
        for dtype in [DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q8_0] {
            for (k, n) in [(64usize, 16usize), (576, 37), (96, 5), (1536, 50)] {
                let w = random_blocks(dtype, n * k / 32, &mut rng);
                let rb = w.len() / n;
                for m in [1usize, 2, 3, 4, 7, 16] {
                    let mut x: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
                    // Some zero blocks and huge values too.
                    x[..32].fill(0.0);
                    if m * k > 64 {
                        x[40] = 1e4;
                    }
                    let mut acts = QuantizedActs::new();
                    acts.quantize(&x, k, ActFormat::for_weights(dtype).expect("format")).expect("quantize");
                    for threads in [1usize, 3] {
                        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
                        let mut out = vec![f32::NAN; m * n];
                        pool.install(|| gemm(&acts, &w, dtype, n, &mut out)).expect("gemm");
                        for r in 0..m {
                            let mut want = vec![0f32; n];
                            kern.quant_dot(dtype, &w, rb, &[acts.row(r)], &mut want, 1).expect("dot");
                            for j in 0..n {
                                assert_eq!(
                                    out[r * n + j].to_bits(),
                                    want[j].to_bits(),
                                    "{dtype:?} k {k} n {n} m {m} row {r} col {j}: {} vs {}",
                                    out[r * n + j],
                                    want[j]
                                );
                            }
                        }
                    }
                }
            }
        }
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
    }
}
