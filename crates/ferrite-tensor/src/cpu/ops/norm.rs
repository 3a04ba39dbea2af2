//! RMS norm and layer norm over the last dimension (RMS norm rounded as ggml's CPU backend).

use crate::cpu::{expect_f32, f32_tensor, TensorRead};
use crate::{Error, Result, Tensor};

use super::map_rows;

fn check_weight(x: &Tensor, w: &Tensor, op: &'static str) -> Result<()> {
    expect_f32(x, op)?;
    expect_f32(w, op)?;
    if w.numel() != x.shape().last() {
        return Err(Error::shape(op, format!("x {:?}, weight {:?}", x.dims(), w.dims())));
    }
    Ok(())
}

/// `x / sqrt(mean(x²) + eps) * w`, row-wise.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
    check_weight(x, w, "rms_norm")?;
    let d = x.shape().last();
    let mut out = crate::cpu::buffers::overwritable(x.numel());
    {
        let (xr, wr) = (TensorRead::new(x, "rms_norm")?, TensorRead::new(w, "rms_norm")?);
        let wv = wr.f32()?;
        map_rows(xr.f32()?, &mut out, d, |s, o| {
            // As ggml_compute_forward_rms_norm_f32: f32 squares summed in order in f64
            // (`ggml_float`), the mean rounded to f32, then `1/sqrtf(mean + eps)` in f32.
            let ss: f64 = s.iter().map(|v| (v * v) as f64).sum();
            let mean = (ss / d as f64) as f32;
            let inv = 1.0 / (mean + eps).sqrt();
            for ((o, s), w) in o.iter_mut().zip(s).zip(wv) {
                *o = s * inv * w;
            }
        });
    }
    f32_tensor(out, x.shape().clone(), x.device())
}

/// `(x - mean) / sqrt(var + eps) * w + b`, row-wise.
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f32) -> Result<Tensor> {
    check_weight(x, w, "layer_norm")?;
    check_weight(x, b, "layer_norm")?;
    let d = x.shape().last();
    let mut out = crate::cpu::buffers::overwritable(x.numel());
    {
        let (xr, wr, br) =
            (TensorRead::new(x, "layer_norm")?, TensorRead::new(w, "layer_norm")?, TensorRead::new(b, "layer_norm")?);
        let (wv, bv) = (wr.f32()?, br.f32()?);
        map_rows(xr.f32()?, &mut out, d, |s, o| {
            let mean = s.iter().sum::<f32>() / d as f32;
            let var = s.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
            let inv = 1.0 / (var + eps).sqrt();
            for (((o, s), w), b) in o.iter_mut().zip(s).zip(wv).zip(bv) {
                *o = (s - mean) * inv * w + b;
            }
        });
    }
    f32_tensor(out, x.shape().clone(), x.device())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;

    #[test]
    fn rms_norm_matches_f64() {
        let (rows, d) = (7, 576);
        let x = rand_vec(rows * d, 1);
        let w = rand_vec(d, 2);
        let got = tensor(&x, &[rows, d]).rms_norm(&tensor(&w, &[d]), 1e-5).unwrap().to_vec_f32().unwrap();
        let mut want = vec![0f64; rows * d];
        for r in 0..rows {
            let s = &x[r * d..(r + 1) * d];
            let ms = s.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / d as f64;
            for i in 0..d {
                want[r * d + i] = s[i] as f64 / (ms + 1e-5).sqrt() * w[i] as f64;
            }
        }
        assert_close(&got, &want, 1e-5, 1e-5);
    }

    #[test]
    fn layer_norm_matches_f64() {
        let (rows, d) = (5, 384);
        let x = rand_vec(rows * d, 3);
        let w = rand_vec(d, 4);
        let b = rand_vec(d, 5);
        let got = tensor(&x, &[rows, d])
            .layer_norm(&tensor(&w, &[d]), &tensor(&b, &[d]), 1e-12)
            .unwrap()
            .to_vec_f32()
            .unwrap();
        let mut want = vec![0f64; rows * d];
        for r in 0..rows {
            let s: Vec<f64> = x[r * d..(r + 1) * d].iter().map(|&v| v as f64).collect();
            let mean = s.iter().sum::<f64>() / d as f64;
            let var = s.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
            for i in 0..d {
                want[r * d + i] = (s[i] - mean) / (var + 1e-12).sqrt() * w[i] as f64 + b[i] as f64;
            }
        }
        assert_close(&got, &want, 1e-5, 1e-5);
    }

    #[test]
    fn wrong_weight_size_is_an_error() {
        let x = tensor(&[1.0; 8], &[2, 4]);
        assert!(x.rms_norm(&tensor(&[1.0; 3], &[3]), 1e-5).is_err());
    }
}
