//! Elementwise add/mul (with row broadcast), scale, and float casts.

use half::{bf16, f16};
use rayon::prelude::*;

use crate::cpu::{expect_f32, f32_tensor, CpuStorage, TensorRead};
use crate::{DType, Error, Result, Tensor};

/// `f(a, b)` elementwise, where `b` has `a`'s element count or is one row broadcast over `a`.
pub fn binary(a: &Tensor, b: &Tensor, op: &'static str, f: impl Fn(f32, f32) -> f32 + Sync) -> Result<Tensor> {
    expect_f32(a, op)?;
    expect_f32(b, op)?;
    let d = a.shape().last();
    let bn = b.numel();
    if bn != a.numel() && bn != d {
        return Err(Error::shape(op, format!("{:?} and {:?} do not broadcast", a.dims(), b.dims())));
    }
    let mut out = crate::cpu::buffers::overwritable(a.numel());
    {
        let (ar, br) = (TensorRead::new(a, op)?, TensorRead::new(b, op)?);
        let (av, bv) = (ar.f32()?, br.f32()?);
        let row = |(r, (o, x)): (usize, (&mut [f32], &[f32]))| {
            let y = if bn == d { bv } else { &bv[r * d..(r + 1) * d] };
            for ((o, &x), &y) in o.iter_mut().zip(x).zip(y) {
                *o = f(x, y);
            }
        };
        if out.len() < super::PARALLEL_MIN_ELEMS {
            out.chunks_mut(d.max(1)).zip(av.chunks(d.max(1))).enumerate().for_each(row);
        } else {
            out.par_chunks_mut(d.max(1)).zip(av.par_chunks(d.max(1))).enumerate().with_min_len(64).for_each(row);
        }
    }
    f32_tensor(out, a.shape().clone(), a.device())
}

pub fn scale(x: &Tensor, s: f32) -> Result<Tensor> {
    expect_f32(x, "scale")?;
    let out: Vec<f32> = TensorRead::new(x, "scale")?.f32()?.iter().map(|v| v * s).collect();
    f32_tensor(out, x.shape().clone(), x.device())
}

/// Converts to `dtype` (f32, f16 or bf16). Any source dtype, quantized included, is accepted.
pub fn cast(x: &Tensor, dtype: DType) -> Result<Tensor> {
    let mut f = crate::cpu::buffers::zeroed(x.numel());
    crate::quant::dequantize(x.dtype(), TensorRead::new(x, "cast")?.bytes(), &mut f)?;
    let bytes: Vec<u8> = match dtype {
        DType::F32 => return f32_tensor(f, x.shape().clone(), x.device()),
        DType::F16 => f.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect(),
        DType::BF16 => f.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes()).collect(),
        _ => return Err(Error::UnsupportedDType { dtype, op: "cast (target)" }),
    };
    let storage = std::sync::Arc::new(CpuStorage::from_bytes(&bytes));
    Tensor::from_storage(storage, x.device().clone(), dtype, x.shape().clone(), 0)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::DType;

    #[test]
    fn add_mul_scale_broadcast() {
        let a = rand_vec(6, 31);
        let b = rand_vec(3, 32);
        let ta = tensor(&a, &[2, 3]);
        let tb = tensor(&b, &[3]);
        let want_add: Vec<f64> = (0..6).map(|i| a[i] as f64 + b[i % 3] as f64).collect();
        let want_mul: Vec<f64> = (0..6).map(|i| a[i] as f64 * b[i % 3] as f64).collect();
        assert_close(&ta.add(&tb).unwrap().to_vec_f32().unwrap(), &want_add, 1e-6, 1e-6);
        assert_close(&ta.mul(&tb).unwrap().to_vec_f32().unwrap(), &want_mul, 1e-6, 1e-6);
        let want_scale: Vec<f64> = a.iter().map(|&v| v as f64 * 0.5).collect();
        assert_close(&ta.scale(0.5).unwrap().to_vec_f32().unwrap(), &want_scale, 0.0, 0.0);
        assert!(ta.add(&tensor(&a[..4], &[4])).is_err());
    }

    #[test]
    fn casts_round_trip() {
        let a = rand_vec(64, 33);
        let t = tensor(&a, &[2, 32]);
        for dt in [DType::F16, DType::BF16] {
            let c = t.cast(dt).unwrap();
            assert_eq!(c.dtype(), dt);
            let back = c.cast(DType::F32).unwrap().to_vec_f32().unwrap();
            let tol = if dt == DType::F16 { 2e-3 } else { 1.6e-2 };
            let want: Vec<f64> = a.iter().map(|&v| v as f64).collect();
            assert_close(&back, &want, 0.0, tol);
        }
        assert!(t.cast(DType::Q8_0).is_err());
    }
}
