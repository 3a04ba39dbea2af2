//! Row reductions: rms norm, layer norm, softmax (`kernels/norm.cu`, one block per row).

use ferrite_tensor::{Error, Result, Tensor};

use super::{f32_ptr, rows_and_width};
use crate::{kernels, launch, Args, CudaBackend, DevicePtr};

fn weight(w: &Tensor, d: usize, op: &'static str) -> Result<DevicePtr> {
    let p = f32_ptr(w, op)?;
    if w.numel() != d {
        return Err(Error::shape(op, format!("weight {:?} for rows of {d}", w.dims())));
    }
    Ok(p)
}

/// Row-wise `x / rms(x) * w`.
pub fn rms_norm(be: &CudaBackend, x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
    let px = f32_ptr(x, "rms_norm")?;
    let (rows, d) = rows_and_width(x);
    let pw = weight(w, d, "rms_norm")?;
    let (out, po) = be.output(x, x.shape().clone())?;
    if rows > 0 {
        let args = Args::new().ptr(px).ptr(pw).ptr(po).u(d)?.f(eps);
        be.launch(&kernels::RMS_NORM, launch::per_row(rows, 256)?, args)?;
    }
    Ok(out)
}

/// Row-wise `(x - mean) / std * w + b`.
pub fn layer_norm(be: &CudaBackend, x: &Tensor, w: &Tensor, b: &Tensor, eps: f32) -> Result<Tensor> {
    let px = f32_ptr(x, "layer_norm")?;
    let (rows, d) = rows_and_width(x);
    let (pw, pb) = (weight(w, d, "layer_norm")?, weight(b, d, "layer_norm")?);
    let (out, po) = be.output(x, x.shape().clone())?;
    if rows > 0 {
        let args = Args::new().ptr(px).ptr(pw).ptr(pb).ptr(po).u(d)?.f(eps);
        be.launch(&kernels::LAYER_NORM, launch::per_row(rows, 256)?, args)?;
    }
    Ok(out)
}

/// Softmax over the last dimension.
pub fn softmax(be: &CudaBackend, x: &Tensor) -> Result<Tensor> {
    let px = f32_ptr(x, "softmax")?;
    let (rows, d) = rows_and_width(x);
    let (out, po) = be.output(x, x.shape().clone())?;
    if rows > 0 {
        be.launch(&kernels::SOFTMAX, launch::per_row(rows, 256)?, Args::new().ptr(px).ptr(po).u(d)?)?;
    }
    Ok(out)
}
