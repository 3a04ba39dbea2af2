//! Rotary embedding from caller-built angle tables (FLUX's 3-axis rope): pair `i` of every head
//! of token `t` rotated by `(cos[t, i], sin[t, i])`, as diffusers' `apply_rotary_emb`
//! (`use_real_unbind_dim=-1` is the interleaved layout, `-2` the NeoX one).

use rayon::prelude::*;

use crate::backend::RopeLayout;
use crate::cpu::{expect_f32, f32_tensor, TensorRead};
use crate::{Error, Result, Tensor};

/// Checks `x [tokens, heads, head_dim]` against `cos`/`sin [tokens, head_dim / 2]` (shared with
/// the other backends). Returns `[tokens, heads, head_dim]`.
pub fn check_rotary(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<[usize; 3]> {
    let [t, h, d] = match x.dims() {
        &[t, h, d] => [t, h, d],
        other => return Err(Error::shape("rotary", format!("x must be [tokens, heads, head_dim], got {other:?}"))),
    };
    if !d.is_multiple_of(2) || cos.dims() != [t, d / 2] || sin.dims() != [t, d / 2] {
        return Err(Error::shape("rotary", format!("x {:?}, cos {:?}, sin {:?}", x.dims(), cos.dims(), sin.dims())));
    }
    Ok([t, h, d])
}

/// Rotates `x [tokens, heads, head_dim]` by the angle tables.
pub fn rotary(x: &Tensor, cos: &Tensor, sin: &Tensor, layout: RopeLayout) -> Result<Tensor> {
    for t in [x, cos, sin] {
        expect_f32(t, "rotary")?;
    }
    let [_, h, d] = check_rotary(x, cos, sin)?;
    let half = d / 2;
    let mut out = crate::cpu::buffers::zeroed(x.numel());
    {
        let (xr, cr, sr) =
            (TensorRead::new(x, "rotary")?, TensorRead::new(cos, "rotary")?, TensorRead::new(sin, "rotary")?);
        let (xs, cs, ss) = (xr.f32()?, cr.f32()?, sr.f32()?);
        let token = |(t, (o, src)): (usize, (&mut [f32], &[f32]))| {
            let (c, s) = (&cs[t * half..(t + 1) * half], &ss[t * half..(t + 1) * half]);
            for (oh, xh) in o.chunks_exact_mut(d).zip(src.chunks_exact(d)) {
                for i in 0..half {
                    let (a, b) = match layout {
                        RopeLayout::Interleaved => (2 * i, 2 * i + 1),
                        RopeLayout::NeoX => (i, i + half),
                    };
                    let (x0, x1) = (xh[a], xh[b]);
                    oh[a] = x0 * c[i] - x1 * s[i];
                    oh[b] = x1 * c[i] + x0 * s[i];
                }
            }
        };
        let row = (h * d).max(1);
        if out.len() < super::PARALLEL_MIN_ELEMS {
            out.chunks_mut(row).zip(xs.chunks(row)).enumerate().for_each(token);
        } else {
            out.par_chunks_mut(row).zip(xs.par_chunks(row)).enumerate().with_min_len(16).for_each(token);
        }
    }
    f32_tensor(out, x.shape().clone(), x.device())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::{Error, RopeLayout};

    /// diffusers' `apply_rotary_emb` in f64: `x * cos + rotate(x) * sin` with each table entry
    /// repeated for both members of its pair.
    fn reference(x: &[f32], c: &[f32], s: &[f32], t: usize, h: usize, d: usize, layout: RopeLayout) -> Vec<f64> {
        let half = d / 2;
        let mut out = vec![0f64; x.len()];
        for tok in 0..t {
            for hh in 0..h {
                let base = (tok * h + hh) * d;
                for e in 0..d {
                    let (i, partner, sign) = match layout {
                        RopeLayout::Interleaved => (e / 2, e ^ 1, if e % 2 == 0 { -1.0 } else { 1.0 }),
                        RopeLayout::NeoX => {
                            if e < half {
                                (e, e + half, -1.0)
                            } else {
                                (e - half, e - half, 1.0)
                            }
                        }
                    };
                    let (cv, sv) = (c[tok * half + i] as f64, s[tok * half + i] as f64);
                    out[base + e] = x[base + e] as f64 * cv + sign * x[base + partner] as f64 * sv;
                }
            }
        }
        out
    }

    #[test]
    fn both_layouts_match_reference() {
        for (t, h, d) in [(5usize, 3usize, 8usize), (300, 4, 128), (1, 1, 2)] {
            let x = rand_vec(t * h * d, 10);
            let ang = rand_vec(t * d / 2, 11);
            let (c, s): (Vec<f32>, Vec<f32>) = ang.iter().map(|a| (a.cos(), a.sin())).unzip();
            for layout in [RopeLayout::Interleaved, RopeLayout::NeoX] {
                let got = tensor(&x, &[t, h, d])
                    .rotary(&tensor(&c, &[t, d / 2]), &tensor(&s, &[t, d / 2]), layout)
                    .unwrap()
                    .to_vec_f32()
                    .unwrap();
                assert_close(&got, &reference(&x, &c, &s, t, h, d, layout), 1e-6, 1e-6);
            }
        }
    }

    #[test]
    fn table_shapes_are_checked() {
        let x = tensor(&[1.0; 2 * 2 * 4], &[2, 2, 4]);
        let good = tensor(&[0.5; 4], &[2, 2]);
        assert!(x.rotary(&good, &good, RopeLayout::Interleaved).is_ok());
        let bad = tensor(&[0.5; 6], &[2, 3]);
        assert!(matches!(x.rotary(&bad, &good, RopeLayout::NeoX), Err(Error::Shape { .. })));
        assert!(matches!(x.rotary(&good, &bad, RopeLayout::NeoX), Err(Error::Shape { .. })));
        let odd = tensor(&[1.0; 6], &[2, 1, 3]);
        assert!(matches!(odd.rotary(&good, &good, RopeLayout::NeoX), Err(Error::Shape { .. })));
        assert!(matches!(tensor(&[1.0; 4], &[2, 2]).rotary(&good, &good, RopeLayout::NeoX), Err(Error::Shape { .. })));
    }
}
