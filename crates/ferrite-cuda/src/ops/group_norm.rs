//! Group normalisation (`kernels/group_norm.cu`): partial statistics per chunk of positions of
//! each (sample, group), merged per (sample, group) with Chan's formula, then an elementwise
//! pass. Statistics are f32 (two passes within each chunk) where the CPU backend uses f64.
//! Shapes are checked by the CPU backend's [`check_group_norm`].

use ferrite_tensor::cpu::ops::group_norm::check_group_norm;
use ferrite_tensor::{Result, Tensor};

use super::f32_ptr;
use crate::{kernels, launch, Args, CudaBackend};

/// `x [n, .., c]` normalised per (sample, channel group), scaled by `w [c]`, shifted by `b [c]`.
pub fn group_norm(be: &CudaBackend, x: &Tensor, groups: usize, w: &Tensor, b: &Tensor, eps: f32) -> Result<Tensor> {
    let (px, pw, pb) = (f32_ptr(x, "group_norm")?, f32_ptr(w, "group_norm")?, f32_ptr(b, "group_norm")?);
    let (n, c) = check_group_norm(x, groups, w, b)?;
    let total = x.numel();
    let (out, po) = be.output(x, x.shape().clone())?;
    if total == 0 {
        return Ok(out);
    }
    let positions = total / (n * c);
    let cg = c / groups;
    let (chunk, chunks) = launch::group_norm_chunks(positions, cg);
    let sample_groups = n * groups;
    let part = be.temp_bytes(sample_groups * chunks * 8)?;
    let stats = be.temp_bytes(sample_groups * 8)?;
    // All arguments first: one that does not fit 32 bits fails before any launch.
    let partial = Args::new().ptr(px).ptr(part.ptr).u(positions)?.u(c)?.u(groups)?.u(chunk)?;
    let merge = Args::new().ptr(part.ptr).ptr(stats.ptr).u(chunks)?.u(positions)?.u(cg)?.u(chunk)?.f(eps);
    let apply = Args::new().ptr(px).ptr(stats.ptr).ptr(pw).ptr(pb).ptr(po).u(total)?.u(positions)?.u(c)?.u(groups)?;
    be.launch(&kernels::GROUP_NORM_PARTIAL, launch::group_norm_partial(sample_groups, chunks)?, partial)?;
    be.launch(&kernels::GROUP_NORM_MERGE, launch::per_row(sample_groups, 256)?, merge)?;
    be.launch(&kernels::GROUP_NORM_APPLY, launch::elementwise(total), apply)?;
    Ok(out)
}
