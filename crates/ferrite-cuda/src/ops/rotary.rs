//! Rotary embedding from caller-built angle tables (`kernels/rotary.cu`); shapes checked by the
//! CPU backend's [`check_rotary`].

use ferrite_tensor::cpu::ops::rotary::check_rotary;
use ferrite_tensor::{Result, RopeLayout, Tensor};

use super::f32_ptr;
use crate::{kernels, launch, Args, CudaBackend};

/// Rotates `x [tokens, heads, head_dim]` by `cos`/`sin [tokens, head_dim / 2]`.
pub fn rotary(be: &CudaBackend, x: &Tensor, cos: &Tensor, sin: &Tensor, layout: RopeLayout) -> Result<Tensor> {
    let (px, pc, ps) = (f32_ptr(x, "rotary")?, f32_ptr(cos, "rotary")?, f32_ptr(sin, "rotary")?);
    let [_, h, d] = check_rotary(x, cos, sin)?;
    let pairs = x.numel() / 2;
    let (out, po) = be.output(x, x.shape().clone())?;
    if pairs > 0 {
        let neox = usize::from(layout == RopeLayout::NeoX);
        let args = Args::new().ptr(px).ptr(pc).ptr(ps).ptr(po).u(pairs)?.u(h)?.u(d)?.u(neox)?;
        be.launch(&kernels::ROTARY_F32, launch::elementwise(pairs), args)?;
    }
    Ok(out)
}
