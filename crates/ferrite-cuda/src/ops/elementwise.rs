//! Elementwise ops and float casts (`kernels/elementwise.cu`).

use std::sync::Arc;

use ferrite_tensor::{Activation, DType, Error, Result, Tensor};

use super::{f32_ptr, float_code};
use crate::kernels::{self, Kernel};
use crate::{launch, ptr_of, Args, CudaBackend, CudaStorage};

/// The kernels' activation code.
fn act_code(act: Activation) -> usize {
    match act {
        Activation::Silu => 0,
        Activation::Gelu => 1,
        Activation::GeluTanh => 2,
        Activation::QuickGelu => 3,
    }
}

/// `a (op) b`, `b` of `a`'s shape or one row broadcast over `a`'s rows.
pub fn binary(be: &CudaBackend, a: &Tensor, b: &Tensor, kernel: &Kernel, op: &'static str) -> Result<Tensor> {
    let (pa, pb) = (f32_ptr(a, op)?, f32_ptr(b, op)?);
    let (n, b_len) = (a.numel(), b.numel());
    let row = a.dims().last().copied().unwrap_or(1);
    if !(b_len == n || (b_len == row && b.dims().len() == 1)) || (n > 0 && b_len == 0) {
        return Err(Error::shape(op, format!("{:?} with {:?}", a.dims(), b.dims())));
    }
    let (out, po) = be.output(a, a.shape().clone())?;
    if n > 0 {
        be.launch(kernel, launch::elementwise(n), Args::new().ptr(pa).ptr(pb).ptr(po).u(n)?.u(b_len.max(1))?)?;
    }
    Ok(out)
}

/// `x * s`.
pub fn scale(be: &CudaBackend, x: &Tensor, s: f32) -> Result<Tensor> {
    let px = f32_ptr(x, "scale")?;
    let n = x.numel();
    let (out, po) = be.output(x, x.shape().clone())?;
    if n > 0 {
        be.launch(&kernels::SCALE, launch::elementwise(n), Args::new().ptr(px).ptr(po).u(n)?.f(s))?;
    }
    Ok(out)
}

/// `act(x)`.
pub fn activation(be: &CudaBackend, x: &Tensor, act: Activation) -> Result<Tensor> {
    let px = f32_ptr(x, "activation")?;
    let n = x.numel();
    let (out, po) = be.output(x, x.shape().clone())?;
    if n > 0 {
        let args = Args::new().ptr(px).ptr(po).u(n)?.u(act_code(act))?;
        be.launch(&kernels::ACTIVATION, launch::elementwise(n), args)?;
    }
    Ok(out)
}

/// `act(gate) * up`.
pub fn gated(be: &CudaBackend, gate: &Tensor, up: &Tensor, act: Activation) -> Result<Tensor> {
    if gate.dims() != up.dims() {
        return Err(Error::shape("gated_activation", format!("gate {:?}, up {:?}", gate.dims(), up.dims())));
    }
    let (pg, pu) = (f32_ptr(gate, "gated_activation")?, f32_ptr(up, "gated_activation")?);
    let n = gate.numel();
    let (out, po) = be.output(gate, gate.shape().clone())?;
    if n > 0 {
        let args = Args::new().ptr(pg).ptr(pu).ptr(po).u(n)?.u(act_code(act))?;
        be.launch(&kernels::GATED, launch::elementwise(n), args)?;
    }
    Ok(out)
}

/// Between f32, f16 and bf16 (round to nearest even); a same-dtype cast copies.
pub fn cast(be: &CudaBackend, x: &Tensor, dtype: DType) -> Result<Tensor> {
    let (from, to) = match (float_code(x.dtype()), float_code(dtype)) {
        (Some(f), Some(t)) => (f, t),
        (None, _) => return Err(Error::UnsupportedDType { dtype: x.dtype(), op: "cast (cuda)" }),
        (_, None) => return Err(Error::UnsupportedDType { dtype, op: "cast (cuda)" }),
    };
    let n = x.numel();
    let bytes = dtype.bytes_for(n).unwrap_or(n * 4);
    let storage = Arc::new(CudaStorage::new(be.driver.clone(), bytes)?);
    let px = ptr_of(x, "cast")?;
    if n > 0 {
        let args = Args::new().ptr(px).ptr(storage.ptr).u(n)?.u(from)?.u(to)?;
        be.launch(&kernels::CAST, launch::elementwise(n), args)?;
    }
    Tensor::from_storage(storage, x.device().clone(), dtype, x.shape().clone(), 0)
}
