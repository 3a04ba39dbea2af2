//! `x [.., k] · w [n, k]ᵀ` (`kernels/matmul_float.cu`, `kernels/quantize.cu`,
//! `kernels/matmul_quant.cu`). Quantized weights stay in their GGUF blocks: the activations are
//! rounded once per call to q8_1 blocks (32 int8 values, an f16 scale and an f16 scaled sum) and
//! every weight of the call takes integer dot products against them: one warp per weight row
//! for up to 8 activation rows (decode), 64 x 64 output tiles through shared memory above
//! (prefill, large decode batches; see [`launch::QMM_TILED_ABOVE`]).

use ferrite_tensor::{DType, Error, Result, Tensor};

use super::{f32_ptr, float_code};
use crate::launch::{self, Q8_1_BLOCK, Q8_1_BYTES, QMMT_M, QMM_TILE};
use crate::{kernels, ptr_of, Args, CudaBackend, CudaError, DevicePtr, LaunchDims};

/// The kernels' code of a GGUF block type (`kernels/quant.cuh`, the same as the WGSL decoders').
pub(crate) fn quant_kind(dtype: DType) -> Option<usize> {
    dtype.block_code()
}

/// `x` times each of `ws`; the q8_1 rounding of `x` is shared by the quantized ones.
pub fn matmul_many(be: &CudaBackend, x: &Tensor, ws: &[&Tensor]) -> Result<Vec<Tensor>> {
    let px = f32_ptr(x, "matmul")?;
    let k = x.dims().last().copied().unwrap_or(0);
    let m = x.numel().checked_div(k).unwrap_or(0);
    let mut xq = None;
    let mut outs = Vec::with_capacity(ws.len());
    for w in ws {
        let n = match w.dims() {
            &[n, wk] if wk == k => n,
            other => return Err(Error::shape("matmul", format!("x {:?} with w {other:?}", x.dims()))),
        };
        let mut dims = x.dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = n;
        }
        let (out, po) = be.output(x, dims)?;
        if m > 0 && n > 0 && k > 0 {
            let pw = ptr_of(w, "matmul")?;
            match quant_kind(w.dtype()) {
                Some(kind) => {
                    let row_bytes = w.dtype().bytes_for(k).ok_or(Error::NotBlockAligned {
                        dtype: w.dtype(),
                        numel: k,
                        block: w.dtype().block_size(),
                    })?;
                    if xq.is_none() {
                        xq = Some(quantize(be, px, m, k)?);
                    }
                    let q = xq.as_ref().map(|t| t.ptr).unwrap_or_default();
                    quant(be, pw, q, po, m, n, k, row_bytes, kind)?;
                }
                None => float(be, px, pw, po, m, n, k, w.dtype())?,
            }
        }
        outs.push(out);
    }
    Ok(outs)
}

/// `x [m, k]` rounded to q8_1 blocks, `k / 32` blocks of 36 bytes per row.
fn quantize(be: &CudaBackend, px: DevicePtr, m: usize, k: usize) -> Result<crate::Temp<'_>> {
    if !k.is_multiple_of(Q8_1_BLOCK) {
        return Err(Error::shape("matmul", format!("quantized weights need rows of a multiple of 32 values, got {k}")));
    }
    let row_bytes = k / Q8_1_BLOCK * Q8_1_BYTES;
    let xq = be.temp_bytes(m * row_bytes)?;
    let chunk = launch::row_chunk(1);
    for r0 in (0..m).step_by(chunk) {
        let rows = chunk.min(m - r0);
        let args = Args::new().ptr(px + (r0 * k * 4) as u64).ptr(xq.ptr + (r0 * row_bytes) as u64).u(k)?;
        be.launch(&kernels::QUANTIZE_Q8_1, launch::quantize(rows, k)?, args)?;
    }
    Ok(xq)
}

