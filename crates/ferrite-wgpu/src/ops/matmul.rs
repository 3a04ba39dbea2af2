//! `x [.., k] · w [n, k]ᵀ`: f32 and f16 weights (`shaders/matmul_float.wgsl`). Quantized
//! weights are not done on the GPU yet and answer an error naming their dtype.

use ferrite_tensor::{DType, Error, Result, Tensor};

use super::f32_offset;
use crate::dispatch::Params;
use crate::{buffer_of, shader, WgpuBackend};

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
    let (entry, w_off) = match w.dtype() {
        DType::F32 => ("matmul_f32", w.offset_bytes() / 4),
        DType::F16 if k % 2 == 0 => ("matmul_f16", w.offset_bytes() / 2),
        other => return Err(Error::UnsupportedDType { dtype: other, op: "matmul (wgpu)" }),
    };
    let mut dims = x.dims().to_vec();
    if let Some(last) = dims.last_mut() {
        *last = n;
    }
    let (out, storage) = be.output(x, dims)?;
    let params = Params::new().u(m)?.u(n)?.u(k)?.u(x_off)?.u(w_off)?;
    let bufs = [buffer_of(x, "matmul")?, buffer_of(w, "matmul")?, &storage.buffer];
    be.run(shader!("matmul_float"), entry, &params, &bufs, m * n)?;
    Ok(out)
}
