//! 2-D convolution of NHWC images (`shaders/conv.wgsl`): an implicit GEMM (no im2col buffer),
//! one workgroup per 64 pixels x 64 output channels, reading f32, f16 or bf16 weights in place. Shapes are checked by the CPU
//! backend's [`ConvShape::check`], so both backends accept and refuse the same calls.

use ferrite_tensor::cpu::ops::conv::ConvShape;
use ferrite_tensor::{Conv2dParams, DType, Result, Tensor};

use super::f32_offset;
use crate::dispatch::{groups, Params};
use crate::{buffer_of, shader, WgpuBackend};

/// Output pixels of one workgroup (the shader's `TM`).
const TILE_PIXELS: usize = 64;
/// Output channels of one workgroup (the shader's `TN`).
const TILE_CHANNELS: usize = 64;

/// `x [n, h, w, c_in]` convolved with `w [c_out, kh, kw, c_in]` plus `bias [c_out]`.
pub fn conv2d(be: &WgpuBackend, x: &Tensor, w: &Tensor, bias: Option<&Tensor>, p: &Conv2dParams) -> Result<Tensor> {
    let s = ConvShape::check(x, w, bias, p)?;
    let x_off = f32_offset(x, "conv2d")?;
    let (kind, w_off) = match w.dtype() {
        DType::F32 => (0, w.offset_bytes() / 4),
        DType::F16 => (1, w.offset_bytes() / 2),
        _ => (2, w.offset_bytes() / 2),
    };
    let b_off = bias.map(|b| f32_offset(b, "conv2d")).transpose()?.unwrap_or(0);
    let total = s.pixels() * s.c_out;
    let (out, storage) = be.output(x, vec![s.n, s.h_out, s.w_out, s.c_out])?;
    if total == 0 {
        return Ok(out);
    }
    let params = Params::new()
        .u(total)?
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
        .u(x_off)?
        .u(w_off)?
        .u(kind)?
        .u(usize::from(bias.is_some()))?
        .u(b_off)?;
    let xb = buffer_of(x, "conv2d")?;
    let bb = bias.map(|b| buffer_of(b, "conv2d")).transpose()?.unwrap_or(xb);
    let bufs = [xb, buffer_of(w, "conv2d")?, bb, &storage.buffer];
    let tiles = groups(s.pixels(), TILE_PIXELS) * groups(s.c_out, TILE_CHANNELS);
    be.run(shader!("conv"), "conv2d", &params, &bufs, tiles)?;
    Ok(out)
}
