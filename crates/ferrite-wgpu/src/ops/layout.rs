//! Concat and narrow along any axis (`shaders/layout.wgsl`): strided block copies, one kernel
//! per input tensor.

use ferrite_tensor::cpu::ops::layout::{check_concat, check_narrow, split};
use ferrite_tensor::{Result, Tensor};

use super::f32_offset;
use crate::dispatch::{groups, Params};
use crate::{buffer_of, shader, WgpuBackend};

/// Copies `outer` blocks of `len` values from `src` (block `o` at `src_off + o·src_stride`) to
/// `dst` (at `dst_off + o·dst_stride`).
#[allow(clippy::too_many_arguments)]
fn copy_blocks(
    be: &WgpuBackend,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    outer: usize,
    len: usize,
    (src_off, src_stride): (usize, usize),
    (dst_off, dst_stride): (usize, usize),
) -> Result<()> {
    let total = outer * len;
    if total == 0 {
        return Ok(());
    }
    let params = Params::new().u(total)?.u(len)?.u(src_off)?.u(src_stride)?.u(dst_off)?.u(dst_stride)?;
    be.run(shader!("layout"), "copy_blocks", &params, &[src, dst], groups(total, 256))
}

/// Concatenates `xs` along `axis`; every other dimension must agree.
pub fn concat(be: &WgpuBackend, xs: &[&Tensor], axis: usize) -> Result<Tensor> {
    let dims = check_concat(xs, axis)?;
    for x in xs {
        f32_offset(x, "concat")?;
    }
    let (total, (outer, inner)) = (dims[axis], split(&dims, axis));
    let (out, storage) = be.output(xs[0], dims)?;
    let mut at = 0;
    for x in xs {
        let block = x.dims()[axis] * inner;
        let src = (f32_offset(x, "concat")?, block);
        copy_blocks(be, buffer_of(x, "concat")?, &storage.buffer, outer, block, src, (at, total * inner))?;
        at += block;
    }
    Ok(out)
}

/// A contiguous copy of `x` restricted to `start .. start + len` along `axis`.
pub fn narrow(be: &WgpuBackend, x: &Tensor, axis: usize, start: usize, len: usize) -> Result<Tensor> {
    let off = f32_offset(x, "narrow")?;
    let dims = x.dims();
    let new_dims = check_narrow(dims, axis, start, len)?;
    let (outer, inner) = split(dims, axis);
    let (out, storage) = be.output(x, new_dims)?;
    let src = (off + start * inner, dims[axis] * inner);
    copy_blocks(be, buffer_of(x, "narrow")?, &storage.buffer, outer, len * inner, src, (0, len * inner))?;
    Ok(out)
}
