//! Matrix multiplication `x [m, k] · w[n, k]ᵀ` with weights of any dtype, read in place.
//!
//! f32 weights with `GEMM_MIN_ROWS` (8) or more activation rows go to the packed GEMM of
//! [`gemm_f32`], f16/bf16 weights with `HALF_GEMM_MIN_ROWS` (64) or more to the
//! blocked GEMM of [`gemm_blocked`] (widened while packed); everything else runs the
//! dot-product kernels below.
//!
//! Quantized weights: each activation row is quantized once to the 8-bit blocks ggml pairs with
//! the weight type ([`crate::quant::act::ActFormat`]) and the integer kernels ([`super::kernels`]) run on the raw GGUF
//! blocks. Float weights (f32/f16/bf16) are widened on the fly against f32 activations.
//!
//! * Matvec (`m == 1`, decode): the weight rows are split across the rayon threads in a few
//!   large contiguous chunks, each streamed once from memory.
//! * Matmul (`m > 1`, prefill): each thread takes a contiguous range of weight rows and walks it
//!   in tiles small enough to stay in L2; for each tile, every group of 4 activation rows is
//!   run against every weight row, so a weight block is fetched from memory once and unpacked
//!   once per 4 activation rows. Each tile's results for 4 activation rows land in a small
//!   `[tile, 4]` buffer and are copied straight into their rows of `out` (no `[n, m]` scratch
//!   and no separate transpose pass).
//!
//! On AVX-512 VNNI, a mapped weight of a 32-value block type, Q4_K or Q6_K is laid out once, at
//! its first matmul, for `kernels::avx512_gemm` or `kernels::avx512_kpacked`
//! (`CpuStorage::prepared`), and every
//! later matvec and matmul with it, decode included, runs that kernel on the packed copy.
//! Likewise a mapped f32 weight on AVX-512 is packed once for [`gemm_blocked`], which then
//! runs every matmul with it, whatever the number of rows.

mod prepared;

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use crate::cpu::kernels::{avx512_gemm, Isa};
use crate::cpu::kernels::{Kernels, UnpackedRows, MAX_ROWS};
use prepared::{packed_float, packed_weights, Packed};

use crate::cpu::{expect_f32, f32_tensor, OutPtr, TensorRead};
use crate::cpu::{gemm_blocked, gemm_f32};
use crate::quant::act::{ActFormat, ActRow, QuantizedActs};
use crate::{DType, Error, Result, Tensor};

/// Bytes of weights in one prefill tile (kept in L2 while all activation rows pass over it).
const TILE_BYTES: usize = 96 * 1024;
/// Activation rows from which f32 weights go through the packed GEMM ([`gemm_f32`]) instead
/// of the dot-product kernels (a panel holds 16 rows; fewer waste its lanes).
const GEMM_MIN_ROWS: usize = 8;
/// Activation rows from which f16/bf16 weights are widened into the packed GEMM
/// ([`gemm_blocked`]) rather than run through the dot-product kernels.
const HALF_GEMM_MIN_ROWS: usize = 64;
/// Activation rows from which legacy-block weights (Q4_0, Q4_1, Q5_0, Q8_0) go through the
/// repacked AVX-512 GEMM ([`avx512_gemm`]) where the CPU has AVX-512 VNNI.
#[cfg(target_arch = "x86_64")]
const TILE_GEMM_MIN_ROWS: usize = 2;
/// Chunks per thread for work splitting (a little slack for uneven thread speed).
const CHUNKS_PER_THREAD: usize = 4;

/// Fails unless `x` holds `m·k` values, `w` `n` rows of `row_bytes` bytes and `out` `m·n`
/// values (`op` names the caller in the error).
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_sizes(
    op: &'static str,
    x_len: usize,
    m: usize,
    k: usize,
    w_len: usize,
    row_bytes: usize,
    n: usize,
    out_len: usize,
) -> Result<()> {
    let sizes = (m.checked_mul(k), m.checked_mul(n), n.checked_mul(row_bytes));
    if sizes != (Some(x_len), Some(out_len), Some(w_len)) {
        return Err(Error::shape(op, format!("x {x_len} (m={m}, k={k}), w {w_len} bytes (n={n}), out {out_len}")));
    }
    Ok(())
}

