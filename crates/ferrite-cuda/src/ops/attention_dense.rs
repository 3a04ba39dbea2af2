//! Dense attention of packed sequences with an optional causal mask and score bias
//! (`kernels/attention_dense.cu`), behind both `attention_full` and `attention_dense`. Shapes
//! are checked by the CPU backend's [`check_dense`]. Heads wider than the kernel's 512 values
//! take the host round trip through the CPU kernel.

use ferrite_tensor::cpu::ops::attention_full::{attention_dense as cpu_attention_dense, check_dense};
use ferrite_tensor::{DenseAttention, Device, Error, Result, Tensor};

use super::f32_ptr;
use crate::{kernels, launch, Args, CudaBackend};

/// Per token: (its sequence's first token, the sequence's length).
pub(crate) fn seq_info(seq_lens: &[usize]) -> Result<Vec<u32>> {
    let mut info = Vec::with_capacity(2 * seq_lens.iter().sum::<usize>());
    let mut at = 0usize;
    for &len in seq_lens {
        let fits = |v: usize| u32::try_from(v).map_err(|_| Error::shape("attention_dense", "too many tokens"));
        let (first, l) = (fits(at)?, fits(len)?);
        for _ in 0..len {
            info.extend([first, l]);
        }
        at += len;
    }
    Ok(info)
}

/// `softmax(q·kᵀ · scale + bias, masked) · v` within each sequence of `seq_lens`.
pub fn attention_dense(
    be: &CudaBackend,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    seq_lens: &[usize],
    opts: &DenseAttention,
) -> Result<Tensor> {
    let ([n, hq, hkv, d], side) = check_dense(q, k, v, seq_lens, opts.bias, "attention_dense")?;
    if d > launch::ATTENTION_MAX_HEAD {
        let cpu = Device::cpu();
        let (hq_, hk, hv) = (q.to_device(&cpu)?, k.to_device(&cpu)?, v.to_device(&cpu)?);
        let bias = opts.bias.map(|b| b.to_device(&cpu)).transpose()?;
        let host = DenseAttention { bias: bias.as_ref(), ..*opts };
        return cpu_attention_dense(&hq_, &hk, &hv, seq_lens, &host)?.to_device(q.device());
    }
    let (pq, pk, pv) = (f32_ptr(q, "attention_dense")?, f32_ptr(k, "attention_dense")?, f32_ptr(v, "attention_dense")?);
    let pb = opts.bias.map(|b| f32_ptr(b, "attention_dense")).transpose()?;
    let (out, po) = be.output(q, q.shape().clone())?;
    if n == 0 || hq == 0 || d == 0 {
        return Ok(out);
    }
    let dims = launch::attention_dense(n, hq, d)?;
    let info = be.temp_u32(&seq_info(seq_lens)?)?;
    let args = Args::new()
        .ptr(pq)
        .ptr(pk)
        .ptr(pv)
        .ptr(pb.unwrap_or(pq))
        .ptr(po)
        .ptr(info.ptr)
        .u(hq)?
        .u(hkv)?
        .u(d)?
        .u(side)?
        .u(usize::from(opts.causal))?
        .u(usize::from(opts.bias.is_some()))?
        .f(opts.scale);
    be.launch(&kernels::ATTENTION_DENSE_K, dims, args)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_token_knows_its_sequence() {
        assert_eq!(seq_info(&[2, 0, 1]).expect("fits"), vec![0, 2, 0, 2, 2, 1]);
        assert!(seq_info(&[]).expect("fits").is_empty());
    }
}
