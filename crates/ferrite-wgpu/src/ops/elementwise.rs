//! Elementwise ops: `shaders/unary.wgsl` (scale, activations) and `shaders/binary.wgsl` (add,
//! mul with a broadcast row, gated activations).

use ferrite_tensor::{Activation, Error, Result, Tensor};

use super::f32_offset;
use crate::dispatch::{groups, Params};
use crate::{buffer_of, shader, WgpuBackend};

/// The two-input ops.
#[derive(Debug, Clone, Copy)]
pub enum Binary {
    Add,
    Mul,
}

fn unary(be: &WgpuBackend, x: &Tensor, entry: &'static str, s: f32, op: &'static str) -> Result<Tensor> {
    let off = f32_offset(x, op)?;
    let n = x.numel();
    let (out, storage) = be.output(x, x.shape().clone())?;
    let params = Params::new().u(n)?.u(off)?.f(s);
    be.run(shader!("unary", "math"), entry, &params, &[buffer_of(x, op)?, &storage.buffer], groups(n, 256))?;
    Ok(out)
}

/// `x * s`.
pub fn scale(be: &WgpuBackend, x: &Tensor, s: f32) -> Result<Tensor> {
    unary(be, x, "scale", s, "scale")
}

/// `act(x)`.
pub fn activation(be: &WgpuBackend, x: &Tensor, act: Activation) -> Result<Tensor> {
    let entry = match act {
        Activation::Silu => "silu",
        Activation::Gelu => "gelu",
        Activation::GeluTanh => "gelu_tanh",
        Activation::QuickGelu => "quick_gelu",
    };
    unary(be, x, entry, 0.0, "activation")
}

fn two(be: &WgpuBackend, a: &Tensor, b: &Tensor, entry: &'static str, op: &'static str) -> Result<Tensor> {
    let (a_off, b_off) = (f32_offset(a, op)?, f32_offset(b, op)?);
    let (n, b_len) = (a.numel(), b.numel());
    let row = a.dims().last().copied().unwrap_or(1);
    if !(b_len == n || (b_len == row && b.dims().len() == 1)) || (n > 0 && b_len == 0) {
        return Err(Error::shape(op, format!("{:?} with {:?}", a.dims(), b.dims())));
    }
    let (out, storage) = be.output(a, a.shape().clone())?;
    let params = Params::new().u(n)?.u(a_off)?.u(b_off)?.u(b_len.max(1))?;
    let bufs = [buffer_of(a, op)?, buffer_of(b, op)?, &storage.buffer];
    be.run(shader!("binary", "math"), entry, &params, &bufs, groups(n, 256))?;
    Ok(out)
}

/// `a + b` or `a * b`, `b` of `a`'s shape or one row broadcast over `a`'s rows.
pub fn binary(be: &WgpuBackend, a: &Tensor, b: &Tensor, kind: Binary) -> Result<Tensor> {
    match kind {
        Binary::Add => two(be, a, b, "add", "add"),
        Binary::Mul => two(be, a, b, "mul", "mul"),
    }
}

/// `act(gate) * up`.
pub fn gated(be: &WgpuBackend, gate: &Tensor, up: &Tensor, act: Activation) -> Result<Tensor> {
    if gate.dims() != up.dims() {
        return Err(Error::shape("gated_activation", format!("gate {:?}, up {:?}", gate.dims(), up.dims())));
    }
    let entry = match act {
        Activation::Silu => "gated_silu",
        Activation::Gelu => "gated_gelu",
        Activation::GeluTanh => "gated_gelu_tanh",
        Activation::QuickGelu => "gated_quick_gelu",
    };
    two(be, gate, up, entry, "gated_activation")
}
