//! 2-D convolution of NHWC images (the VAE's convolutions) as an implicit GEMM.
//!
//! With the weight `[c_out, kh, kw, c_in]` read as a `[c_out, kh·kw·c_in]` matrix, an output
//! pixel is one row of a matmul whose activation row is the `kh x kw x c_in` patch under it (in
//! the same order). The packed GEMM of [`crate::cpu::gemm_blocked`] asks its activation source
//! for panels of 6 rows over a block of `k`; `Patches` writes those straight from the image
//! (zeros where a patch leaves it), so the im2col matrix never exists. f16/bf16 weights are
//! widened while the GEMM packs them. Bias is added in one pass over the output.

use rayon::prelude::*;

use crate::backend::Conv2dParams;
use crate::cpu::gemm_blocked::{self, PackA, PackedWeights, MR, ZEROS};
use crate::cpu::{expect_f32, f32_tensor, TensorRead};
use crate::{DType, Error, Result, Tensor};

/// The geometry of one convolution call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c_in: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub h_out: usize,
    pub w_out: usize,
    pub stride: usize,
    pub padding: usize,
}

impl ConvShape {
    /// Checks `x [n, h, w, c_in]` (f32), `w [c_out, kh, kw, c_in]` (f32/f16/bf16) and
    /// `bias [c_out]` (f32). Shared with the other backends.
    pub fn check(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, p: &Conv2dParams) -> Result<ConvShape> {
        expect_f32(x, "conv2d")?;
        if !matches!(w.dtype(), DType::F32 | DType::F16 | DType::BF16) {
            return Err(Error::UnsupportedDType { dtype: w.dtype(), op: "conv2d (weight)" });
        }
        let (&[n, h, wd, c_in], &[c_out, kh, kw, wc]) = (x.dims(), w.dims()) else {
            return Err(Error::shape(
                "conv2d",
                format!("x must be [n, h, w, c_in] and w [c_out, kh, kw, c_in], got {:?} and {:?}", x.dims(), w.dims()),
            ));
        };
        if wc != c_in || kh == 0 || kw == 0 {
            return Err(Error::shape("conv2d", format!("x {:?} with weight {:?}", x.dims(), w.dims())));
        }
        if let Some(b) = bias {
            expect_f32(b, "conv2d (bias)")?;
            if b.dims() != [c_out] {
                return Err(Error::shape("conv2d", format!("bias {:?} for {c_out} output channels", b.dims())));
            }
        }
        let (hp, wp) = (h + 2 * p.padding, wd + 2 * p.padding);
        if p.stride == 0 || hp < kh || wp < kw {
            return Err(Error::shape(
                "conv2d",
                format!("{kh}x{kw} kernel, stride {}, padding {} over {h}x{wd}", p.stride, p.padding),
            ));
        }
        Ok(ConvShape {
            n,
            h,
            w: wd,
            c_in,
            c_out,
            kh,
            kw,
            h_out: (hp - kh) / p.stride + 1,
            w_out: (wp - kw) / p.stride + 1,
            stride: p.stride,
            padding: p.padding,
        })
    }

    /// Elements of one patch row, `kh·kw·c_in`.
    pub fn patch(&self) -> usize {
        self.kh * self.kw * self.c_in
    }

    /// Output pixels, `n·h_out·w_out`.
    pub fn pixels(&self) -> usize {
        self.n * self.h_out * self.w_out
    }

    /// Whether this is a plain matmul over pixels (1x1, stride 1, no padding).
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.padding == 0
    }
}

/// The patch rows of a convolution's input, packed on demand for the GEMM.
struct Patches<'a> {
    x: &'a [f32],
    s: &'a ConvShape,
}

impl PackA for Patches<'_> {
    fn pack(&self, r0: usize, rows: usize, k0: usize, kc: usize, dst: &mut [f32]) {
        let s = self.s;
        let c = s.c_in;
        // Each row's pixel (image, y, x); rows past `rows` read zeros.
        let pix: [Option<(usize, usize, usize)>; MR] = std::array::from_fn(|i| {
            let p = r0 + i;
            (i < rows).then(|| (p / (s.h_out * s.w_out), p / s.w_out % s.h_out, p % s.w_out))
        });
        // Runs of channels at one kernel position (ky, kx), from patch element k0 on: the same
        // run for all six rows, each read from its own pixel (or zeros off the image).
        let (mut q, end) = (k0, k0 + kc);
        while q < end {
            let (pos, ch) = (q / c, q % c);
            let run = (c - ch).min(end - q);
            let src: [&[f32]; MR] = pix.map(|p| {
                let Some((b, oy, ox)) = p else { return &ZEROS[..run] };
                let iy = (oy * s.stride + pos / s.kw) as isize - s.padding as isize;
                let ix = (ox * s.stride + pos % s.kw) as isize - s.padding as isize;
                if iy < 0 || ix < 0 || iy >= s.h as isize || ix >= s.w as isize {
                    &ZEROS[..run]
                } else {
                    &self.x[((b * s.h + iy as usize) * s.w + ix as usize) * c + ch..][..run]
                }
            });
            gemm_blocked::interleave(src, &mut dst[(q - k0) * MR..][..run * MR]);
            q += run;
        }
    }
}

