//! Element types: plain floats and the GGUF (ggml) block-quantized formats.

/// The element type of a tensor. Quantized types store `block_size()` weights in
/// `type_size()` bytes, exactly as ggml lays them out, so GGUF data is used in place.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q8_0,
    Q4_K,
    Q5_K,
    Q6_K,
}

/// Elements in a K-quant super-block.
pub const QK_K: usize = 256;

impl DType {
    pub const ALL: [DType; 10] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q8_0,
        DType::Q4_K,
        DType::Q5_K,
        DType::Q6_K,
    ];

    /// The code of a GGUF block type in the GPU kernels' block decoders (`shaders/quant_blocks.wgsl`,
    /// `kernels/quant.cuh`): 0 Q4_0, 1 Q4_1, 2 Q5_0, 3 Q8_0, 4 Q4_K, 5 Q5_K, 6 Q6_K; `None` for
    /// the float types.
    pub const fn block_code(self) -> Option<usize> {
        match self {
            DType::F32 | DType::F16 | DType::BF16 => None,
            DType::Q4_0 => Some(0),
            DType::Q4_1 => Some(1),
            DType::Q5_0 => Some(2),
            DType::Q8_0 => Some(3),
            DType::Q4_K => Some(4),
            DType::Q5_K => Some(5),
            DType::Q6_K => Some(6),
        }
    }

    /// Elements per block (1 for plain floats).
    pub const fn block_size(self) -> usize {
        match self {
            DType::F32 | DType::F16 | DType::BF16 => 1,
            DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q8_0 => 32,
            DType::Q4_K | DType::Q5_K | DType::Q6_K => QK_K,
        }
    }

    /// Bytes per block (bytes per element for plain floats).
    pub const fn type_size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Q4_0 => 2 + 16,
            DType::Q4_1 => 2 + 2 + 16,
            DType::Q5_0 => 2 + 4 + 16,
            DType::Q8_0 => 2 + 32,
            DType::Q4_K => 2 + 2 + 12 + 128,
            DType::Q5_K => 2 + 2 + 12 + 32 + 128,
            DType::Q6_K => 128 + 64 + 16 + 2,
        }
    }

    pub const fn is_quantized(self) -> bool {
        self.block_size() > 1
    }

    pub const fn is_float(self) -> bool {
        !self.is_quantized()
    }

    /// Bytes needed for `numel` elements, or `None` when `numel` is not a whole number of blocks
    /// (or the size overflows).
    pub fn bytes_for(self, numel: usize) -> Option<usize> {
        if !numel.is_multiple_of(self.block_size()) {
            return None;
        }
        (numel / self.block_size()).checked_mul(self.type_size())
    }

    /// The ggml type id used in GGUF tensor infos.
    pub const fn gguf_id(self) -> u32 {
        match self {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::Q4_0 => 2,
            DType::Q4_1 => 3,
            DType::Q5_0 => 6,
            DType::Q8_0 => 8,
            DType::Q4_K => 12,
            DType::Q5_K => 13,
            DType::Q6_K => 14,
            DType::BF16 => 30,
        }
    }

    /// The dtype of a ggml type id, `None` for ids we do not support.
    pub fn from_gguf_id(id: u32) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.gguf_id() == id)
    }

    /// The dtype of a safetensors dtype name (`F32`, `F16`, `BF16`).
    pub fn from_safetensors(name: &str) -> Option<DType> {
        match name {
            "F32" => Some(DType::F32),
            "F16" => Some(DType::F16),
            "BF16" => Some(DType::BF16),
            _ => None,
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gguf_ids_round_trip() {
        for d in DType::ALL {
            assert_eq!(DType::from_gguf_id(d.gguf_id()), Some(d));
        }
        assert_eq!(DType::from_gguf_id(7), None); // Q5_1: not supported
    }

    #[test]
    fn sizes_match_ggml() {
        // Sizes from ggml's block definitions (ggml-common.h).
        assert_eq!(DType::Q4_0.type_size(), 18);
        assert_eq!(DType::Q4_1.type_size(), 20);
        assert_eq!(DType::Q5_0.type_size(), 22);
        assert_eq!(DType::Q8_0.type_size(), 34);
        assert_eq!(DType::Q4_K.type_size(), 144);
        assert_eq!(DType::Q5_K.type_size(), 176);
        assert_eq!(DType::Q6_K.type_size(), 210);
        assert_eq!(DType::Q4_1.bytes_for(64), Some(40));
        assert_eq!(DType::Q4_K.bytes_for(100), None);
    }
}
