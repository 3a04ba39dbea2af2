//! Matrix multiplication `x [m, k] · w[n, k]ᵀ` with weights of any dtype, read in place.
//!
//! (Placeholder scalar path: dequantize a weight row, dot with each activation row. The fast
//! SIMD/integer kernels replace the inner part.)

use rayon::prelude::*;

use crate::cpu::{expect_f32, f32_tensor, TensorRead};
use crate::{DType, Error, Result, Tensor};

/// `out [m, n] = x [m, k] · w [n, k]ᵀ`, where `w` holds `n` rows of `k` elements of `w_dtype`.
pub fn matmul(x: &[f32], m: usize, k: usize, w: &[u8], w_dtype: DType, n: usize, out: &mut [f32]) -> Result<()> {
    let row_bytes = w_dtype
        .bytes_for(k)
        .ok_or(Error::NotBlockAligned { dtype: w_dtype, numel: k, block: w_dtype.block_size() })?;
    if x.len() != m * k || out.len() != m * n || w.len() != n * row_bytes {
        return Err(Error::shape("matmul", format!("x {} (m={m}, k={k}), w {} bytes (n={n}), out {}", x.len(), w.len(), out.len())));
    }
    let mut wt = vec![0f32; n * k];
    wt.par_chunks_mut(k.max(1))
        .zip(w.par_chunks(row_bytes.max(1)))
        .try_for_each(|(dst, src)| crate::quant::dequantize(w_dtype, src, dst))?;
    out.par_chunks_mut(n.max(1)).zip(x.par_chunks(k.max(1))).for_each(|(o, xr)| {
        for (j, oj) in o.iter_mut().enumerate() {
            let wr = &wt[j * k..(j + 1) * k];
            *oj = wr.iter().zip(xr).map(|(a, b)| a * b).sum();
        }
    });
    Ok(())
}

/// The tensor-level matmul: `x [.., k]` f32 times `w [n, k]`.
pub fn matmul_tensor(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    expect_f32(x, "matmul")?;
    let (k, n) = match w.dims() {
        [n, k] => (*k, *n),
        d => return Err(Error::shape("matmul", format!("weight must be 2-D, got {d:?}"))),
    };
    if x.shape().last() != k {
        return Err(Error::shape("matmul", format!("x {:?} vs w {:?}", x.dims(), w.dims())));
    }
    let m = x.shape().rows();
    let mut out = vec![0f32; m * n];
    {
        let xr = TensorRead::new(x, "matmul")?;
        let wr = TensorRead::new(w, "matmul")?;
        matmul(xr.f32()?, m, k, wr.bytes(), w.dtype(), n, &mut out)?;
    }
    let mut dims = x.dims().to_vec();
    if let Some(l) = dims.last_mut() {
        *l = n;
    }
    f32_tensor(out, dims, x.device())
}