/// The convolution on host slices: `x [n, h, w, c_in]`, the weights `w` (`[c_out, patch]`
/// values of `w_dtype`: f32, f16 or bf16) and `out [pixels, c_out]`.
pub fn conv2d_f32(
    x: &[f32],
    w: &[u8],
    w_dtype: DType,
    bias: Option<&[f32]>,
    s: &ConvShape,
    out: &mut [f32],
) -> Result<()> {
    let (k, co) = (s.patch(), s.c_out);
    if x.len() != s.n * s.h * s.w * s.c_in {
        return Err(Error::shape("conv2d", format!("{} input values for {s:?}", x.len())));
    }
    let packed = PackedWeights::new(w, w_dtype, co, k)?;
    if s.is_pointwise() {
        gemm_blocked::gemm(&gemm_blocked::RowMajor { x, k }, s.pixels(), &packed, out)?;
    } else {
        gemm_blocked::gemm(&Patches { x, s }, s.pixels(), &packed, out)?;
    }
    if let Some(b) = bias {
        out.par_chunks_mut(co).with_min_len(64).for_each(|o| o.iter_mut().zip(b).for_each(|(o, b)| *o += b));
    }
    Ok(())
}

/// `x [n, h, w, c_in]` convolved with `w [c_out, kh, kw, c_in]` plus `bias`.
pub fn conv2d(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, p: &Conv2dParams) -> Result<Tensor> {
    let s = ConvShape::check(x, w, bias, p)?;
    let mut out = crate::cpu::buffers::overwritable(s.pixels() * s.c_out);
    if !out.is_empty() {
        let (xr, wr) = (TensorRead::new(x, "conv2d")?, TensorRead::new(w, "conv2d")?);
        let br = bias.map(|b| TensorRead::new(b, "conv2d")).transpose()?;
        conv2d_f32(xr.f32()?, wr.bytes(), w.dtype(), br.as_ref().map(|b| b.f32()).transpose()?, &s, &mut out)?;
    }
    f32_tensor(out, vec![s.n, s.h_out, s.w_out, s.c_out], x.device())
}

#[cfg(test)]
mod tests {
    use half::{bf16, f16};

    use super::super::test_util::*;
    use super::*;
    use crate::Device;

    /// Direct convolution in f64 from the widened weights.
    fn reference(x: &[f32], w: &[f32], bias: Option<&[f32]>, s: &ConvShape) -> Vec<f64> {
        let mut out = vec![0f64; s.pixels() * s.c_out];
        for b in 0..s.n {
            for oy in 0..s.h_out {
                for ox in 0..s.w_out {
                    for co in 0..s.c_out {
                        let mut acc = bias.map_or(0.0, |b| b[co] as f64);
                        for ky in 0..s.kh {
                            for kx in 0..s.kw {
                                let iy = (oy * s.stride + ky) as isize - s.padding as isize;
                                let ix = (ox * s.stride + kx) as isize - s.padding as isize;
                                if iy < 0 || ix < 0 || iy >= s.h as isize || ix >= s.w as isize {
                                    continue;
                                }
                                for ci in 0..s.c_in {
                                    let xv = x[((b * s.h + iy as usize) * s.w + ix as usize) * s.c_in + ci] as f64;
                                    let wv = w[((co * s.kh + ky) * s.kw + kx) * s.c_in + ci] as f64;
                                    acc += xv * wv;
                                }
                            }
                        }
                        out[((b * s.h_out + oy) * s.w_out + ox) * s.c_out + co] = acc;
                    }
                }
            }
        }
        out
    }

