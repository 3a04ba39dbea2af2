//! The paged KV cache: per layer, `[num_blocks * block_size, kv_heads, head_dim]` keys and values.

use ferrite_tensor::{DType, Device, Tensor};

use crate::{LlamaConfig, Result};

/// Keys and values of every layer, in fixed-size blocks shared by all sequences. Who owns which
/// block is the scheduler's business; a single sequence can use the table `[0, 1, 2, ...]`.
#[derive(Debug, Clone)]
pub struct KvCache {
    pub k: Vec<Tensor>,
    pub v: Vec<Tensor>,
    pub block_size: usize,
    pub num_blocks: usize,
}

impl KvCache {
    pub fn new(
        cfg: &LlamaConfig,
        num_blocks: usize,
        block_size: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<KvCache> {
        let shape = [num_blocks * block_size, cfg.n_kv_head, cfg.head_dim];
        let mut k = Vec::with_capacity(cfg.n_layer);
        let mut v = Vec::with_capacity(cfg.n_layer);
        for _ in 0..cfg.n_layer {
            k.push(Tensor::zeros(shape, dtype, device)?);
            v.push(Tensor::zeros(shape, dtype, device)?);
        }
        Ok(KvCache { k, v, block_size, num_blocks })
    }

    /// Bytes of cache per token of context, over all layers.
    pub fn bytes_per_token(cfg: &LlamaConfig, dtype: DType) -> usize {
        2 * cfg.n_layer * cfg.n_kv_head * cfg.head_dim * dtype.type_size()
    }
}
