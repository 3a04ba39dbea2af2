//! Nearest-neighbour upsampling of NHWC images by an integer factor.

use rayon::prelude::*;

use crate::cpu::{expect_f32, f32_tensor, TensorRead};
use crate::{Error, Result, Tensor};

/// `x [n, h, w, c]` to `[n, h·factor, w·factor, c]`, each pixel repeated `factor x factor` times.
pub fn upsample_nearest(x: &Tensor, factor: usize) -> Result<Tensor> {
    expect_f32(x, "upsample_nearest")?;
    let [n, h, w, c] = match x.dims() {
        &[n, h, w, c] => [n, h, w, c],
        d => return Err(Error::shape("upsample_nearest", format!("x must be [n, h, w, c], got {d:?}"))),
    };
    if factor == 0 {
        return Err(Error::shape("upsample_nearest", "factor 0"));
    }
    let out_row = w * factor * c;
    let mut out = crate::cpu::buffers::zeroed(n * h * factor * out_row);
    {
        let read = TensorRead::new(x, "upsample_nearest")?;
        let src = read.f32()?;
        // One input row `(b, y)` fills `factor` output rows.
        let fill = |(r, o): (usize, &mut [f32])| {
            let s = &src[r * w * c..(r + 1) * w * c];
            let (first, rest) = o.split_at_mut(out_row);
            for (px, dst) in s.chunks_exact(c.max(1)).zip(first.chunks_exact_mut(c.max(1) * factor)) {
                for d in dst.chunks_exact_mut(c.max(1)) {
                    d.copy_from_slice(px);
                }
            }
            for d in rest.chunks_exact_mut(out_row) {
                d.copy_from_slice(first);
            }
        };
        if out.len() < super::PARALLEL_MIN_ELEMS {
            out.chunks_mut((out_row * factor).max(1)).enumerate().for_each(fill);
        } else {
            out.par_chunks_mut(out_row * factor).enumerate().for_each(fill);
        }
    }
    f32_tensor(out, vec![n, h * factor, w * factor, c], x.device())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::Error;

    #[test]
    fn every_output_pixel_is_its_source_pixel() {
        for (n, h, w, c, f) in
            [(2usize, 3usize, 5usize, 3usize, 2usize), (1, 1, 1, 4, 3), (1, 40, 33, 64, 2), (1, 2, 3, 1, 1)]
        {
            let v = rand_vec(n * h * w * c, 4);
            let got = tensor(&v, &[n, h, w, c]).upsample_nearest(f).unwrap();
            assert_eq!(got.dims(), &[n, h * f, w * f, c]);
            let g = got.to_vec_f32().unwrap();
            for b in 0..n {
                for y in 0..h * f {
                    for x in 0..w * f {
                        for ch in 0..c {
                            let want = v[((b * h + y / f) * w + x / f) * c + ch];
                            assert_eq!(g[((b * h * f + y) * w * f + x) * c + ch], want);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn bad_rank_and_zero_factor_are_errors() {
        let x = tensor(&[1.0; 6], &[2, 3]);
        assert!(matches!(x.upsample_nearest(2), Err(Error::Shape { .. })));
        let x = tensor(&[1.0; 6], &[1, 2, 3, 1]);
        assert!(matches!(x.upsample_nearest(0), Err(Error::Shape { .. })));
    }
}
