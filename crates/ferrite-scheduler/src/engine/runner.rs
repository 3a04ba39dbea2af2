//! What the engine drives: a model stepping over a batch, and the text of its tokens.

use ferrite_chat::Tokenizer;
use ferrite_models::{Batch, KvCache, Llama};
use ferrite_tensor::DType;

/// One forward step of a model over its own paged KV cache.
pub trait StepModel: Send {
    /// Runs `batch` (whose block tables index this model's cache) and returns the logits of
    /// `batch.logits_rows`, row after row (`logits_rows.len() * vocab` values).
    fn forward(&mut self, batch: &Batch) -> Result<Vec<f32>, String>;
    /// Logits per row.
    fn vocab(&self) -> usize;
    /// Tokens per KV block.
    fn block_size(&self) -> usize;
    /// Blocks in the KV cache.
    fn num_blocks(&self) -> usize;
    /// The longest sequence the model accepts.
    fn context_length(&self) -> usize;
}

/// The bytes of each token and which tokens end a generation.
pub trait TokenText: Send + Sync {
    /// The bytes `id` stands for (empty for hidden control tokens).
    fn piece(&self, id: u32) -> &[u8];
    /// An end-of-generation token (EOS, EOT, `<|im_end|>`).
    fn is_eog(&self, id: u32) -> bool;
}

impl TokenText for Tokenizer {
    fn piece(&self, id: u32) -> &[u8] {
        self.token_to_piece(id, false).unwrap_or(&[])
    }

    fn is_eog(&self, id: u32) -> bool {
        Tokenizer::is_eog(self, id)
    }
}

/// A llama-family model with a KV cache of its own.
pub struct LlamaRunner {
    model: Llama,
    cache: KvCache,
}

impl LlamaRunner {
    /// A KV cache of `num_blocks` blocks of `block_size` tokens (f16) for `model`.
    pub fn new(model: Llama, num_blocks: usize, block_size: usize) -> ferrite_models::Result<LlamaRunner> {
        let cache = KvCache::new(model.config(), num_blocks.max(1), block_size, DType::F16, model.device())?;
        Ok(LlamaRunner { model, cache })
    }

    /// As many blocks as fit in `budget_bytes` (at least one sequence's worth is up to the caller).
    pub fn blocks_for_budget(model: &Llama, budget_bytes: usize, block_size: usize) -> usize {
        let per_block = KvCache::bytes_per_token(model.config(), DType::F16) * block_size;
        (budget_bytes / per_block.max(1)).max(1)
    }

    pub fn model(&self) -> &Llama {
        &self.model
    }
}

impl StepModel for LlamaRunner {
    fn forward(&mut self, batch: &Batch) -> Result<Vec<f32>, String> {
        let logits = self.model.forward(batch, &self.cache).map_err(|e| e.to_string())?;
        logits.to_vec_f32().map_err(|e| e.to_string())
    }

    fn vocab(&self) -> usize {
        self.model.config().vocab
    }

    fn block_size(&self) -> usize {
        self.cache.block_size
    }

    fn num_blocks(&self) -> usize {
        self.cache.num_blocks
    }

    fn context_length(&self) -> usize {
        self.model.config().context_length
    }
}
