//! Group normalisation of channels-last tensors (the VAE's `GroupNorm`, 32 groups).
//!
//! Statistics are two-pass in f64 (mean, then the mean squared deviation), so large activations
//! of a VAE decoder lose no precision; each pass reads the rows once, in blocks, summing per
//! channel (a group's channels are a few adjacent values of every row). The normalisation
//! itself is f32.

use rayon::prelude::*;

use crate::cpu::{expect_f32, f32_tensor, TensorRead};
use crate::{Error, Result, Tensor};

/// Checks the shapes of a group norm of `x [n, .., c]` in `groups` groups with `w`, `b [c]`;
/// returns `(n, c)`. Shared with the other backends.
pub fn check_group_norm(x: &Tensor, groups: usize, w: &Tensor, b: &Tensor) -> Result<(usize, usize)> {
    let dims = x.dims();
    if dims.len() < 2 {
        return Err(Error::shape("group_norm", format!("x must be [n, .., c], got {dims:?}")));
    }
    let (n, c) = (dims[0], dims[dims.len() - 1]);
    if groups == 0 || !c.is_multiple_of(groups) {
        return Err(Error::shape("group_norm", format!("{c} channels in {groups} groups")));
    }
    if w.dims() != [c] || b.dims() != [c] {
        return Err(Error::shape("group_norm", format!("x {dims:?}, w {:?}, b {:?}", w.dims(), b.dims())));
    }
    Ok((n, c))
}

/// Rows of `c` values summed per channel in f64 after `f(channel, value)`: blocks of rows
/// summed in parallel (one pass over memory, contiguous rows), then the blocks' sums added in
/// order, so the result does not depend on the thread count or timing.
fn channel_sums(rows: &[f32], c: usize, f: impl Fn(usize, f64) -> f64 + Sync) -> Vec<f64> {
    const BLOCK_ROWS: usize = 256;
    let blocks: Vec<Vec<f64>> = rows
        .par_chunks(BLOCK_ROWS * c)
        .map(|block| {
            let mut acc = vec![0f64; c];
            for row in block.chunks_exact(c) {
                for (ch, (a, &v)) in acc.iter_mut().zip(row).enumerate() {
                    *a += f(ch, v as f64);
                }
            }
            acc
        })
        .collect();
    blocks.into_iter().fold(vec![0f64; c], |mut t, b| {
        t.iter_mut().zip(&b).for_each(|(t, b)| *t += b);
        t
    })
}

