//! Concatenation and narrowing of contiguous f32 tensors along any axis.
//!
//! A tensor split at `axis` is `outer` blocks (the product of the dims before `axis`) of
//! `dims[axis] · inner` contiguous values (`inner`: the product of the dims after `axis`), so
//! both ops are block copies.

use crate::cpu::{expect_f32, f32_tensor, TensorRead};
use crate::{Error, Result, Tensor};

/// `(outer, inner)` of `dims` split at `axis`. Shared with the other backends.
pub fn split(dims: &[usize], axis: usize) -> (usize, usize) {
    (dims[..axis].iter().product(), dims[axis + 1..].iter().product())
}

/// Checks the shapes of a concatenation of `xs` along `axis` (every other dimension equal) and
/// returns the output's dimensions. Shared with the other backends.
pub fn check_concat(xs: &[&Tensor], axis: usize) -> Result<Vec<usize>> {
    let first = xs.first().ok_or_else(|| Error::shape("concat", "no tensors"))?;
    let rank = first.dims().len();
    if axis >= rank {
        return Err(Error::shape("concat", format!("axis {axis} of a {rank}-D tensor")));
    }
    let mut total = 0usize;
    for x in xs {
        let d = x.dims();
        if d.len() != rank || (0..rank).any(|i| i != axis && d[i] != first.dims()[i]) {
            return Err(Error::shape("concat", format!("{:?} and {:?} along axis {axis}", first.dims(), d)));
        }
        total += d[axis];
    }
    let mut dims = first.dims().to_vec();
    dims[axis] = total;
    Ok(dims)
}

/// Checks `start .. start + len` along `axis` of `dims` and returns the narrowed dimensions.
/// Shared with the other backends.
pub fn check_narrow(dims: &[usize], axis: usize, start: usize, len: usize) -> Result<Vec<usize>> {
    if axis >= dims.len() || start.checked_add(len).is_none_or(|e| e > dims[axis]) {
        return Err(Error::shape("narrow", format!("{start}..{start}+{len} on axis {axis} of {dims:?}")));
    }
    let mut new_dims = dims.to_vec();
    new_dims[axis] = len;
    Ok(new_dims)
}

/// Concatenates `xs` along `axis`; every other dimension must agree.
pub fn concat(xs: &[&Tensor], axis: usize) -> Result<Tensor> {
    let dims = check_concat(xs, axis)?;
    for x in xs {
        expect_f32(x, "concat")?;
    }
    let first = xs[0];
    let (total, (outer, inner)) = (dims[axis], split(&dims, axis));
    let reads = xs.iter().map(|x| TensorRead::new(x, "concat")).collect::<Result<Vec<_>>>()?;
    let srcs = reads.iter().map(|r| r.f32()).collect::<Result<Vec<_>>>()?;
    let mut out = crate::cpu::buffers::with_capacity(outer * total * inner);
    for o in 0..outer {
        for (x, s) in xs.iter().zip(&srcs) {
            let block = x.dims()[axis] * inner;
            out.extend_from_slice(&s[o * block..(o + 1) * block]);
        }
    }
    f32_tensor(out, dims, first.device())
}

