//! 2-D convolution of NHWC images (the VAE's convolutions), as im2col in bounded tiles plus the
//! f32 matmul.
//!
//! With the weight `[c_out, kh, kw, c_in]` read as a `[c_out, kh·kw·c_in]` matrix, an output
//! pixel is one row of a matmul whose activation row is the `kh x kw x c_in` patch under it (in
//! the same order). The output pixels are cut into tiles of at most `SCRATCH_BYTES` (2 MiB) of patch
//! rows; each rayon task gathers one tile's patches (zeros where the patch leaves the image)
//! and multiplies it with [`crate::cpu::matmul::matmul`] straight into its rows of the output,
//! so the full im2col matrix never exists. A 1x1, stride-1, unpadded convolution is one plain
//! matmul over all pixels.
//!
//! f16/bf16 weights are widened to f32 once per call (a few MB for the largest VAE conv, next to
//! GFLOPs of work), so every dtype takes the packed f32 GEMM.

use std::borrow::Cow;

use rayon::prelude::*;

use crate::backend::Conv2dParams;
use crate::cpu::matmul::matmul;
use crate::cpu::{expect_f32, f32_tensor, TensorRead};
use crate::{DType, Error, Result, Tensor};

/// The bound on one tile's patch rows, in bytes: large enough that a tile's GEMM reuses each
/// packed weight block over hundreds of rows (the blocked path of `gemm_f32`).
const SCRATCH_BYTES: usize = 16 << 20;
/// Patch rows gathered per parallel task.
const GATHER_ROWS: usize = 64;
/// Patch rows per tile are a multiple of the GEMM's panel height.
const ROW_ALIGN: usize = crate::cpu::gemm_f32::PANEL;

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

/// Writes the patch rows of output pixels `first .. first + rows` into `cols [rows, patch]`.
fn gather_patches(x: &[f32], s: &ConvShape, first: usize, cols: &mut [f32]) {
    let c = s.c_in;
    let row_len = s.kw * c;
    for (r, col) in cols.chunks_exact_mut(s.patch()).enumerate() {
        let pix = first + r;
        let (b, oy, ox) = (pix / (s.h_out * s.w_out), pix / s.w_out % s.h_out, pix % s.w_out);
        // Kernel columns whose input column lies inside the image.
        let x0 = (ox * s.stride) as isize - s.padding as isize;
        let kx_lo = (-x0).clamp(0, s.kw as isize) as usize;
        let kx_hi = (s.w as isize - x0).clamp(0, s.kw as isize) as usize;
        for (ky, dst) in col.chunks_exact_mut(row_len).enumerate() {
            let iy = (oy * s.stride + ky) as isize - s.padding as isize;
            if iy < 0 || iy >= s.h as isize || kx_lo >= kx_hi {
                dst.fill(0.0);
                continue;
            }
            dst[..kx_lo * c].fill(0.0);
            dst[kx_hi * c..].fill(0.0);
            let src = ((b * s.h + iy as usize) * s.w) as isize + x0 + kx_lo as isize;
            let src = src as usize * c;
            dst[kx_lo * c..kx_hi * c].copy_from_slice(&x[src..src + (kx_hi - kx_lo) * c]);
        }
    }
}

/// The convolution on host slices: `x [n, h, w, c_in]`, `w [c_out, patch]` as f32 bytes, and
/// `out [pixels, c_out]`.
pub fn conv2d_f32(x: &[f32], w: &[u8], bias: Option<&[f32]>, s: &ConvShape, out: &mut [f32]) -> Result<()> {
    let (k, co) = (s.patch(), s.c_out);
    if s.is_pointwise() {
        matmul(x, s.pixels(), k, w, DType::F32, co, out)?;
    } else {
        // Tiles one after the other, each gathered by all threads and multiplied by a GEMM that
        // is itself parallel; one scratch buffer serves every tile.
        let tile = (SCRATCH_BYTES / (4 * k.max(1))).max(1).next_multiple_of(ROW_ALIGN).min(s.pixels());
        let mut cols = vec![0f32; tile * k];
        for (t, o) in out.chunks_mut(tile * co).enumerate() {
            let rows = o.len() / co;
            let c = &mut cols[..rows * k];
            c.par_chunks_mut(GATHER_ROWS * k)
                .enumerate()
                .for_each(|(j, part)| gather_patches(x, s, t * tile + j * GATHER_ROWS, part));
            matmul(c, rows, k, w, DType::F32, co, o)?;
        }
    }
    if let Some(b) = bias {
        out.par_chunks_mut(co).with_min_len(64).for_each(|o| o.iter_mut().zip(b).for_each(|(o, b)| *o += b));
    }
    Ok(())
}

/// `x [n, h, w, c_in]` convolved with `w [c_out, kh, kw, c_in]` plus `bias`.
pub fn conv2d(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, p: &Conv2dParams) -> Result<Tensor> {
    let s = ConvShape::check(x, w, bias, p)?;
    let mut out = vec![0f32; s.pixels() * s.c_out];
    if !out.is_empty() {
        let (xr, wr) = (TensorRead::new(x, "conv2d")?, TensorRead::new(w, "conv2d")?);
        let br = bias.map(|b| TensorRead::new(b, "conv2d")).transpose()?;
        let wf: Cow<'_, [u8]> = match w.dtype() {
            DType::F32 => Cow::Borrowed(wr.bytes()),
            dtype => {
                let mut f = vec![0f32; w.numel()];
                crate::quant::dequantize(dtype, wr.bytes(), &mut f)?;
                Cow::Owned(bytemuck::cast_slice(&f).to_vec())
            }
        };
        conv2d_f32(xr.f32()?, &wf, br.as_ref().map(|b| b.f32()).transpose()?, &s, &mut out)?;
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

    /// Many tiles (more output pixels than one tile holds, a partial last tile).
    #[test]
    fn many_tiles_with_a_partial_last_one() {
        // patch = 9·64 = 576 → tiles of 912 rows; 40x40x2 = 3200 pixels.
        check(2, 40, 40, 64, 3, 3, 1, 1, DType::F32);
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
