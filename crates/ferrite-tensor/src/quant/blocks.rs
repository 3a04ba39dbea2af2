//! ggml block layouts, byte for byte as in GGUF files (ggml-common.h), viewable in place with
//! `bytemuck` (every block has 2-byte alignment and an even size).

use bytemuck::{Pod, Zeroable};
use half::f16;

use crate::dtype::QK_K;

/// 32 weights: `w = d * (q - 8)`, `q` 4-bit; low nibbles are weights 0..16, high 16..32.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_0 {
    pub d: f16,
    pub qs: [u8; 16],
}

/// 32 weights: `w = d * q + m`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; 16],
}

/// 32 weights: `w = d * (q - 16)`, `q` 5-bit: 4 low bits in `qs` (as Q4_0), bit 4 of weight
/// `j` in bit `j` of the little-endian u32 `qh`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_0 {
    pub d: f16,
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}

/// 32 weights: `w = d * q`, `q` signed 8-bit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; 32],
}

/// 256 weights in 8 sub-blocks of 32: `w = d * sc[j] * q - dmin * m[j]`, with 6-bit scales
/// and mins packed in `scales` (see `get_scale_min_k4`), `q` 4-bit: for each 64-weight half-pair,
/// 32 bytes whose low nibbles are sub-block `2i` and high nibbles sub-block `2i+1`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qs: [u8; QK_K / 2],
}

/// As [`BlockQ4K`] with a fifth bit per weight in `qh`: bit `2i` (low) / `2i+1` (high) of
/// byte `l` for the nibbles of 64-weight group `i`, position `l`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}

/// 256 weights in 16 sub-blocks of 16: `w = d * scales[j] * (q - 32)`, `q` 6-bit: 4 low bits
/// in `ql`, 2 high bits in `qh`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: f16,
}

/// The 6-bit scale and min of sub-block `j` (0..8) of a Q4_K/Q5_K block.
#[inline]
pub fn get_scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;

    #[test]
    fn block_sizes_match_dtype() {
        assert_eq!(std::mem::size_of::<BlockQ4_0>(), DType::Q4_0.type_size());
        assert_eq!(std::mem::size_of::<BlockQ4_1>(), DType::Q4_1.type_size());
        assert_eq!(std::mem::size_of::<BlockQ5_0>(), DType::Q5_0.type_size());
        assert_eq!(std::mem::size_of::<BlockQ8_0>(), DType::Q8_0.type_size());
        assert_eq!(std::mem::size_of::<BlockQ4K>(), DType::Q4_K.type_size());
        assert_eq!(std::mem::size_of::<BlockQ5K>(), DType::Q5_K.type_size());
        assert_eq!(std::mem::size_of::<BlockQ6K>(), DType::Q6_K.type_size());
    }
}