/// `out [m, n] = x [m, k] · w [n, k]ᵀ`, where `w` holds `n` rows of `k` elements of `w_dtype`.
pub fn matmul(x: &[f32], m: usize, k: usize, w: &[u8], w_dtype: DType, n: usize, out: &mut [f32]) -> Result<()> {
    let row_bytes =
        w_dtype.bytes_for(k).ok_or(Error::NotBlockAligned { dtype: w_dtype, numel: k, block: w_dtype.block_size() })?;
    check_sizes("matmul", x.len(), m, k, w.len(), row_bytes, n, out.len())?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        out.fill(0.0);
        return Ok(());
    }
    if w_dtype == DType::F32 && m >= GEMM_MIN_ROWS {
        return gemm_f32::gemm(x, m, k, w, n, out);
    }
    if matches!(w_dtype, DType::F16 | DType::BF16) && m >= HALF_GEMM_MIN_ROWS {
        let packed = gemm_blocked::PackedWeights::new(w, w_dtype, n, k)?;
        return gemm_blocked::gemm(&gemm_blocked::RowMajor { x, k }, m, &packed, out);
    }
    let kern = Kernels::best();
    if let Some(format) = ActFormat::for_weights(w_dtype) {
        let mut acts = QuantizedActs::new();
        acts.quantize(x, k, format)?;
        #[cfg(target_arch = "x86_64")]
        if m >= TILE_GEMM_MIN_ROWS && kern.isa() == Isa::Avx512Vnni && avx512_gemm::supports(w_dtype) {
            return avx512_gemm::gemm(&acts, w, w_dtype, n, out);
        }
        let rows: Vec<ActRow<'_>> = (0..m).map(|r| acts.row(r)).collect();
        // Prefill: each weight tile is unpacked once for all activation rows where the kernels
        // have such a path (`unpacked` says whether this task's scratch holds the tile).
        let prep = |wt: &[u8], (unpacked, u): &mut (bool, UnpackedRows)| -> Result<()> {
            *unpacked = kern.unpack_rows(w_dtype, wt, u)?;
            Ok(())
        };
        drive(m, n, row_bytes, w, out, prep, |(unpacked, u), wt, rs, o, stride| {
            if *unpacked {
                kern.quant_dot_unpacked(w_dtype, wt, row_bytes, u, &rows[rs], o, stride)
            } else {
                kern.quant_dot(w_dtype, wt, row_bytes, &rows[rs], o, stride)
            }
        })
    } else {
        let rows: Vec<&[f32]> = x.chunks_exact(k).collect();
        drive(
            m,
            n,
            row_bytes,
            w,
            out,
            |_, _: &mut ()| Ok(()),
            |_, wt, rs, o, stride| kern.float_dot(w_dtype, wt, row_bytes, &rows[rs], o, stride),
        )
    }
}

/// Weight rows per parallel chunk: a few chunks per thread, at least 16 rows.
fn chunk_rows(n: usize, threads: usize) -> usize {
    n.div_ceil(threads * CHUNKS_PER_THREAD).max(16)
}

