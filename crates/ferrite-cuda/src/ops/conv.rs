//! 2-D convolution of NHWC images (`kernels/conv.cu`): an implicit GEMM in 64-pixel x
//! 64-channel tiles, reading f32, f16 or bf16 weights in place. Shapes are checked by the CPU
//! backend's [`ConvShape::check`], so every backend accepts and refuses the same calls.

use ferrite_tensor::cpu::ops::conv::ConvShape;
use ferrite_tensor::{Conv2dParams, Error, Result, Tensor};

use super::float_code;
use crate::{kernels, launch, ptr_of, Args, CudaBackend};

/// `x [n, h, w, c_in]` convolved with `w [c_out, kh, kw, c_in]` plus `bias [c_out]`.
pub fn conv2d(be: &CudaBackend, x: &Tensor, w: &Tensor, bias: Option<&Tensor>, p: &Conv2dParams) -> Result<Tensor> {
    let s = ConvShape::check(x, w, bias, p)?;
    let code = float_code(w.dtype()).ok_or(Error::UnsupportedDType { dtype: w.dtype(), op: "conv2d (weight)" })?;
    let (px, pw) = (ptr_of(x, "conv2d")?, ptr_of(w, "conv2d")?);
    let pb = bias.map(|b| ptr_of(b, "conv2d")).transpose()?;
    let (out, po) = be.output(x, vec![s.n, s.h_out, s.w_out, s.c_out])?;
    let pixels = s.pixels();
    if pixels == 0 || s.c_out == 0 {
        return Ok(out);
    }
    if u32::try_from(s.patch()).is_err() {
        return Err(Error::shape(
            "conv2d",
            format!("a patch of {} values (the kernel indexes it in 32 bits)", s.patch()),
        ));
    }
    let args = Args::new()
        .ptr(px)
        .ptr(pw)
        .ptr(pb.unwrap_or(px))
        .ptr(po)
        .u(pixels)?
        .u(s.h)?
        .u(s.w)?
        .u(s.c_in)?
        .u(s.c_out)?
        .u(s.kh)?
        .u(s.kw)?
        .u(s.h_out)?
        .u(s.w_out)?
        .u(s.stride)?
        .u(s.padding)?
        .u(code)?
        .u(usize::from(bias.is_some()))?;
    be.launch(&kernels::CONV2D, launch::conv2d(pixels, s.c_out)?, args)?;
    Ok(out)
}
