//! f32 GEMM for f32 weights: `out [m, n] = x [m, k] · w [n, k]ᵀ` with many activation rows
//! (encoder batches, f32 prefill).
//!
//! The roles are those of a classic 6x16 GEMM with the operands swapped so that the weights
//! need no packing: the activations (small, `m·k`) are packed once per call into panels of 16
//! rows laid out `[k][16]`, and the microkernel runs 6 weight rows, read in place from the
//! model's memory, against one panel: per step one broadcast per weight row and two 8-lane
//! loads of the panel feed 12 FMAs, with no horizontal sums. A panel (24 KiB at `k = 384`)
//! stays in L1/L2 while the weight rows stream past it once.
//!
//! Work is split over rayon as (panel, block of weight rows) tasks; each writes its own
//! `[rows][16]` block of a scratch buffer, transposed into `out` at the end (an `m·n` pass,
//! small next to the `m·n·k` products). The microkernel is AVX2 + FMA
//! (`kernels/gemm_avx2.rs`) when the CPU has it (run-time detection, capped by
//! `FERRITE_ISA`), else a portable loop. Each output is one FMA chain over `k` in order, so
//! results differ from the dot-product kernels only by f32 reassociation.

use rayon::prelude::*;

use crate::cpu::kernels::detect::Isa;
use crate::cpu::matmul::check_sizes;
use crate::{Error, Result};

/// Activation rows in one packed panel.
pub const PANEL: usize = 16;
/// Weight rows per microkernel call.
const ROWS: usize = 6;
/// Tasks per thread (slack for uneven thread speed).
const TASKS_PER_THREAD: usize = 4;

/// One microkernel: `R` weight rows of `k` f32 (bytes) times a `[k][16]` panel into `[R][16]`.
type Tile = fn(w: &[u8], k: usize, panel: &[f32], out: &mut [f32]);

/// Products at least this large (`m·n·k`) with at least [`BLOCKED_MIN_ROWS`] rows go to the
/// `gemm` crate's packed, cache-blocked kernels, which reuse each weight block across many
/// activation rows; smaller ones stream the weights through the microkernel below.
const BLOCKED_MIN_WORK: usize = 1 << 27;
/// See [`BLOCKED_MIN_WORK`].
const BLOCKED_MIN_ROWS: usize = 256;
/// On AVX-512, products of at least this many rows go to [`super::gemm_blocked`].
const PACKED_MIN_ROWS: usize = 64;

/// `out [m, n] = x [m, k] · w [n, k]ᵀ` for `w` holding `n·k` little-endian f32 values.
pub fn gemm(x: &[f32], m: usize, k: usize, w: &[u8], n: usize, out: &mut [f32]) -> Result<()> {
    let simd = Isa::best() != Isa::Scalar;
    if Isa::best() == Isa::Avx512Vnni && m >= PACKED_MIN_ROWS {
        // The packed GEMM's AVX-512 kernel outruns the `gemm` crate's AVX2 one at every
        // shape of the diffusion models (benches/examples/gemm_rate.rs), packing included.
        let packed = super::gemm_blocked::PackedWeights::new(w, crate::DType::F32, n, k)?;
        return super::gemm_blocked::gemm(&super::gemm_blocked::RowMajor { x, k }, m, &packed, out);
    }
    if simd && m >= BLOCKED_MIN_ROWS && m.saturating_mul(n).saturating_mul(k) >= BLOCKED_MIN_WORK {
        return gemm_blocked(x, m, k, w, n, out);
    }
    gemm_with(x, m, k, w, n, out, simd)
}

/// [`gemm`] through the `gemm` crate, on the current rayon pool.
fn gemm_blocked(x: &[f32], m: usize, k: usize, w: &[u8], n: usize, out: &mut [f32]) -> Result<()> {
    check_sizes("gemm_f32", x.len(), m, k, w.len(), k * 4, n, out.len())?;
    // The weights are f32 in little-endian bytes, possibly unaligned (memory-mapped files).
    let aligned: std::borrow::Cow<'_, [f32]> = match bytemuck::try_cast_slice::<u8, f32>(&w[..n * k * 4]) {
        Ok(v) if cfg!(target_endian = "little") => std::borrow::Cow::Borrowed(v),
        _ => std::borrow::Cow::Owned(
            w[..n * k * 4].chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        ),
    };
    let threads = rayon::current_num_threads().max(1);
    let par = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    // SAFETY: dst is `m x n` row-major (column stride 1, row stride n); lhs `x` is `m x k`
    // row-major; rhs is the `k x n` matrix whose element (p, j) is `w[j k + p]` (column stride
    // k, row stride 1). All three slices were checked to hold those extents; `read_dst` is
    // false, so `out` is only written.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            x.as_ptr(),
            1,
            k as isize,
            aligned.as_ptr(),
            k as isize,
            1,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            par,
        );
    }
    Ok(())
}

