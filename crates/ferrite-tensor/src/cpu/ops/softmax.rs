//! Softmax over the last dimension.

use crate::cpu::{expect_f32, f32_tensor, TensorRead};
use crate::{Result, Tensor};

use super::map_rows;

/// Numerically stable softmax of one row into `out`.
pub(crate) fn softmax_row(s: &[f32], out: &mut [f32]) {
    let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        out.fill(0.0);
        return;
    }
    let mut sum = 0f32;
    for (o, &v) in out.iter_mut().zip(s) {
        *o = (v - max).exp();
        sum += *o;
    }
    let inv = 1.0 / sum;
    out.iter_mut().for_each(|o| *o *= inv);
}

pub fn softmax(x: &Tensor) -> Result<Tensor> {
    expect_f32(x, "softmax")?;
    let mut out = crate::cpu::buffers::zeroed(x.numel());
    {
        let xr = TensorRead::new(x, "softmax")?;
        map_rows(xr.f32()?, &mut out, x.shape().last(), softmax_row);
    }
    f32_tensor(out, x.shape().clone(), x.device())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;

    #[test]
    fn matches_f64() {
        let (rows, d) = (4, 1000);
        let mut x = rand_vec(rows * d, 11);
        x[5] = 80.0; // large values must not overflow
        let got = tensor(&x, &[rows, d]).softmax().unwrap().to_vec_f32().unwrap();
        let mut want = vec![0f64; rows * d];
        for r in 0..rows {
            let s = &x[r * d..(r + 1) * d];
            let m = s.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
            let z: f64 = s.iter().map(|&v| (v as f64 - m).exp()).sum();
            for i in 0..d {
                want[r * d + i] = (s[i] as f64 - m).exp() / z;
            }
        }
        assert_close(&got, &want, 1e-7, 1e-5);
    }
}