/// A contiguous copy of `x` restricted to `start .. start + len` along `axis`.
pub fn narrow(x: &Tensor, axis: usize, start: usize, len: usize) -> Result<Tensor> {
    expect_f32(x, "narrow")?;
    let dims = x.dims();
    let new_dims = check_narrow(dims, axis, start, len)?;
    let (outer, inner) = split(dims, axis);
    let read = TensorRead::new(x, "narrow")?;
    let s = read.f32()?;
    let block = dims[axis] * inner;
    let mut out = crate::cpu::buffers::with_capacity(outer * len * inner);
    for o in 0..outer {
        out.extend_from_slice(&s[o * block + start * inner..][..len * inner]);
    }
    f32_tensor(out, new_dims, x.device())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::{DType, Error, Tensor};

    /// The element of `dims` at multi-index `idx` (row-major).
    fn flat(dims: &[usize], idx: &[usize]) -> usize {
        idx.iter().zip(dims).fold(0, |a, (&i, &d)| a * d + i)
    }

    /// All multi-indices of `dims`.
    fn indices(dims: &[usize]) -> Vec<Vec<usize>> {
        let mut all = vec![vec![]];
        for &d in dims {
            all = all.into_iter().flat_map(|p| (0..d).map(move |i| [p.clone(), vec![i]].concat())).collect();
        }
        all
    }

    #[test]
    fn concat_then_narrow_on_every_axis() {
        let (a_dims, b_dims) = ([2usize, 3, 5, 4], [2usize, 3, 5, 4]);
        for axis in 0..4 {
            let mut bd = b_dims;
            bd[axis] = 3;
            let (av, bv) = (rand_vec(a_dims.iter().product(), 1), rand_vec(bd.iter().product(), 2));
            let (a, b) = (tensor(&av, &a_dims), tensor(&bv, &bd));
            let c = Tensor::concat(&[&a, &b], axis).unwrap();
            let mut cd = a_dims;
            cd[axis] += 3;
            assert_eq!(c.dims(), &cd);
            let cv = c.to_vec_f32().unwrap();
            for idx in indices(&cd) {
                let want = if idx[axis] < a_dims[axis] {
                    av[flat(&a_dims, &idx)]
                } else {
                    let mut j = idx.clone();
                    j[axis] -= a_dims[axis];
                    bv[flat(&bd, &j)]
                };
                assert_eq!(cv[flat(&cd, &idx)], want, "axis {axis} at {idx:?}");
            }
            // Narrowing the concatenation gives the parts back.
            assert_eq!(c.narrow(axis, 0, a_dims[axis]).unwrap().to_vec_f32().unwrap(), av);
            let back = c.narrow(axis, a_dims[axis], 3).unwrap();
            assert_eq!(back.dims(), &bd);
            assert_eq!(back.to_vec_f32().unwrap(), bv);
        }
    }

    #[test]
    fn narrow_middle_of_odd_axis() {
        let dims = [3usize, 7, 2];
        let v = rand_vec(42, 3);
        let n = tensor(&v, &dims).narrow(1, 2, 3).unwrap();
        assert_eq!(n.dims(), &[3, 3, 2]);
        let got = n.to_vec_f32().unwrap();
        for idx in indices(&[3, 3, 2]) {
            assert_eq!(got[flat(&[3, 3, 2], &idx)], v[flat(&dims, &[idx[0], idx[1] + 2, idx[2]])]);
        }
    }

    #[test]
    fn bad_axes_shapes_and_dtypes_are_errors() {
        let a = tensor(&[0.0; 6], &[2, 3]);
        let b = tensor(&[0.0; 8], &[2, 4]);
        assert!(matches!(Tensor::concat(&[&a, &b], 0), Err(Error::Shape { .. })));
        assert!(Tensor::concat(&[&a, &b], 1).is_ok());
        assert!(matches!(Tensor::concat(&[&a, &a], 2), Err(Error::Shape { .. })));
        assert!(matches!(Tensor::concat(&[], 0), Err(Error::Shape { .. })));
        assert!(matches!(a.narrow(1, 2, 2), Err(Error::Shape { .. })));
        assert!(matches!(a.narrow(2, 0, 1), Err(Error::Shape { .. })));
        assert!(matches!(a.narrow(1, usize::MAX, 2), Err(Error::Shape { .. })));
        let h = a.cast(DType::F16).unwrap();
        assert!(matches!(h.narrow(0, 0, 1), Err(Error::UnsupportedDType { .. })));
        assert!(matches!(Tensor::concat(&[&a, &h], 0), Err(Error::UnsupportedDType { .. })));
    }
}
