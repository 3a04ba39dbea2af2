//! `x [.., k] · w [n, k]ᵀ`: f32, f16 and bf16 weights (`shaders/matmul_float.wgsl`), and GGUF
//! block-quantized weights decoded in the kernel (`shaders/matmul_quant.wgsl` over
//! `shaders/quant_blocks.wgsl`; the weights stay in their blocks on the device).

use ferrite_tensor::{DType, Error, Result, Tensor};

use super::{f32_offset, quant};
use crate::dispatch::{Bind, Params};
use crate::{buffer_of, shader, WgpuBackend};

/// Activation rows one workgroup of `matmul_quant` multiplies (the shader's `TILE`).
const QUANT_TILE: usize = 4;
/// Weight rows one workgroup of `matmul_quant` takes (the shader's `ROWS`).
const QUANT_ROWS: usize = 16;

/// `x [.., k]` f32 times `w [n, k]`ᵀ.
pub fn matmul(be: &WgpuBackend, x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let x_off = f32_offset(x, "matmul")?;
    let (n, k) = match w.dims() {
        &[n, k] => (n, k),
        other => return Err(Error::shape("matmul", format!("w must be [n, k], got {other:?}"))),
    };
    if x.dims().last().copied() != Some(k) {
        return Err(Error::shape("matmul", format!("x {:?} with w {:?}", x.dims(), w.dims())));
    }
    let m = x.numel() / k.max(1);
    let mut dims = x.dims().to_vec();
    if let Some(last) = dims.last_mut() {
        *last = n;
    }
    let (out, storage) = be.output(x, dims)?;
    let bufs = [buffer_of(x, "matmul")?, buffer_of(w, "matmul")?, &storage.buffer];
    if w.dtype().is_quantized() {
        let rows = quant::rows(w, k, "matmul (wgpu)")?;
        for win in quant::windows(be, bufs[1], &rows, n)? {
            let params = Params::new()
                .u(m)?
                .u(win.rows)?
                .u(k)?
                .u(x_off)?
                .u(win.offset)?
                .u(rows.row_bytes)?
                .u(rows.units)?
                .u(rows.kind)?
                .u(win.row0)?
                .u(n)?;
            let binds = [Bind::whole(bufs[0]), Bind { buffer: bufs[1], range: win.range }, Bind::whole(bufs[2])];
            let groups = win.rows.div_ceil(QUANT_ROWS) * m.div_ceil(QUANT_TILE);
            let shader = if be.subgroups() {
                shader!(
                    name = "matmul_quant_subgroup",
                    // naga takes the subgroup builtins when the device has the feature and
                    // refuses WGSL's `enable subgroups;` (not implemented yet).
                    prefix = "",
                    "matmul_quant",
                    "quant_blocks",
                    "sum_lanes_subgroup"
                )
            } else {
                shader!("matmul_quant", "quant_blocks", "sum_lanes_barrier")
            };
            be.run_bound(shader, "matmul_quant", &params, &binds, groups)?;
        }
        return Ok(out);
    }
    // (entry, weight offset in elements, 16-bit kind: 0 f16, 1 bf16)
    let (entry, w_off, kind) = match w.dtype() {
        DType::F32 => ("matmul_f32", w.offset_bytes() / 4, 0),
        DType::F16 if k % 2 == 0 => ("matmul_half", w.offset_bytes() / 2, 0),
        DType::BF16 if k % 2 == 0 => ("matmul_half", w.offset_bytes() / 2, 1),
        other => return Err(Error::UnsupportedDType { dtype: other, op: "matmul (wgpu)" }),
    };
    let params = Params::new().u(m)?.u(n)?.u(k)?.u(x_off)?.u(w_off)?.u(kind)?;
    if w.dtype() == DType::F16 && be.f16() {
        // Native f16 loads where the adapter has shader-f16 (same bits as unpacking).
        be.run(shader!("matmul_f16", "finish64"), "matmul_f16", &params, &bufs, m * n)?;
        return Ok(out);
    }
    be.run(shader!("matmul_float", "finish64"), entry, &params, &bufs, m * n)?;
    Ok(out)
}
