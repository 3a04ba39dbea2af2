//! Concat and narrow along any axis (`shaders/layout.wgsl`): strided block copies, one kernel
//! per input tensor.

use ferrite_tensor::{Error, Result, Tensor};

use super::f32_offset;
use crate::dispatch::{groups, Params};
use crate::{buffer_of, shader, WgpuBackend};

/// `(outer, inner)` of `dims` split at `axis`.
fn split(dims: &[usize], axis: usize) -> (usize, usize) {
    (dims[..axis].iter().product(), dims[axis + 1..].iter().product())
}

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
    let first = xs.first().ok_or_else(|| Error::shape("concat", "no tensors"))?;
    let rank = first.dims().len();
    if axis >= rank {
        return Err(Error::shape("concat", format!("axis {axis} of a {rank}-D tensor")));
    }
    let mut total = 0usize;
    for x in xs {
        f32_offset(x, "concat")?;
        let d = x.dims();
        if d.len() != rank || (0..rank).any(|i| i != axis && d[i] != first.dims()[i]) {
            return Err(Error::shape("concat", format!("{:?} and {:?} along axis {axis}", first.dims(), d)));
        }
        total += d[axis];
    }
    let (outer, inner) = split(first.dims(), axis);
    let mut dims = first.dims().to_vec();
    dims[axis] = total;
    let (out, storage) = be.output(first, dims)?;
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
    if axis >= dims.len() || start.checked_add(len).is_none_or(|e| e > dims[axis]) {
        return Err(Error::shape("narrow", format!("{start}..{start}+{len} on axis {axis} of {dims:?}")));
    }
    let (outer, inner) = split(dims, axis);
    let mut new_dims = dims.to_vec();
    new_dims[axis] = len;
    let (out, storage) = be.output(x, new_dims)?;
    let src = (off + start * inner, dims[axis] * inner);
    copy_blocks(be, buffer_of(x, "narrow")?, &storage.buffer, outer, len * inner, src, (0, len * inner))?;
    Ok(out)
}
