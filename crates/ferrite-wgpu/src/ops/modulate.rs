//! AdaLN modulation and the gated residual (`shaders/modulate.wgsl`), one row per sample;
//! shapes checked as on the CPU.

use ferrite_tensor::cpu::ops::modulate::check_per_sample;
use ferrite_tensor::{Result, Tensor};

use super::f32_offset;
use crate::dispatch::{groups, Params};
use crate::{buffer_of, shader, WgpuBackend};

fn run(
    be: &WgpuBackend,
    entry: &'static str,
    x: &Tensor,
    a: &Tensor,
    b: &Tensor,
    t: usize,
    d: usize,
) -> Result<Tensor> {
    let (x_off, a_off, b_off) = (f32_offset(x, entry)?, f32_offset(a, entry)?, f32_offset(b, entry)?);
    let total = x.numel();
    let (out, storage) = be.output(x, x.shape().clone())?;
    if total > 0 {
        let params = Params::new().u(total)?.u(t)?.u(d)?.u(x_off)?.u(a_off)?.u(b_off)?;
        let bufs = [buffer_of(x, entry)?, buffer_of(a, entry)?, buffer_of(b, entry)?, &storage.buffer];
        be.run(shader!("modulate"), entry, &params, &bufs, groups(total, 256))?;
    }
    Ok(out)
}

/// `x * (1 + scale) + shift` of `x [n, t, d]` with `scale`/`shift [n, d]`.
pub fn modulate(be: &WgpuBackend, x: &Tensor, scale: &Tensor, shift: &Tensor) -> Result<Tensor> {
    let (t, d) = check_per_sample("modulate", x, &[scale, shift], None)?;
    run(be, "modulate", x, scale, shift, t, d)
}

/// `x + gate * y` of `x`, `y [n, t, d]` with `gate [n, d]`.
pub fn gated_add(be: &WgpuBackend, x: &Tensor, gate: &Tensor, y: &Tensor) -> Result<Tensor> {
    let (t, d) = check_per_sample("gated_add", x, &[gate], Some(y))?;
    run(be, "gated_add", x, gate, y, t, d)
}
