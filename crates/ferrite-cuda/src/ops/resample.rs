//! Nearest-neighbour upsampling of NHWC images (`kernels/resample.cu`).

use ferrite_tensor::{Error, Result, Tensor};

use super::f32_ptr;
use crate::{kernels, launch, Args, CudaBackend};

/// `x [n, h, w, c]` to `[n, h·factor, w·factor, c]`.
pub fn upsample_nearest(be: &CudaBackend, x: &Tensor, factor: usize) -> Result<Tensor> {
    let px = f32_ptr(x, "upsample_nearest")?;
    let &[n, h, w, c] = x.dims() else {
        return Err(Error::shape("upsample_nearest", format!("x must be [n, h, w, c], got {:?}", x.dims())));
    };
    if factor == 0 {
        return Err(Error::shape("upsample_nearest", "factor 0"));
    }
    let total = n * h * factor * w * factor * c;
    let (out, po) = be.output(x, vec![n, h * factor, w * factor, c])?;
    if total > 0 {
        let args = Args::new().ptr(px).ptr(po).u(total)?.u(h)?.u(w)?.u(c)?.u(factor)?;
        be.launch(&kernels::UPSAMPLE_NEAREST, launch::elementwise(total), args)?;
    }
    Ok(out)
}