    /// One case: `[n, h, w, c_in]`, `[c_out, k, k]`, stride, padding, weight dtype.
    #[allow(clippy::too_many_arguments)]
    fn check(
        n: usize,
        h: usize,
        wd: usize,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        padding: usize,
        dtype: DType,
    ) {
        let dev = Device::cpu_with_threads(3).unwrap();
        let x = rand_vec(n * h * wd * c_in, 31);
        let wv = rand_vec(c_out * k * k * c_in, 32);
        let bias = rand_vec(c_out, 33);
        let (wt, wide): (Tensor, Vec<f32>) = match dtype {
            DType::F16 => {
                let h: Vec<f16> = wv.iter().map(|&v| f16::from_f32(v)).collect();
                (Tensor::from_f16(&h, vec![c_out, k, k, c_in], &dev).unwrap(), h.iter().map(|v| v.to_f32()).collect())
            }
            DType::BF16 => {
                let h: Vec<bf16> = wv.iter().map(|&v| bf16::from_f32(v)).collect();
                (Tensor::from_bf16(&h, vec![c_out, k, k, c_in], &dev).unwrap(), h.iter().map(|v| v.to_f32()).collect())
            }
            _ => (Tensor::from_f32(&wv, vec![c_out, k, k, c_in], &dev).unwrap(), wv.clone()),
        };
        let xt = Tensor::from_f32(&x, vec![n, h, wd, c_in], &dev).unwrap();
        let bt = Tensor::from_f32(&bias, vec![c_out], &dev).unwrap();
        let p = Conv2dParams { stride, padding };
        let s = ConvShape::check(&xt, &wt, Some(&bt), &p).unwrap();
        let got = xt.conv2d(&wt, Some(&bt), &p).unwrap();
        assert_eq!(got.dims(), &[n, s.h_out, s.w_out, c_out]);
        let tol = 1e-5 * (k * k * c_in) as f64;
        assert_close(&got.to_vec_f32().unwrap(), &reference(&x, &wide, Some(&bias), &s), tol, 1e-5);
        let plain = xt.conv2d(&wt, None, &p).unwrap();
        assert_close(&plain.to_vec_f32().unwrap(), &reference(&x, &wide, None, &s), tol, 1e-5);
    }

    #[test]
    fn three_by_three_padded_matches_f64() {
        check(1, 9, 7, 5, 6, 3, 1, 1, DType::F32);
        check(2, 16, 16, 32, 17, 3, 1, 1, DType::F32);
    }

    #[test]
    fn stride_two_with_and_without_padding() {
        check(2, 9, 8, 3, 4, 3, 2, 0, DType::F32);
        check(1, 10, 11, 7, 5, 3, 2, 1, DType::F32);
        check(1, 8, 8, 4, 4, 1, 2, 0, DType::F32);
    }

    #[test]
    fn one_by_one_is_a_matmul() {
        check(2, 5, 3, 12, 9, 1, 1, 0, DType::F32);
        check(1, 1, 1, 1, 1, 1, 1, 0, DType::F32);
    }

    #[test]
    fn half_precision_weights() {
        check(1, 7, 6, 8, 5, 3, 1, 1, DType::F16);
        check(2, 6, 5, 8, 3, 3, 2, 1, DType::BF16);
        check(1, 4, 4, 16, 8, 1, 1, 0, DType::F16);
    }

    /// Many row blocks and several blocks of `k` (patch = 9·64 = 576, channel runs cut by the
    /// 256-deep blocks), 40x40x2 = 3200 pixels.
    #[test]
    fn many_blocks_with_partial_last_ones() {
        check(2, 40, 40, 64, 3, 3, 1, 1, DType::F32);
        check(1, 12, 13, 100, 21, 3, 1, 1, DType::F32);
    }

    #[test]
    fn kernel_larger_than_image_and_padding_edges() {
        check(1, 2, 2, 3, 2, 3, 1, 1, DType::F32);
        check(1, 1, 3, 2, 2, 3, 1, 1, DType::F32);
    }

    #[test]
    fn bad_shapes_and_dtypes_are_errors() {
        let x = tensor(&[0.0; 2 * 4 * 4 * 3], &[2, 4, 4, 3]);
        let w = tensor(&[0.0; 5 * 9 * 3], &[5, 3, 3, 3]);
        let p = Conv2dParams { stride: 1, padding: 1 };
        assert!(x.conv2d(&w, None, &p).is_ok());
        let w_bad = tensor(&[0.0; 5 * 9 * 2], &[5, 3, 3, 2]);
        assert!(matches!(x.conv2d(&w_bad, None, &p), Err(Error::Shape { .. })));
        assert!(matches!(x.conv2d(&w, Some(&tensor(&[0.0; 4], &[4])), &p), Err(Error::Shape { .. })));
        assert!(matches!(x.conv2d(&w, None, &Conv2dParams { stride: 0, padding: 1 }), Err(Error::Shape { .. })));
        let small = tensor(&[0.0; 2 * 3], &[1, 1, 2, 3]);
        assert!(matches!(small.conv2d(&w, None, &Conv2dParams { stride: 1, padding: 0 }), Err(Error::Shape { .. })));
        assert!(matches!(tensor(&[0.0; 12], &[4, 3]).conv2d(&w, None, &p), Err(Error::Shape { .. })));
        let q = Tensor::from_bytes(&[0u8; 34 * 5], DType::Q8_0, vec![5, 32], &Device::cpu()).unwrap();
        assert!(matches!(x.conv2d(&q, None, &p), Err(Error::UnsupportedDType { .. })));
        let xh = x.cast(DType::F16).unwrap();
        assert!(matches!(xh.conv2d(&w, None, &p), Err(Error::UnsupportedDType { .. })));
    }
}
