//! The ops, one file per family, each over its kernel file in `kernels/`.

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
pub mod resample;
pub mod rope;
pub mod rotary;

use ferrite_tensor::{DType, Error, Result, Tensor};

use crate::{kernels, launch, ptr_of, Args, CudaBackend, DevicePtr};

/// The device address of f32 tensor `t`, or an error for other dtypes.
pub(crate) fn f32_ptr(t: &Tensor, op: &'static str) -> Result<DevicePtr> {
    if t.dtype() != DType::F32 {
        return Err(Error::UnsupportedDType { dtype: t.dtype(), op });
    }
    ptr_of(t, op)
}

/// The last dimension of `t` and its number of rows.
pub(crate) fn rows_and_width(t: &Tensor) -> (usize, usize) {
    let d = t.dims().last().copied().unwrap_or(1);
    (t.numel().checked_div(d).unwrap_or(0), d)
}

/// The kernels' float dtype code (0 f32, 1 f16, 2 bf16).
pub(crate) fn float_code(dtype: DType) -> Option<usize> {
    match dtype {
        DType::F32 => Some(0),
        DType::F16 => Some(1),
        DType::BF16 => Some(2),
        _ => None,
    }
}

/// Index of the largest value of each row (lowest index on ties).
pub fn argmax(be: &CudaBackend, x: &Tensor) -> Result<Vec<u32>> {
    let p = f32_ptr(x, "argmax")?;
    let (rows, d) = rows_and_width(x);
    if rows == 0 || d == 0 {
        return Ok(vec![0; rows]);
    }
    let out = be.temp_bytes(rows * 4)?;
    be.launch(&kernels::ARGMAX_F32, launch::per_row(rows, 256)?, Args::new().ptr(p).ptr(out.ptr).u(d)?)?;
    let mut bytes = vec![0u8; rows * 4];
    be.driver.download(out.ptr, &mut bytes)?;
    Ok(bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}
