//! Nearest-neighbour upsampling of NHWC images (`shaders/resample.wgsl`).

use ferrite_tensor::{Error, Result, Tensor};

use super::f32_offset;
use crate::dispatch::{groups, Params};
use crate::{buffer_of, shader, WgpuBackend};

/// `x [n, h, w, c]` to `[n, h·factor, w·factor, c]`.
pub fn upsample_nearest(be: &WgpuBackend, x: &Tensor, factor: usize) -> Result<Tensor> {
    let x_off = f32_offset(x, "upsample_nearest")?;
    let &[n, h, w, c] = x.dims() else {
        return Err(Error::shape("upsample_nearest", format!("x must be [n, h, w, c], got {:?}", x.dims())));
    };
    if factor == 0 {
        return Err(Error::shape("upsample_nearest", "factor 0"));
    }
    let total = n * h * factor * w * factor * c;
    let (out, storage) = be.output(x, vec![n, h * factor, w * factor, c])?;
    if total > 0 {
        let params = Params::new().u(total)?.u(h)?.u(w)?.u(c)?.u(factor)?.u(x_off)?;
        let bufs = [buffer_of(x, "upsample_nearest")?, &storage.buffer];
        be.run(shader!("resample"), "upsample_nearest", &params, &bufs, groups(total, 256))?;
    }
    Ok(out)
}