/// [`gemm`] with the microkernel chosen: AVX2 (when `simd` and the CPU has it) or portable.
pub(crate) fn gemm_with(x: &[f32], m: usize, k: usize, w: &[u8], n: usize, out: &mut [f32], simd: bool) -> Result<()> {
    let row_bytes = k.checked_mul(4).ok_or_else(|| Error::shape("gemm_f32", format!("k={k} overflows")))?;
    check_sizes("gemm_f32", x.len(), m, k, w.len(), row_bytes, n, out.len())?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        out.fill(0.0);
        return Ok(());
    }
    let tiles = tiles(simd && avx2_fma());
    let panels = m.div_ceil(PANEL);
    let packed = pack(x, m, k);
    // Weight rows per task: a multiple of ROWS, small enough for every thread to get a few tasks.
    let threads = rayon::current_num_threads().max(1);
    let per_panel = (threads * TASKS_PER_THREAD).div_ceil(panels);
    let block = n.div_ceil(per_panel).next_multiple_of(ROWS).max(ROWS);
    let mut scratch = super::buffers::zeroed(panels * n * PANEL);
    scratch
        .par_chunks_mut(n * PANEL)
        .zip(packed.par_chunks(k * PANEL))
        .flat_map(|(s, panel)| {
            s.par_chunks_mut(block * PANEL).zip(w.par_chunks(block * k * 4)).map(move |(sb, wb)| (sb, wb, panel))
        })
        .for_each(|(sb, wb, panel)| {
            for (so, wr) in sb.chunks_mut(ROWS * PANEL).zip(wb.chunks(ROWS * k * 4)) {
                tiles[so.len() / PANEL - 1](wr, k, panel, so);
            }
        });
    out.par_chunks_mut(n).enumerate().for_each(|(r, o)| {
        let s = &scratch[(r / PANEL) * n * PANEL + r % PANEL..];
        for (j, v) in o.iter_mut().enumerate() {
            *v = s[j * PANEL];
        }
    });
    super::buffers::recycle(scratch);
    super::buffers::recycle(packed);
    Ok(())
}

/// `x [m, k]` as panels of 16 rows, each `[k][16]`, the rows past `m` zero.
fn pack(x: &[f32], m: usize, k: usize) -> Vec<f32> {
    let mut packed = super::buffers::zeroed(m.div_ceil(PANEL) * k * PANEL);
    packed.par_chunks_mut(k * PANEL).zip(x.par_chunks(k * PANEL)).for_each(|(dst, rows)| {
        for (l, row) in rows.chunks_exact(k).enumerate() {
            for (p, &v) in row.iter().enumerate() {
                dst[p * PANEL + l] = v;
            }
        }
    });
    packed
}

/// Whether the CPU has AVX2 and FMA (the f32 microkernels' and vector softmax's requirement).
pub(crate) fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The microkernels for 1..=ROWS weight rows.
fn tiles(avx2: bool) -> [Tile; ROWS] {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        return [simd_tile::<1>, simd_tile::<2>, simd_tile::<3>, simd_tile::<4>, simd_tile::<5>, simd_tile::<6>];
    }
    let _ = avx2;
    [
        portable_tile::<1>,
        portable_tile::<2>,
        portable_tile::<3>,
        portable_tile::<4>,
        portable_tile::<5>,
        portable_tile::<6>,
    ]
}

#[cfg(target_arch = "x86_64")]
fn simd_tile<const R: usize>(w: &[u8], k: usize, panel: &[f32], out: &mut [f32]) {
    assert!(w.len() >= R * k * 4 && panel.len() >= PANEL * k && out.len() >= PANEL * R, "gemm tile extents");
    // SAFETY: `tiles` hands this out only after detecting AVX2 and FMA; extents checked above.
    unsafe { super::kernels::gemm_avx2::tile::<R>(w, k, panel, out) }
}

