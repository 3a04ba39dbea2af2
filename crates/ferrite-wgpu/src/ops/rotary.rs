//! Rotary embedding from angle tables (`shaders/rotary.wgsl`); shapes checked as on the CPU.

use ferrite_tensor::cpu::ops::rotary::check_rotary;
use ferrite_tensor::{Result, RopeLayout, Tensor};

use super::f32_offset;
use crate::dispatch::{groups, Params};
use crate::{buffer_of, shader, WgpuBackend};

/// Rotates `x [tokens, heads, head_dim]` by `cos`/`sin [tokens, head_dim / 2]`.
pub fn rotary(be: &WgpuBackend, x: &Tensor, cos: &Tensor, sin: &Tensor, layout: RopeLayout) -> Result<Tensor> {
    let (x_off, c_off, s_off) = (f32_offset(x, "rotary")?, f32_offset(cos, "rotary")?, f32_offset(sin, "rotary")?);
    let [_, h, d] = check_rotary(x, cos, sin)?;
    let total = x.numel();
    let (out, storage) = be.output(x, x.shape().clone())?;
    if total > 0 {
        let neox = usize::from(layout == RopeLayout::NeoX);
        let params = Params::new().u(total)?.u(h)?.u(d)?.u(neox)?.u(x_off)?.u(c_off)?.u(s_off)?;
        let bufs = [buffer_of(x, "rotary")?, buffer_of(cos, "rotary")?, buffer_of(sin, "rotary")?, &storage.buffer];
        be.run(shader!("rotary"), "rotary", &params, &bufs, groups(total, 256))?;
    }
    Ok(out)
}
