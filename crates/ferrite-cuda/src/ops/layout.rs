//! Concat and narrow along any axis (`kernels/layout.cu`): strided block copies, one launch per
//! input tensor, or one device-to-device copy where the blocks are contiguous. Shapes are
//! checked by the CPU backend's [`check_concat`] and [`check_narrow`].

use ferrite_tensor::cpu::ops::layout::{check_concat, check_narrow, split};
use ferrite_tensor::{Result, Tensor};

use super::f32_ptr;
use crate::{kernels, launch, Args, CudaBackend, DevicePtr};

/// Copies `outer` blocks of `len` f32 values from `src` (block `o` at `src + o·src_stride`) to
/// `dst` (at `dst + o·dst_stride`); strides count values.
fn copy_blocks(
    be: &CudaBackend,
    (src, src_stride): (DevicePtr, usize),
    (dst, dst_stride): (DevicePtr, usize),
    outer: usize,
    len: usize,
) -> Result<()> {
    let total = outer * len;
    if total == 0 {
        return Ok(());
    }
    if outer == 1 || (src_stride == len && dst_stride == len) {
        return Ok(be.driver.copy(dst, src, total * 4)?);
    }
    let args = Args::new().ptr(src).ptr(dst).u(total)?.u(len)?.u(src_stride)?.u(dst_stride)?;
    be.launch(&kernels::COPY_BLOCKS, launch::elementwise(total), args)
}

/// Concatenates `xs` along `axis`; every other dimension must agree.
pub fn concat(be: &CudaBackend, xs: &[&Tensor], axis: usize) -> Result<Tensor> {
    let dims = check_concat(xs, axis)?;
    let ptrs = xs.iter().map(|x| f32_ptr(x, "concat")).collect::<Result<Vec<_>>>()?;
    let (total, (outer, inner)) = (dims[axis], split(&dims, axis));
    let (out, po) = be.output(xs[0], dims)?;
    let mut at = 0;
    for (x, p) in xs.iter().zip(ptrs) {
        let block = x.dims()[axis] * inner;
        copy_blocks(be, (p, block), (po + at as u64 * 4, total * inner), outer, block)?;
        at += block;
    }
    Ok(out)
}

/// A contiguous copy of `x` restricted to `start .. start + len` along `axis`.
pub fn narrow(be: &CudaBackend, x: &Tensor, axis: usize, start: usize, len: usize) -> Result<Tensor> {
    let px = f32_ptr(x, "narrow")?;
    let dims = x.dims();
    let new_dims = check_narrow(dims, axis, start, len)?;
    let (outer, inner) = split(dims, axis);
    let (out, po) = be.output(x, new_dims)?;
    let src = px + (start * inner * 4) as u64;
    copy_blocks(be, (src, dims[axis] * inner), (po, len * inner), outer, len * inner)?;
    Ok(out)
}
