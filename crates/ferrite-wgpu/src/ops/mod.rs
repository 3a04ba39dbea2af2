//! The ops, one file per family, each over its shader in `shaders/`.

pub mod attention;
pub mod attention_dense;
pub mod conv;
pub mod elementwise;
pub mod embedding;
pub mod group_norm;
pub mod layout;
pub mod matmul;
pub mod modulate;
pub mod norm;
pub(crate) mod quant;
pub mod resample;
pub mod rope;
pub mod rotary;

use ferrite_tensor::{DType, Error, Result, Tensor};

/// Fails unless `t` is f32; returns its element offset.
pub(crate) fn f32_offset(t: &Tensor, op: &'static str) -> Result<usize> {
    if t.dtype() != DType::F32 {
        return Err(Error::UnsupportedDType { dtype: t.dtype(), op });
    }
    Ok(t.offset_bytes() / 4)
}

/// The last dimension of `t` and its number of rows.
pub(crate) fn rows_and_width(t: &Tensor) -> (usize, usize) {
    let d = t.dims().last().copied().unwrap_or(1);
    (t.numel().checked_div(d).unwrap_or(0), d)
}