/// The portable microkernel: the same products in the same order as the AVX2 one.
fn portable_tile<const R: usize>(w: &[u8], k: usize, panel: &[f32], out: &mut [f32]) {
    let mut acc = [[0f32; PANEL]; R];
    for (i, a) in acc.iter_mut().enumerate() {
        let row = &w[i * k * 4..(i + 1) * k * 4];
        for (wb, xs) in row.chunks_exact(4).zip(panel.chunks_exact(PANEL)) {
            let wv = f32::from_le_bytes([wb[0], wb[1], wb[2], wb[3]]);
            for (s, &xv) in a.iter_mut().zip(xs) {
                *s = wv.mul_add(xv, *s);
            }
        }
    }
    for (o, a) in out.chunks_exact_mut(PANEL).zip(&acc) {
        o.copy_from_slice(a);
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Odd shapes (partial panels, leftover weight rows, k of 1 and primes) for both
    /// microkernels against an f64 naive reference, on 1 and 3 threads.
    #[test]
    fn gemm_matches_naive_reference_on_odd_shapes() {
        let mut rng = StdRng::seed_from_u64(11);
        for threads in [1usize, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
            for (m, k, n) in [
                (1usize, 1usize, 1usize),
                (2, 7, 5),
                (15, 33, 13),
                (16, 64, 6),
                (17, 97, 37),
                (45, 384, 50),
                (33, 5, 121),
            ] {
                let x: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
                let wf: Vec<f32> = (0..n * k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
                let w: Vec<u8> = wf.iter().flat_map(|v| v.to_le_bytes()).collect();
                for simd in [false, true] {
                    let mut out = vec![f32::NAN; m * n];
                    pool.install(|| gemm_with(&x, m, k, &w, n, &mut out, simd)).expect("gemm");
                    for r in 0..m {
                        for j in 0..n {
                            let (xr, wr) = (&x[r * k..(r + 1) * k], &wf[j * k..(j + 1) * k]);
                            let want: f64 = xr.iter().zip(wr).map(|(&a, &b)| a as f64 * b as f64).sum();
                            let mag: f64 = xr.iter().zip(wr).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
                            let got = out[r * n + j] as f64;
                            assert!(
                                (got - want).abs() <= 1e-6 * mag + 1e-7,
                                "simd={simd} threads={threads} m={m} k={k} n={n} ({r},{j}): {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Both microkernels do the same FMAs in the same order: bit-identical results.
    #[test]
    fn blocked_path_agrees_with_the_streaming_one_aligned_or_not() {
        let mut rng = StdRng::seed_from_u64(13);
        let (m, k, n) = (301, 700, 643);
        assert!(m >= BLOCKED_MIN_ROWS && m * n * k >= BLOCKED_MIN_WORK, "the shape takes the blocked path");
        let x: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        let mut w = vec![0u8];
        w.extend((0..n * k).flat_map(|_| rng.gen_range(-1.0f32..1.0).to_le_bytes()));
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool");
        let mut want = vec![0f32; m * n];
        gemm_with(&x, m, k, &w[1..], n, &mut want, true).expect("streaming");
        for wb in [&w[1..], &w[1..].to_vec()[..]] {
            let mut got = vec![f32::NAN; m * n];
            pool.install(|| gemm(&x, m, k, wb, n, &mut got)).expect("blocked");
            let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            // Sums of 700 products of magnitude < 1: reassociation moves them by far less.
            assert!(diff < 1e-4, "max diff {diff}");
        }
    }

    #[test]
    fn simd_and_portable_tiles_agree_bit_for_bit() {
        let mut rng = StdRng::seed_from_u64(12);
        let (m, k, n) = (21, 130, 19);
        let x: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
        let w: Vec<u8> = (0..n * k).flat_map(|_| rng.gen_range(-2.0f32..2.0).to_le_bytes()).collect();
        let mut a = vec![0f32; m * n];
        let mut b = vec![0f32; m * n];
        gemm_with(&x, m, k, &w, n, &mut a, true).expect("simd");
        gemm_with(&x, m, k, &w, n, &mut b, false).expect("portable");
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }

    /// Weights at an odd byte offset (a safetensors blob need not align them) read correctly.
    #[test]
    fn unaligned_weights_and_bad_shapes() {
        let (m, k, n) = (3, 9, 7);
        let x: Vec<f32> = (0..m * k).map(|i| (i % 5) as f32 - 2.0).collect();
        let wf: Vec<f32> = (0..n * k).map(|i| (i % 7) as f32 * 0.5 - 1.5).collect();
        let mut bytes = vec![0u8];
        bytes.extend(wf.iter().flat_map(|v| v.to_le_bytes()));
        let mut out = vec![0f32; m * n];
        gemm(&x, m, k, &bytes[1..], n, &mut out).expect("gemm");
        for r in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|p| x[r * k + p] * wf[j * k + p]).sum();
                assert_eq!(out[r * n + j], want, "({r},{j})");
            }
        }
        assert!(gemm(&x, m, k, &bytes[1..bytes.len() - 1], n, &mut out).is_err());
        assert!(gemm(&x[1..], m, k, &bytes[1..], n, &mut out).is_err());
        assert!(gemm(&x, m, k, &bytes[1..], n, &mut out[1..]).is_err());
    }
}
