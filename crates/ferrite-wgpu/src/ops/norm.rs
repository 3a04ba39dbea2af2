//! Row reductions: rms norm, layer norm, softmax (`shaders/{rms_norm,layer_norm,softmax}.wgsl`,
//! one workgroup per row).

use ferrite_tensor::{Error, Result, Tensor};

use super::{f32_offset, rows_and_width};
use crate::dispatch::Params;
use crate::{buffer_of, shader, WgpuBackend};

fn check_weight(w: &Tensor, d: usize, op: &'static str) -> Result<()> {
    f32_offset(w, op)?;
    if w.numel() != d || w.offset_bytes() != 0 {
        return Err(Error::shape(op, format!("weight {:?} for rows of {d}", w.dims())));
    }
    Ok(())
}

/// Row-wise `x / rms(x) * w`.
pub fn rms_norm(be: &WgpuBackend, x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
    let off = f32_offset(x, "rms_norm")?;
    let (rows, d) = rows_and_width(x);
    check_weight(w, d, "rms_norm")?;
    let (out, storage) = be.output(x, x.shape().clone())?;
    let params = Params::new().u(rows)?.u(d)?.u(off)?.f(eps);
    let bufs = [buffer_of(x, "rms_norm")?, buffer_of(w, "rms_norm")?, &storage.buffer];
    be.run(shader!("rms_norm"), "rms_norm", &params, &bufs, rows)?;
    Ok(out)
}

/// Row-wise `(x - mean) / std * w + b`.
pub fn layer_norm(be: &WgpuBackend, x: &Tensor, w: &Tensor, b: &Tensor, eps: f32) -> Result<Tensor> {
    let off = f32_offset(x, "layer_norm")?;
    let (rows, d) = rows_and_width(x);
    check_weight(w, d, "layer_norm")?;
    check_weight(b, d, "layer_norm")?;
    let (out, storage) = be.output(x, x.shape().clone())?;
    let params = Params::new().u(rows)?.u(d)?.u(off)?.f(eps);
    let bufs = [buffer_of(x, "layer_norm")?, buffer_of(w, "layer_norm")?, buffer_of(b, "layer_norm")?, &storage.buffer];
    be.run(shader!("layer_norm", "reduce256"), "layer_norm", &params, &bufs, rows)?;
    Ok(out)
}

/// Softmax over the last dimension.
pub fn softmax(be: &WgpuBackend, x: &Tensor) -> Result<Tensor> {
    let off = f32_offset(x, "softmax")?;
    let (rows, d) = rows_and_width(x);
    let (out, storage) = be.output(x, x.shape().clone())?;
    let params = Params::new().u(rows)?.u(d)?.u(off)?.u(0)?;
    be.run(shader!("softmax"), "softmax", &params, &[buffer_of(x, "softmax")?, &storage.buffer], rows)?;
    Ok(out)
}
