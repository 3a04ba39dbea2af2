//! Rotary position embeddings (`kernels/rope.cu`).

use ferrite_tensor::{Result, RopeConfig, RopeLayout, Tensor};

use super::f32_ptr;
use crate::{kernels, launch, Args, CudaBackend};

/// Rotates `x [tokens, heads, head_dim]` by `positions[token]`, with the CPU backend's angles
/// (`step` computed on the host the same way).
pub fn rope(be: &CudaBackend, x: &Tensor, positions: &[u32], cfg: &RopeConfig) -> Result<Tensor> {
    let px = f32_ptr(x, "rope")?;
    let [t, h, d] = cfg.check(x.dims(), positions.len())?;
    let (out, po) = be.output(x, x.shape().clone())?;
    if t == 0 || h == 0 {
        return Ok(out);
    }
    let pos = be.temp_u32(positions)?;
    let neox = usize::from(cfg.layout == RopeLayout::NeoX);
    let args =
        Args::new().ptr(px).ptr(po).ptr(pos.ptr).u(h)?.u(d)?.u(cfg.dim)?.u(neox)?.f(cfg.step()).f(cfg.freq_scale);
    be.launch(&kernels::ROPE_F32, launch::rope(t, h)?, args)?;
    Ok(out)
}
