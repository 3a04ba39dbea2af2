//! The adaptive-LayerNorm pieces of a diffusion transformer block, with one row per sample:
//! modulation `x * (1 + scale) + shift` and the gated residual `x + gate * y`.

use rayon::prelude::*;

use crate::cpu::{expect_f32, f32_tensor, TensorRead};
use crate::{Error, Result, Tensor};

/// Checks `x [n, t, d]` against per-sample rows `[n, d]` (and `y`, when given, against `x`).
/// Returns `(t, d)`. Shared with the other backends.
pub fn check_per_sample(op: &'static str, x: &Tensor, rows: &[&Tensor], y: Option<&Tensor>) -> Result<(usize, usize)> {
    let [n, t, d] = match x.dims() {
        &[n, t, d] => [n, t, d],
        other => return Err(Error::shape(op, format!("x must be [n, tokens, d], got {other:?}"))),
    };
    for r in rows {
        if r.dims() != [n, d] {
            return Err(Error::shape(op, format!("x {:?} needs [{n}, {d}] rows, got {:?}", x.dims(), r.dims())));
        }
    }
    if let Some(y) = y {
        if y.dims() != x.dims() {
            return Err(Error::shape(op, format!("x {:?} and y {:?}", x.dims(), y.dims())));
        }
    }
    Ok((t, d))
}

/// `out[s, i, :] = f(x[s, i, :], a[s, :], b[s, :])` elementwise, rows of sample `s` in parallel.
fn per_sample(
    op: &'static str,
    x: &Tensor,
    a: &Tensor,
    b: &Tensor,
    b_is_y: bool,
    f: impl Fn(f32, f32, f32) -> f32 + Sync,
) -> Result<Tensor> {
    for t in [x, a, b] {
        expect_f32(t, op)?;
    }
    let (t, d) = if b_is_y { check_per_sample(op, x, &[a], Some(b))? } else { check_per_sample(op, x, &[a, b], None)? };
    let mut out = crate::cpu::buffers::overwritable(x.numel());
    {
        let (xr, ar, br) = (TensorRead::new(x, op)?, TensorRead::new(a, op)?, TensorRead::new(b, op)?);
        let (xs, av, bv) = (xr.f32()?, ar.f32()?, br.f32()?);
        let row = |(r, (o, xrow)): (usize, (&mut [f32], &[f32]))| {
            let s = r / t.max(1);
            let arow = &av[s * d..(s + 1) * d];
            let brow = if b_is_y { &bv[r * d..(r + 1) * d] } else { &bv[s * d..(s + 1) * d] };
            for (((o, &xv), &a), &b) in o.iter_mut().zip(xrow).zip(arow).zip(brow) {
                *o = f(xv, a, b);
            }
        };
        let dd = d.max(1);
        if out.len() < super::PARALLEL_MIN_ELEMS {
            out.chunks_mut(dd).zip(xs.chunks(dd)).enumerate().for_each(row);
        } else {
            out.par_chunks_mut(dd)
                .zip(xs.par_chunks(dd))
                .enumerate()
                .with_min_len(super::rows_per_task(dd))
                .for_each(row);
        }
    }
    f32_tensor(out, x.shape().clone(), x.device())
}

/// `x * (1 + scale) + shift` of `x [n, t, d]` with `scale`/`shift [n, d]`.
pub fn modulate(x: &Tensor, scale: &Tensor, shift: &Tensor) -> Result<Tensor> {
    per_sample("modulate", x, scale, shift, false, |x, sc, sh| x * (1.0 + sc) + sh)
}

/// `x + gate * y` of `x`, `y [n, t, d]` with `gate [n, d]`.
pub fn gated_add(x: &Tensor, gate: &Tensor, y: &Tensor) -> Result<Tensor> {
    per_sample("gated_add", x, gate, y, true, |x, g, y| x + g * y)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::Error;

    #[test]
    fn modulate_and_gated_add_match_reference() {
        for (n, t, d) in [(2usize, 5usize, 7usize), (3, 100, 300), (1, 1, 1)] {
            let (x, y) = (rand_vec(n * t * d, 12), rand_vec(n * t * d, 13));
            let (a, b) = (rand_vec(n * d, 14), rand_vec(n * d, 15));
            let (xt, yt, at, bt) =
                (tensor(&x, &[n, t, d]), tensor(&y, &[n, t, d]), tensor(&a, &[n, d]), tensor(&b, &[n, d]));
            let m = xt.modulate(&at, &bt).unwrap().to_vec_f32().unwrap();
            let g = xt.gated_add(&at, &yt).unwrap().to_vec_f32().unwrap();
            let (mut want_m, mut want_g) = (vec![0f64; x.len()], vec![0f64; x.len()]);
            for s in 0..n {
                for i in 0..t {
                    for e in 0..d {
                        let at = (s * t + i) * d + e;
                        let (sc, sh) = (a[s * d + e] as f64, b[s * d + e] as f64);
                        want_m[at] = x[at] as f64 * (1.0 + sc) + sh;
                        want_g[at] = x[at] as f64 + sc * y[at] as f64;
                    }
                }
            }
            assert_close(&m, &want_m, 1e-6, 1e-6);
            assert_close(&g, &want_g, 1e-6, 1e-6);
        }
    }

    #[test]
    fn row_shapes_are_checked() {
        let x = tensor(&[1.0; 2 * 3 * 4], &[2, 3, 4]);
        let rows = tensor(&[0.5; 8], &[2, 4]);
        let wrong = tensor(&[0.5; 4], &[1, 4]);
        assert!(x.modulate(&rows, &rows).is_ok());
        assert!(matches!(x.modulate(&wrong, &rows), Err(Error::Shape { .. })));
        assert!(matches!(x.modulate(&rows, &wrong), Err(Error::Shape { .. })));
        assert!(matches!(x.gated_add(&rows, &rows), Err(Error::Shape { .. })));
        assert!(matches!(rows.modulate(&rows, &rows), Err(Error::Shape { .. })));
        assert!(x.gated_add(&rows, &x).is_ok());
    }
}