/// How a launch shape is made from (activation rows, weight rows).
type LaunchShape = fn(usize, usize) -> std::result::Result<LaunchDims, CudaError>;

/// The quantized matmul kernel for `m` activation rows, the activation rows one of its blocks
/// takes and its launch shape: `matmul_q8_1` (one warp per weight row, 8 activation rows) up to
/// [`launch::QMM_TILED_ABOVE`] rows, `matmul_q8_1_tiled` (64 x 64 output tiles through shared
/// memory) above. Both take the same arguments.
fn quant_kernel(m: usize) -> (&'static kernels::Kernel, usize, LaunchShape) {
    if launch::quant_matmul_is_tiled(m) {
        (&kernels::MATMUL_Q8_1_TILED, QMMT_M, launch::matmul_quant_tiled)
    } else {
        (&kernels::MATMUL_Q8_1, QMM_TILE, launch::matmul_quant)
    }
}

#[allow(clippy::too_many_arguments)]
fn quant(
    be: &CudaBackend,
    pw: DevicePtr,
    xq: DevicePtr,
    po: DevicePtr,
    m: usize,
    n: usize,
    k: usize,
    row_bytes: usize,
    kind: usize,
) -> Result<()> {
    let xq_row = k / Q8_1_BLOCK * Q8_1_BYTES;
    let (kernel, rows_per_block, shape) = quant_kernel(m);
    let chunk = launch::row_chunk(rows_per_block);
    for r0 in (0..m).step_by(chunk) {
        let rows = chunk.min(m - r0);
        let args = Args::new()
            .ptr(pw)
            .ptr(xq + (r0 * xq_row) as u64)
            .ptr(po + (r0 * n * 4) as u64)
            .u(rows)?
            .u(n)?
            .u(k)?
            .u(row_bytes)?
            .u(kind)?;
        be.launch(kernel, shape(rows, n)?, args)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn float(
    be: &CudaBackend,
    px: DevicePtr,
    pw: DevicePtr,
    po: DevicePtr,
    m: usize,
    n: usize,
    k: usize,
    dtype: DType,
) -> Result<()> {
    let code = float_code(dtype).ok_or(Error::UnsupportedDType { dtype, op: "matmul (cuda)" })?;
    let chunk = launch::row_chunk(launch::FMM_TILE);
    for r0 in (0..m).step_by(chunk) {
        let rows = chunk.min(m - r0);
        let args = Args::new()
            .ptr(px + (r0 * k * 4) as u64)
            .ptr(pw)
            .ptr(po + (r0 * n * 4) as u64)
            .u(rows)?
            .u(n)?
            .u(k)?
            .u(code)?;
        be.launch(&kernels::MATMUL_FLOAT_K, launch::matmul_float(rows, n)?, args)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quant_codes_follow_quant_cuh() {
        let codes: Vec<_> = DType::ALL.iter().filter_map(|&d| quant_kind(d)).collect();
        assert_eq!(codes, (0..7).collect::<Vec<_>>());
        for d in DType::ALL {
            assert_eq!(quant_kind(d).is_none(), d.is_float(), "{d:?}");
        }
    }

    #[test]
    fn batches_of_more_than_8_rows_take_the_tiled_kernel() {
        for (m, name, rows) in [
            (1, "matmul_q8_1", QMM_TILE),
            (8, "matmul_q8_1", QMM_TILE),
            (9, "matmul_q8_1_tiled", QMMT_M),
            (512, "matmul_q8_1_tiled", QMMT_M),
        ] {
            let (k, r, shape) = quant_kernel(m);
            assert_eq!((k.name, r), (name, rows), "{m} rows");
            // 70 weight rows: 18 blocks of 4 rows, or 2 tiles of 64.
            let want = if r == QMM_TILE { [18, m.div_ceil(8) as u32, 1] } else { [2, m.div_ceil(64) as u32, 1] };
            assert_eq!(shape(m, 70).expect("fits").grid, want, "{m} rows");
        }
    }
}
