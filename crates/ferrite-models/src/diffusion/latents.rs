//! FLUX's latent packing: `[n, c, 2 rows, 2 cols]` latents travel through the transformer as
//! `[n, rows*cols, 4c]` tokens of 2x2 patches, token `(y/2) * cols + x/2`, feature
//! `ch * 4 + (y % 2) * 2 + x % 2`. These run on the host: latents are small.

/// Packed tokens `[n, rows*cols, 4c]` to NHWC latents `[n, 2 rows, 2 cols, c]`.
pub fn unpack_nhwc(packed: &[f32], n: usize, rows: usize, cols: usize) -> Vec<f32> {
    let f = packed.len() / (n * rows * cols).max(1);
    let c = f / 4;
    let (h, w) = (2 * rows, 2 * cols);
    let mut out = vec![0f32; n * h * w * c];
    for b in 0..n {
        for y in 0..h {
            for x in 0..w {
                let tok = (y / 2) * cols + x / 2;
                let sub = (y % 2) * 2 + x % 2;
                for ch in 0..c {
                    out[((b * h + y) * w + x) * c + ch] = packed[(b * rows * cols + tok) * f + ch * 4 + sub];
                }
            }
        }
    }
    out
}

/// NCHW latents `[n, c, 2 rows, 2 cols]` (as diffusers draws them) to packed tokens.
pub fn pack_nchw(latents: &[f32], n: usize, c: usize, rows: usize, cols: usize) -> Vec<f32> {
    let (h, w) = (2 * rows, 2 * cols);
    let f = 4 * c;
    let mut out = vec![0f32; latents.len()];
    for b in 0..n {
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let tok = (y / 2) * cols + x / 2;
                    let sub = (y % 2) * 2 + x % 2;
                    out[(b * rows * cols + tok) * f + ch * 4 + sub] = latents[((b * c + ch) * h + y) * w + x];
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_then_unpack_is_a_transpose_to_nhwc() {
        let (n, c, rows, cols) = (2, 3, 2, 3);
        let nchw: Vec<f32> = (0..n * c * 4 * rows * cols).map(|i| i as f32).collect();
        let packed = pack_nchw(&nchw, n, c, rows, cols);
        let nhwc = unpack_nhwc(&packed, n, rows, cols);
        let (h, w) = (2 * rows, 2 * cols);
        for b in 0..n {
            for ch in 0..c {
                for y in 0..h {
                    for x in 0..w {
                        assert_eq!(nhwc[((b * h + y) * w + x) * c + ch], nchw[((b * c + ch) * h + y) * w + x]);
                    }
                }
            }
        }
        // Token 1 of image 0 is the patch at latent (0, 2): feature 0 is channel 0 there.
        assert_eq!(packed[4 * c], nchw[2]);
    }
}
