//! ferrite-tensor: the foundation every other ferrite crate stands on.
//!
//! * [`Tensor`]: a shape, a [`DType`] and storage behind an `Arc`, living on a [`Device`].
//! * [`DType`]: f32, f16, bf16 and the GGUF block types (Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K).
//! * [`Backend`]: the small, fused op set a device implements (quantized matmul, norms, rope,
//!   softmax, gated activations, paged attention, ...). Storage is opaque to callers: nothing
//!   outside a backend assumes host-addressable memory, and results reach the host only through
//!   [`Tensor::to_vec_f32`] / [`Backend::download`], the one synchronisation point.
//! * [`cpu::CpuBackend`]: rayon threads plus run-time-detected AVX-512 / AVX2 kernels with a
//!   portable fallback. Quantized weights are read directly from their GGUF blocks.
//! * [`gguf`] and [`safetensors`]: memory-mapped model-file readers with typed errors.

pub mod backend;
pub mod cpu;
pub mod device;
pub mod dtype;
pub mod error;
pub mod gguf;
pub mod model_files;
pub mod quant;
pub mod safetensors;
pub mod shape;
pub mod tensor;

pub use backend::{
    attention_rows, check_attention, check_write_kv, concat_block_tables, Activation, AttentionDims, AttentionParams,
    AttentionSeq, Backend, BackendStorage, Conv2dParams, DenseAttention, RopeConfig, RopeLayout,
};
pub use device::Device;
pub use dtype::DType;
pub use error::{Error, Result};
pub use shape::Shape;
pub use tensor::Tensor;
