//! GGUF block formats: layouts ([`blocks`]), bit-exact dequantization, and the 8-bit activation
//! blocks used by the integer dot products.

pub mod act;
pub mod blocks;
mod dequant;

use half::{bf16, f16};

use crate::{DType, Error, Result};

/// Decodes `dst.len()` elements of `dtype` from `src` into f32. `src` must hold exactly the
/// blocks for `dst.len()` elements. Works for every dtype (plain floats are converted).
pub fn dequantize(dtype: DType, src: &[u8], dst: &mut [f32]) -> Result<()> {
    let need = dtype.bytes_for(dst.len()).ok_or(Error::NotBlockAligned {
        dtype,
        numel: dst.len(),
        block: dtype.block_size(),
    })?;
    if src.len() != need {
        return Err(Error::shape(
            "dequantize",
            format!("{} elements of {dtype:?} need {need} bytes, got {}", dst.len(), src.len()),
        ));
    }
    match dtype {
        DType::F32 => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
            }
        }
        DType::F16 => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = f16::from_le_bytes([s[0], s[1]]).to_f32();
            }
        }
        DType::BF16 => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = bf16::from_le_bytes([s[0], s[1]]).to_f32();
            }
        }
        DType::Q4_0 => dequant::q4_0(src, dst),
        DType::Q4_1 => dequant::q4_1(src, dst),
        DType::Q5_0 => dequant::q5_0(src, dst),
        DType::Q8_0 => dequant::q8_0(src, dst),
        DType::Q4_K => dequant::q4_k(src, dst),
        DType::Q5_K => dequant::q5_k(src, dst),
        DType::Q6_K => dequant::q6_k(src, dst),
    }
    Ok(())
}