/// Splits the work over threads and tiles; `dot(w_rows, act_rows, out, stride)` computes
/// `out[j·stride + r]` for the weight rows `w_rows` and activation rows `act_rows`.
/// With several activation rows, `prep(tile, state)` runs once per weight tile before `dot`
/// sees that tile for every group of activation rows (`state`: per task scratch).
fn drive<S, P, F>(m: usize, n: usize, row_bytes: usize, w: &[u8], out: &mut [f32], prep: P, dot: F) -> Result<()>
where
    S: Default,
    P: Fn(&[u8], &mut S) -> Result<()> + Sync,
    F: Fn(&S, &[u8], std::ops::Range<usize>, &mut [f32], usize) -> Result<()> + Sync,
{
    let threads = rayon::current_num_threads().max(1);
    let chunk = chunk_rows(n, threads);
    if m == 1 {
        return out
            .par_chunks_mut(chunk)
            .zip(w.par_chunks(chunk * row_bytes))
            .try_for_each(|(o, wc)| dot(&S::default(), wc, 0..1, o, 1));
    }
    let tile = (TILE_BYTES / row_bytes).clamp(4, chunk);
    let out_ptr = OutPtr(out.as_mut_ptr());
    let out_len = out.len();
    (0..n.div_ceil(chunk)).into_par_iter().try_for_each(|c| {
        let (j0, j1) = (c * chunk, ((c + 1) * chunk).min(n));
        // One tile's results for up to `MAX_ROWS` activation rows, `[tile, rows]`.
        let mut buf = vec![0f32; tile * MAX_ROWS];
        let mut state = S::default();
        let mut t0 = j0;
        while t0 < j1 {
            let t1 = (t0 + tile).min(j1);
            let wt = &w[t0 * row_bytes..t1 * row_bytes];
            prep(wt, &mut state)?;
            let mut r0 = 0;
            while r0 < m {
                let r1 = (r0 + MAX_ROWS).min(m);
                let rows = r1 - r0;
                let b = &mut buf[..(t1 - t0) * rows];
                dot(&state, wt, r0..r1, b, rows)?;
                let len = t1 - t0;
                assert!((r1 - 1) * n + t1 <= out_len, "matmul output rows out of range");
                // Row `r0 + r` of `out`, columns `t0..t1`.
                let o: [&mut [f32]; MAX_ROWS] = std::array::from_fn(|r| {
                    let start = (r0 + r.min(rows - 1)) * n + t0;
                    if r < rows {
                        // SAFETY: in bounds (checked above); the chunks `j0..j1` are disjoint, so
                        // every output element is written by exactly one task and no two tasks
                        // hold overlapping slices (nor do the rows `r0..r1` of one task).
                        unsafe { std::slice::from_raw_parts_mut(out_ptr.get().add(start), len) }
                    } else {
                        &mut []
                    }
                });
                for (jj, v) in b.chunks_exact(rows).enumerate() {
                    for (r, &x) in v.iter().enumerate() {
                        o[r][jj] = x;
                    }
                }
                r0 = r1;
            }
            t0 = t1;
        }
        Ok(())
    })
}

/// One matvec (`x` a single row) against several quantized weights (`ws`: bytes, dtype, rows
/// `n`) into `outs`: the row is quantized once per activation format, and the chunks of all
/// the weights run in one parallel region (one fork-join for Q, K and V instead of three).
/// The same bits as [`matmul`] per weight (each chunk runs the same kernel on the same rows).
pub fn matvec_many(x: &[f32], k: usize, ws: &[(&[u8], DType, usize)], outs: &mut [Vec<f32>]) -> Result<()> {
    let views: Vec<WeightView<'_>> =
        ws.iter().map(|&(bytes, dtype, n)| WeightView { bytes, dtype, n, packed: None }).collect();
    matvec_views(x, k, &views, outs)
}

/// A weight of [`matvec_views`]: GGUF bytes, and the packed copy where there is one.
struct WeightView<'a> {
    bytes: &'a [u8],
    dtype: DType,
    n: usize,
    packed: Option<Packed<'a>>,
}

/// One task of [`matvec_views`]: weight `i`, rows as GGUF bytes or as groups of its packed
/// copy, and their outputs.
enum Part<'a> {
    Rows(usize, &'a [u8], &'a mut [f32]),
    Groups(usize, Packed<'a>, std::ops::Range<usize>, &'a mut [f32]),
}

