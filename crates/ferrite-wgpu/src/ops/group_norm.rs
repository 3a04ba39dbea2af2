//! Group normalisation (`shaders/group_norm.wgsl`): a statistics kernel, one workgroup per
//! (sample, group), then an elementwise kernel. Statistics are f32 (two-pass: mean, then the
//! squared deviations), where the CPU backend uses f64.

use ferrite_tensor::cpu::ops::group_norm::check_group_norm;
use ferrite_tensor::{Error, Result, Tensor};

use super::f32_offset;
use crate::dispatch::{groups as workgroups, Params};
use crate::{buffer_of, shader, WgpuBackend};

/// `x [n, .., c]` normalised per (sample, channel group), scaled by `w [c]`, shifted by `b [c]`.
pub fn group_norm(be: &WgpuBackend, x: &Tensor, groups: usize, w: &Tensor, b: &Tensor, eps: f32) -> Result<Tensor> {
    let x_off = f32_offset(x, "group_norm")?;
    let dims = x.dims();
    let (n, c) = check_group_norm(x, groups, w, b)?;
    if w.offset_bytes() != 0 || b.offset_bytes() != 0 {
        return Err(Error::shape("group_norm", format!("x {dims:?}, w {:?}, b {:?}", w.dims(), b.dims())));
    }
    f32_offset(w, "group_norm")?;
    f32_offset(b, "group_norm")?;
    let total = x.numel();
    let positions = total.checked_div(n * c).unwrap_or(0);
    let (out, storage) = be.output(x, x.shape().clone())?;
    if total == 0 {
        return Ok(out);
    }
    let stats = be.scratch(n * groups * 8)?;
    let params = Params::new().u(n)?.u(positions)?.u(c)?.u(groups)?.u(x_off)?.f(eps).u(total)?;
    let xb = buffer_of(x, "group_norm")?;
    be.run(shader!("group_norm", "reduce256"), "group_stats", &params, &[xb, &stats], n * groups)?;
    let bufs = [xb, &stats, buffer_of(w, "group_norm")?, buffer_of(b, "group_norm")?, &storage.buffer];
    be.run(shader!("group_norm", "reduce256"), "group_apply", &params, &bufs, workgroups(total, 256))?;
    Ok(out)
}
