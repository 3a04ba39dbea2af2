//! Rotary position embeddings (`shaders/rope.wgsl`).

use ferrite_tensor::{Result, RopeConfig, RopeLayout, Tensor};

use super::f32_offset;
use crate::dispatch::{groups, Params};
use crate::{buffer_of, shader, WgpuBackend};

/// Rotates `x [tokens, heads, head_dim]` by `positions[token]`.
pub fn rope(be: &WgpuBackend, x: &Tensor, positions: &[u32], cfg: &RopeConfig) -> Result<Tensor> {
    let off = f32_offset(x, "rope")?;
    let [_, h, d] = cfg.check(x.dims(), positions.len())?;
    let n = x.numel();
    let (out, storage) = be.output(x, x.shape().clone())?;
    // The same step as the CPU backend's, computed on the host.
    let step = cfg.step();
    let neox = usize::from(cfg.layout == RopeLayout::NeoX);
    let params = Params::new().u(n)?.u(h)?.u(d)?.u(cfg.dim)?.u(off)?.u(neox)?.f(step).f(cfg.freq_scale);
    let pos = be.u32_buffer(positions);
    be.run(shader!("rope"), "rope", &params, &[buffer_of(x, "rope")?, &pos, &storage.buffer], groups(n, 256))?;
    Ok(out)
}