/// [`matvec_many`] over weights of which some may be packed.
fn matvec_views(x: &[f32], k: usize, ws: &[WeightView<'_>], outs: &mut [Vec<f32>]) -> Result<()> {
    if outs.len() != ws.len() {
        return Err(Error::shape("matvec_many", format!("{} weights, {} outputs", ws.len(), outs.len())));
    }
    let kern = Kernels::best();
    // The row quantized once per activation format; each weight's index into it and row bytes.
    let mut acts: Vec<(ActFormat, QuantizedActs)> = Vec::new();
    let mut plan = Vec::with_capacity(ws.len());
    for w in ws {
        let format = ActFormat::for_weights(w.dtype)
            .ok_or_else(|| Error::Backend(format!("matvec_many takes quantized weights, not {:?}", w.dtype)))?;
        let row_bytes = w.dtype.bytes_for(k).ok_or(Error::NotBlockAligned {
            dtype: w.dtype,
            numel: k,
            block: w.dtype.block_size(),
        })?;
        check_sizes("matvec_many", x.len(), 1, k, w.bytes.len(), row_bytes, w.n, w.n)?;
        let a = match acts.iter().position(|(f, _)| *f == format) {
            Some(a) => a,
            None => {
                let mut q = QuantizedActs::new();
                q.quantize(x, k, format)?;
                acts.push((format, q));
                acts.len() - 1
            }
        };
        plan.push((a, row_bytes));
    }
    let rows: Vec<ActRow<'_>> = acts.iter().map(|(_, q)| q.row(0)).collect();
    // The packed kernels' starting values, per weight (empty where not packed).
    let starts: Vec<Vec<Vec<i32>>> =
        ws.iter().zip(&plan).map(|(w, &(a, _))| w.packed.map(|p| p.starts(&rows[a])).unwrap_or_default()).collect();
    let threads = rayon::current_num_threads().max(1);
    let mut tasks: Vec<Part<'_>> = Vec::new();
    for (i, (out, w)) in outs.iter_mut().zip(ws).enumerate() {
        out.clear();
        out.resize(w.n, 0.0);
        let chunk = chunk_rows(w.n, threads);
        match w.packed {
            Some(p) => {
                let per = chunk.div_ceil(16);
                for (c, o) in out.chunks_mut(per * 16).enumerate() {
                    tasks.push(Part::Groups(i, p, c * per..((c + 1) * per).min(p.groups()), o));
                }
            }
            None => {
                for (o, wc) in out.chunks_mut(chunk).zip(w.bytes.chunks(chunk * plan[i].1)) {
                    tasks.push(Part::Rows(i, wc, o));
                }
            }
        }
    }
    tasks.into_par_iter().try_for_each(|task| match task {
        Part::Rows(i, wc, o) => {
            let (a, row_bytes) = plan[i];
            kern.quant_dot(ws[i].dtype, wc, row_bytes, std::slice::from_ref(&rows[a]), o, 1)
        }
        Part::Groups(i, p, groups, o) => p.matvec(&rows[plan[i].0], &starts[i], groups, o),
    })
}

/// The tensor-level matmul: `x [.., k]` f32 times `w [n, k]`.
pub fn matmul_tensor(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    expect_f32(x, "matmul")?;
    let (k, n) = match w.dims() {
        [n, k] => (*k, *n),
        d => return Err(Error::shape("matmul", format!("weight must be 2-D, got {d:?}"))),
    };
    if x.shape().last() != k {
        return Err(Error::shape("matmul", format!("x {:?} vs w {:?}", x.dims(), w.dims())));
    }
    let m = x.shape().rows();
    let out = if let Some(p) = packed_float(w) {
        // The packed GEMM writes every output value.
        let mut out = crate::cpu::buffers::overwritable(m * n);
        let xr = TensorRead::new(x, "matmul")?;
        gemm_blocked::gemm(&gemm_blocked::RowMajor { x: xr.f32()?, k }, m, p, &mut out)?;
        out
    } else {
        let mut out = crate::cpu::buffers::zeroed(m * n);
        let xr = TensorRead::new(x, "matmul")?;
        match packed_weights(w) {
            Some(p) if m > 0 => p.matmul(xr.f32()?, k, &mut out)?,
            _ => {
                let wr = TensorRead::new(w, "matmul")?;
                matmul(xr.f32()?, m, k, wr.bytes(), w.dtype(), n, &mut out)?;
            }
        }
        out
    };
    let mut dims = x.dims().to_vec();
    if let Some(l) = dims.last_mut() {
        *l = n;
    }
    f32_tensor(out, dims, x.device())
}

/// The tensor-level [`matvec_many`] when `x` is one row and every weight quantized with `x`'s
/// width; otherwise [`matmul_tensor`] per weight.
pub fn matmul_many_tensor(x: &Tensor, ws: &[&Tensor]) -> Result<Vec<Tensor>> {
    expect_f32(x, "matmul")?;
    let k = x.shape().last();
    let fused = ws.len() > 1
        && x.shape().rows() == 1
        && ws.iter().all(|w| w.dtype().is_quantized() && matches!(w.dims(), [_, wk] if *wk == k));
    if !fused {
        return ws.iter().map(|w| matmul_tensor(x, w)).collect();
    }
    let mut outs = vec![Vec::new(); ws.len()];
    {
        let xr = TensorRead::new(x, "matmul")?;
        let reads = ws.iter().map(|w| TensorRead::new(w, "matmul")).collect::<Result<Vec<_>>>()?;
        let views: Vec<WeightView<'_>> = reads
            .iter()
            .zip(ws)
            .map(|(r, w)| WeightView { bytes: r.bytes(), dtype: w.dtype(), n: w.dims()[0], packed: packed_weights(w) })
            .collect();
        matvec_views(xr.f32()?, k, &views, &mut outs)?;
    }
    outs.into_iter()
        .zip(ws)
        .map(|(o, w)| {
            let mut dims = x.dims().to_vec();
            if let Some(l) = dims.last_mut() {
                *l = w.dims()[0];
            }
            f32_tensor(o, dims, x.device())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::cpu::kernels::tests::{random_blocks, random_floats};
    use crate::quant::dequantize;
    use crate::Device;

    /// Every dtype, several m (matvec, fewer and more rows than a kernel group, odd counts),
    /// against an f64 reference with the activation-quantization bound of `kernels::tests`.
    #[test]
    fn matmul_matches_f64_reference_for_every_dtype() {
        let mut rng = StdRng::seed_from_u64(3);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().expect("pool");
        for dtype in DType::ALL {
            let k = if dtype.block_size() == 256 { 512 } else { 96 * dtype.block_size().max(1) / 32 * 3 };
            let n = 37;
            let w = if dtype.is_quantized() {
                random_blocks(dtype, n * k / dtype.block_size(), &mut rng)
            } else {
                random_floats(dtype, n * k, &mut rng)
            };
            let row_bytes = w.len() / n;
            let mut wf = vec![0f32; n * k];
            dequantize(dtype, &w, &mut wf).expect("dequantize");
            for m in [1usize, 2, 4, 5, 9, 17] {
                let x: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-1.5f32..1.5)).collect();
                let mut out = vec![f32::NAN; m * n];
                pool.install(|| matmul(&x, m, k, &w, dtype, n, &mut out)).expect("matmul");
                for r in 0..m {
                    let xr = &x[r * k..(r + 1) * k];
                    // Activation blocks are 32 values, 256 for the K-quants' q8_K.
                    let blk = if dtype.block_size() == 256 { 256 } else { 32 };
                    let amax: Vec<f64> =
                        xr.chunks(blk).map(|c| c.iter().fold(0f64, |a, v| a.max(v.abs() as f64))).collect();
                    for j in 0..n {
                        let wr = &wf[j * k..(j + 1) * k];
                        let reference: f64 = wr.iter().zip(xr).map(|(&a, &b)| a as f64 * b as f64).sum();
                        let mag: f64 = wr.iter().zip(xr).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
                        let step: f64 = if dtype.is_quantized() {
                            // Half a step, plus the fp16 rounding of the scale (|q| <= 127), plus
                            // (Q4_1) the fp16 rounding of the q8_1 sums times the weights' mins.
                            let q4_1: f64 = if dtype == DType::Q4_1 {
                                w[j * row_bytes..(j + 1) * row_bytes]
                                    .chunks_exact(20)
                                    .enumerate()
                                    .map(|(b, c)| {
                                        let m = half::f16::from_le_bytes([c[2], c[3]]).to_f64().abs();
                                        let s: f64 = xr[32 * b..32 * b + 32].iter().map(|v| v.abs() as f64).sum();
                                        m * s * 1.01 / 2048.0
                                    })
                                    .sum()
                            } else {
                                0.0
                            };
                            let per = |e: usize| amax[e / blk] * (0.5 / 127.0 + 1.0 / 2048.0) * 1.0001;
                            wr.iter().enumerate().map(|(e, &a)| a.abs() as f64 * per(e)).sum::<f64>() + q4_1
                        } else {
                            0.0
                        };
                        let got = out[r * n + j] as f64;
                        let tol = step + 1e-4 * mag + 1e-6;
                        assert!(
                            (got - reference).abs() <= tol,
                            "{dtype:?} m={m} ({r},{j}): {got} vs {reference} (tol {tol})"
                        );
                    }
                }
            }
        }
    }

    /// The 32-weight block types round per output element independently of how activation
    /// rows are grouped: every m (tiles of weight rows × activation rows, odd leftovers) gives
    /// matvec's bits.
    #[test]
    fn legacy_matmul_rows_are_bit_exact_against_matvec() {
        let mut rng = StdRng::seed_from_u64(9);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool");
        for dtype in [DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q8_0] {
            for (k, n) in [(96usize, 37usize), (288, 13), (576, 6)] {
                let w = random_blocks(dtype, n * k / 32, &mut rng);
                for m in [2usize, 5, 8, 9, 16, 23] {
                    let x: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-1.5f32..1.5)).collect();
                    let mut out = vec![f32::NAN; m * n];
                    pool.install(|| matmul(&x, m, k, &w, dtype, n, &mut out)).expect("matmul");
                    for r in 0..m {
                        let mut one = vec![f32::NAN; n];
                        matmul(&x[r * k..(r + 1) * k], 1, k, &w, dtype, n, &mut one).expect("matvec");
                        let (a, b): (Vec<u32>, Vec<u32>) = (
                            out[r * n..(r + 1) * n].iter().map(|v| v.to_bits()).collect(),
                            one.iter().map(|v| v.to_bits()).collect(),
                        );
                        assert_eq!(a, b, "{dtype:?} k={k} n={n} m={m} row {r}");
                    }
                }
            }
        }
    }

    #[test]
    fn matmul_rejects_bad_shapes() {
        let w = vec![0u8; 2 * 18];
        let mut out = vec![0f32; 2];
        assert!(matmul(&[0.0; 32], 1, 32, &w, DType::Q4_0, 2, &mut out).is_ok());
        assert!(matmul(&[0.0; 31], 1, 32, &w, DType::Q4_0, 2, &mut out).is_err());
        assert!(matmul(&[0.0; 33], 1, 33, &w, DType::Q4_0, 2, &mut out).is_err());
        assert!(matmul(&[0.0; 32], 1, 32, &w[..35], DType::Q4_0, 2, &mut out).is_err());
        assert!(matmul(&[0.0; 32], 1, 32, &w, DType::Q4_0, 2, &mut out[..1]).is_err());
    }

    /// One row against several weights of mixed types (three activation formats) in one
    /// parallel region gives each weight's own matmul bits; with several rows it is per weight.
    #[test]
    fn matmul_many_gives_each_matmuls_bits() {
        let dev = Device::cpu_with_threads(2).expect("device");
        let mut rng = StdRng::seed_from_u64(8);
        let k = 512;
        let ws: Vec<Tensor> = [(DType::Q5_0, 40usize), (DType::Q8_0, 7), (DType::Q4_K, 33), (DType::Q4_1, 100)]
            .iter()
            .map(|&(dt, n)| {
                let b = random_blocks(dt, n * k / dt.block_size(), &mut rng);
                Tensor::from_bytes(&b, dt, vec![n, k], &dev).expect("w")
            })
            .collect();
        let refs: Vec<&Tensor> = ws.iter().collect();
        for rows in [1usize, 3] {
            let x: Vec<f32> = (0..rows * k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
            let xt = Tensor::from_f32(&x, vec![rows, k], &dev).expect("x");
            let many = xt.matmul_many(&refs).expect("many");
            for (got, w) in many.iter().zip(&refs) {
                let want = xt.matmul(w).expect("one");
                assert_eq!(got.dims(), want.dims());
                let bits = |t: &Tensor| t.to_vec_f32().expect("read").iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(got), bits(&want), "{:?} rows={rows}", w.dtype());
            }
        }
    }

    /// Mapped weights (packed at first use where the CPU has AVX-512 VNNI) give the bits of
    /// the same weights in owned storage (never packed), through `matmul` for 1..16 rows and
    /// through the fused matvec with packed and unpacked weights mixed; a second call uses
    /// the packed copy made by the first.
    #[test]
    fn mapped_weights_give_owned_weights_bits() {
        let dev = Device::cpu_with_threads(2).expect("device");
        let mut rng = StdRng::seed_from_u64(12);
        let k = 768;
        let specs = [
            (DType::Q5_0, 40usize),
            (DType::Q8_0, 7),
            (DType::Q4_K, 33),
            (DType::Q4_1, 100),
            (DType::Q4_0, 16),
            (DType::Q6_K, 21),
        ];
        let mut owned = Vec::new();
        let mut mapped = Vec::new();
        for &(dt, n) in &specs {
            let b = random_blocks(dt, n * k / dt.block_size(), &mut rng);
            owned.push(Tensor::from_bytes(&b, dt, vec![n, k], &dev).expect("owned"));
            // A window in the middle of a larger buffer, as in a model file.
            let mut file = vec![7u8; 100];
            file.extend_from_slice(&b);
            file.extend_from_slice(&[9u8; 60]);
            let storage = crate::cpu::CpuStorage::mapped(std::sync::Arc::new(file), 100, b.len()).expect("mapped");
            mapped.push(Tensor::from_storage(std::sync::Arc::new(storage), dev.clone(), dt, vec![n, k], 0).expect("t"));
        }
        let same = |got: &Tensor, want: &Tensor, what: &str| {
            let bits = |t: &Tensor| t.to_vec_f32().expect("read").iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(got), bits(want), "{what}");
        };
        for _pass in 0..2 {
            for rows in [1usize, 2, 3, 7, 16] {
                let x: Vec<f32> = (0..rows * k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
                let xt = Tensor::from_f32(&x, vec![rows, k], &dev).expect("x");
                for (o, m) in owned.iter().zip(&mapped) {
                    let what = format!("{:?} rows {rows}", o.dtype());
                    same(&xt.matmul(m).expect("mapped"), &xt.matmul(o).expect("owned"), &what);
                }
                let many = xt.matmul_many(&mapped.iter().collect::<Vec<_>>()).expect("many");
                for (got, o) in many.iter().zip(&owned) {
                    same(got, &xt.matmul(o).expect("owned"), &format!("fused {:?} rows {rows}", o.dtype()));
                }
            }
        }
    }

    /// Mapped f32 weights: on AVX-512 packed at first use, after which every row count, one
    /// included, gives the packed GEMM's bits (also into a reused buffer full of stale NaNs);
    /// elsewhere the owned weights' bits. Either way within 1e-5 of an f64 reference.
    #[test]
    fn mapped_f32_weights_run_the_packed_gemm_at_every_row_count() {
        let dev = Device::cpu_with_threads(2).expect("device");
        let mut rng = StdRng::seed_from_u64(13);
        let (n, k) = (256, 70);
        let wf: Vec<f32> = (0..n * k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        let w: Vec<u8> = wf.iter().flat_map(|v| v.to_le_bytes()).collect();
        let owned = Tensor::from_bytes(&w, DType::F32, vec![n, k], &dev).expect("owned");
        let mut file = vec![1u8; 12];
        file.extend_from_slice(&w);
        let storage = crate::cpu::CpuStorage::mapped(std::sync::Arc::new(file), 12, w.len()).expect("mapped");
        let mapped =
            Tensor::from_storage(std::sync::Arc::new(storage), dev.clone(), DType::F32, vec![n, k], 0).expect("t");
        let packed = gemm_blocked::PackedWeights::new(&w, DType::F32, n, k).expect("pack");
        for rows in [1usize, 2, 7, 8, 63, 64, 130, 1024] {
            let x: Vec<f32> = (0..rows * k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
            let xt = Tensor::from_f32(&x, vec![rows, k], &dev).expect("x");
            // A dropped output of the same size leaves stale values for the next one to reuse.
            crate::cpu::buffers::recycle(vec![f32::NAN; rows * n]);
            let got = xt.matmul(&mapped).expect("mapped").to_vec_f32().expect("read");
            let want = if packed_float(&mapped).is_some() {
                let mut want = vec![0f32; rows * n];
                gemm_blocked::gemm(&gemm_blocked::RowMajor { x: &x, k }, rows, &packed, &mut want).expect("gemm");
                want
            } else {
                xt.matmul(&owned).expect("owned").to_vec_f32().expect("read")
            };
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "rows {rows}");
            for (i, g) in got.iter().enumerate() {
                let (r, c) = (i / n, i % n);
                let exact: f64 = (0..k).map(|p| x[r * k + p] as f64 * wf[c * k + p] as f64).sum();
                assert!((*g as f64 - exact).abs() < 1e-5, "rows {rows} at {i}: {g} vs {exact}");
            }
        }
    }

    #[test]
    fn tensor_matmul_keeps_leading_dims() {
        let dev = Device::cpu_with_threads(2).expect("device");
        let mut rng = StdRng::seed_from_u64(5);
        let w = random_blocks(DType::Q8_0, 3 * 2, &mut rng);
        let wt = Tensor::from_bytes(&w, DType::Q8_0, vec![3, 64], &dev).expect("w");
        let x: Vec<f32> = (0..2 * 5 * 64).map(|i| (i % 13) as f32 * 0.1 - 0.6).collect();
        let xt = Tensor::from_f32(&x, vec![2, 5, 64], &dev).expect("x");
        let y = xt.matmul(&wt).expect("matmul");
        assert_eq!(y.dims(), &[2, 5, 3]);
        let got = y.to_vec_f32().expect("read");
        let mut want = vec![0f32; 30];
        matmul(&x, 10, 64, &w, DType::Q8_0, 3, &mut want).expect("flat");
        assert_eq!(got, want);
    }
}
