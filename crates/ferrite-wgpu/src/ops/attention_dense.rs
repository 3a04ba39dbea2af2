//! Dense attention of packed sequences with an optional causal mask and score bias
//! (`shaders/attention_dense.wgsl`), for `attention_full` and `attention_dense`. Shapes are
//! checked by the CPU backend's [`check_dense`]. Heads wider than the kernel's 512 values take
//! the host round trip through the CPU kernel.

use ferrite_tensor::cpu::ops::attention_full::{attention_dense as cpu_attention_dense, check_dense};
use ferrite_tensor::{DenseAttention, Device, Result, Tensor};

use super::f32_offset;
use crate::dispatch::Params;
use crate::{buffer_of, shader, WgpuBackend};

/// The widest head the kernel holds (64 threads x 8 values).
const MAX_HEAD_DIM: usize = 512;

/// `softmax(q·kᵀ · scale + bias, masked) · v` within each sequence of `seq_lens`.
pub fn attention_dense(
    be: &WgpuBackend,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    seq_lens: &[usize],
    opts: &DenseAttention,
) -> Result<Tensor> {
    let ([n, hq, hkv, d], side) = check_dense(q, k, v, seq_lens, opts.bias, "attention_dense")?;
    if d > MAX_HEAD_DIM {
        let cpu = Device::cpu();
        let (hq_, hk, hv) = (q.to_device(&cpu)?, k.to_device(&cpu)?, v.to_device(&cpu)?);
        let bias = opts.bias.map(|b| b.to_device(&cpu)).transpose()?;
        let host = DenseAttention { bias: bias.as_ref(), ..*opts };
        return cpu_attention_dense(&hq_, &hk, &hv, seq_lens, &host)?.to_device(q.device());
    }
    let (out, storage) = be.output(q, q.shape().clone())?;
    if n == 0 || hq == 0 || d == 0 {
        return Ok(out);
    }
    let mut seqs = Vec::with_capacity(2 * n);
    let mut at = 0u32;
    for &len in seq_lens {
        let l = u32::try_from(len).map_err(|_| ferrite_tensor::Error::shape("attention_dense", "sequence too long"))?;
        for _ in 0..len {
            seqs.extend([at, l]);
        }
        at += l;
    }
    let b_off = opts.bias.map(|b| f32_offset(b, "attention_dense")).transpose()?.unwrap_or(0);
    let params = Params::new()
        .u(n)?
        .u(hq)?
        .u(hkv)?
        .u(d)?
        .u(f32_offset(q, "attention_dense")?)?
        .u(f32_offset(k, "attention_dense")?)?
        .u(f32_offset(v, "attention_dense")?)?
        .u(b_off)?
        .u(side)?
        .u(usize::from(opts.causal))?
        .u(usize::from(opts.bias.is_some()))?
        .f(opts.scale);
    let qb = buffer_of(q, "attention_dense")?;
    let bb = opts.bias.map(|b| buffer_of(b, "attention_dense")).transpose()?.unwrap_or(qb);
    let seq_buf = be.u32_buffer(&seqs);
    let bufs = [qb, buffer_of(k, "attention_dense")?, buffer_of(v, "attention_dense")?, bb, &seq_buf, &storage.buffer];
    be.run(shader!("attention_dense"), "attention_dense", &params, &bufs, n * hq)?;
    Ok(out)
}
