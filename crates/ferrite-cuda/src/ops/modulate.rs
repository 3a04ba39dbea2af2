//! AdaLN modulation and the gated residual (`kernels/modulate.cu`), one row per sample; shapes
//! checked by the CPU backend's [`check_per_sample`].

use ferrite_tensor::cpu::ops::modulate::check_per_sample;
use ferrite_tensor::{Result, Tensor};

use super::f32_ptr;
use crate::kernels::Kernel;
use crate::{kernels, launch, Args, CudaBackend};

#[allow(clippy::too_many_arguments)]
fn run(
    be: &CudaBackend,
    kernel: &Kernel,
    op: &'static str,
    x: &Tensor,
    a: &Tensor,
    b: &Tensor,
    t: usize,
    d: usize,
) -> Result<Tensor> {
    let (px, pa, pb) = (f32_ptr(x, op)?, f32_ptr(a, op)?, f32_ptr(b, op)?);
    let total = x.numel();
    let (out, po) = be.output(x, x.shape().clone())?;
    if total > 0 {
        let args = Args::new().ptr(px).ptr(pa).ptr(pb).ptr(po).u(total)?.u(t)?.u(d)?;
        be.launch(kernel, launch::elementwise(total), args)?;
    }
    Ok(out)
}

/// `x * (1 + scale) + shift` of `x [n, t, d]` with `scale`/`shift [n, d]`.
pub fn modulate(be: &CudaBackend, x: &Tensor, scale: &Tensor, shift: &Tensor) -> Result<Tensor> {
    let (t, d) = check_per_sample("modulate", x, &[scale, shift], None)?;
    run(be, &kernels::MODULATE_F32, "modulate", x, scale, shift, t, d)
}

/// `x + gate * y` of `x`, `y [n, t, d]` with `gate [n, d]`.
pub fn gated_add(be: &CudaBackend, x: &Tensor, gate: &Tensor, y: &Tensor) -> Result<Tensor> {
    let (t, d) = check_per_sample("gated_add", x, &[gate], Some(y))?;
    run(be, &kernels::GATED_ADD, "gated_add", x, gate, y, t, d)
}