/// `x [n, .., c]` normalised per (sample, group of `c / groups` channels) over all its positions,
/// then scaled by `w [c]` and shifted by `b [c]`.
pub fn group_norm(x: &Tensor, groups: usize, w: &Tensor, b: &Tensor, eps: f32) -> Result<Tensor> {
    for t in [x, w, b] {
        expect_f32(t, "group_norm")?;
    }
    let (n, c) = check_group_norm(x, groups, w, b)?;
    let positions = x.numel().checked_div(n * c).unwrap_or(0);
    let cg = c / groups;
    let mut out = crate::cpu::buffers::zeroed(x.numel());
    {
        let (xr, wr, br) =
            (TensorRead::new(x, "group_norm")?, TensorRead::new(w, "group_norm")?, TensorRead::new(b, "group_norm")?);
        let (xs, wv, bv) = (xr.f32()?, wr.f32()?, br.f32()?);
        let count = (positions * cg) as f64;
        // (mean, 1 / std) of each (sample, group), from per-channel sums over the rows.
        let mut stats: Vec<(f32, f32)> = Vec::with_capacity(n * groups);
        for sample in xs.chunks_exact((positions * c).max(1)).take(n) {
            let sums = channel_sums(sample, c, |_, v| v);
            let means: Vec<f64> = sums.chunks_exact(cg).map(|g| g.iter().sum::<f64>() / count).collect();
            let sq = channel_sums(sample, c, |ch, v| (v - means[ch / cg]).powi(2));
            stats.extend(sq.chunks_exact(cg).zip(&means).map(|(g, &mean)| {
                let var = g.iter().sum::<f64>() / count;
                (mean as f32, (1.0 / (var + eps as f64).sqrt()) as f32)
            }));
        }
        let rows_per_sample = positions.max(1);
        out.par_chunks_mut(c.max(1)).zip(xs.par_chunks(c.max(1))).enumerate().with_min_len(64).for_each(
            |(r, (o, xrow))| {
                let st = &stats[(r / rows_per_sample) * groups..][..groups];
                for (((o, &v), (&w, &b)), ch) in o.iter_mut().zip(xrow).zip(wv.iter().zip(bv)).zip(0..) {
                    let (mean, inv) = st[ch / cg];
                    *o = (v - mean) * inv * w + b;
                }
            },
        );
    }
    f32_tensor(out, x.shape().clone(), x.device())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::Error;

    fn reference(x: &[f32], n: usize, c: usize, groups: usize, w: &[f32], b: &[f32], eps: f64) -> Vec<f64> {
        let p = x.len() / (n * c);
        let cg = c / groups;
        let mut out = vec![0f64; x.len()];
        for s in 0..n {
            for g in 0..groups {
                let idx: Vec<usize> =
                    (0..p).flat_map(|pos| (g * cg..(g + 1) * cg).map(move |ch| (s * p + pos) * c + ch)).collect();
                let mean = idx.iter().map(|&i| x[i] as f64).sum::<f64>() / idx.len() as f64;
                let var = idx.iter().map(|&i| (x[i] as f64 - mean).powi(2)).sum::<f64>() / idx.len() as f64;
                for &i in &idx {
                    let ch = i % c;
                    out[i] = (x[i] as f64 - mean) / (var + eps).sqrt() * w[ch] as f64 + b[ch] as f64;
                }
            }
        }
        out
    }

    #[test]
    fn matches_f64_reference() {
        for (dims, groups) in [
            (vec![2usize, 5, 3, 64], 32usize),
            (vec![1, 7, 7, 12], 3),
            (vec![3, 6], 2),
            (vec![1, 33, 17, 32], 32),
            (vec![2, 4, 5], 1),
        ] {
            let (n, c) = (dims[0], dims[dims.len() - 1]);
            let numel: usize = dims.iter().product();
            // An offset and spread of the values, as a VAE's activations have.
            let x: Vec<f32> = rand_vec(numel, 7).iter().map(|v| v * 30.0 + 100.0).collect();
            let (w, b) = (rand_vec(c, 8), rand_vec(c, 9));
            let got = tensor(&x, &dims).group_norm(groups, &tensor(&w, &[c]), &tensor(&b, &[c]), 1e-6).unwrap();
            assert_eq!(got.dims(), &dims[..]);
            assert_close(&got.to_vec_f32().unwrap(), &reference(&x, n, c, groups, &w, &b, 1e-6), 2e-5, 2e-5);
        }
    }

    #[test]
    fn bad_groups_and_weights_are_errors() {
        let x = tensor(&[0.5; 2 * 3 * 6], &[2, 3, 6]);
        let (w, b) = (tensor(&[1.0; 6], &[6]), tensor(&[0.0; 6], &[6]));
        assert!(x.group_norm(3, &w, &b, 1e-6).is_ok());
        assert!(matches!(x.group_norm(4, &w, &b, 1e-6), Err(Error::Shape { .. })));
        assert!(matches!(x.group_norm(0, &w, &b, 1e-6), Err(Error::Shape { .. })));
        let w5 = tensor(&[1.0; 5], &[5]);
        assert!(matches!(x.group_norm(3, &w5, &b, 1e-6), Err(Error::Shape { .. })));
        assert!(matches!(tensor(&[1.0; 6], &[6]).group_norm(3, &w, &b, 1e-6), Err(Error::Shape { .. })));
    }
}
