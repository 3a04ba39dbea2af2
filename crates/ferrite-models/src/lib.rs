//! ferrite-models: model definitions written once against [`ferrite_tensor::Tensor`] ops.
//!
//! * [`llama`]: one decoder for the llama family: `llama` (SmolLM2), `qwen2` (Q/K/V biases,
//!   untied output) and `gemma3` (q/k norms, post norms, sliding-window layers, scaled
//!   embeddings, GeGLU). Config from GGUF metadata or a Hugging Face `config.json`.
//! * [`weights`]: one loader abstraction ([`WeightSource`]) over GGUF files and Hugging Face
//!   safetensors folders. Models ask for tensors by their GGUF names (unambiguous across the
//!   family, unlike Hugging Face's `post_attention_layernorm`, which is the pre-FFN norm in
//!   llama but a real post-attention norm in gemma); the Hugging Face source maps them.
//! * [`bert`]: BERT-style encoders (bert, roberta, xlm-roberta, nomic-bert) for sentence
//!   embeddings, configured by [`encoder_config`], with the sentence-transformers [`pooling`]
//!   (cls / mean / last token, L2 normalisation).
//! * [`diffusion`]: the FLUX.1 text-to-image pipeline (text encoders, MMDiT transformer, VAE
//!   decoder, flow-matching scheduler).
//! * [`batch`] and [`kv_cache`]: what one forward step reads (tokens, positions, the sequences
//!   and their KV-cache block tables) and the paged KV cache it writes.

pub mod batch;
pub mod bert;
pub mod config;
pub mod diffusion;
pub mod encoder_config;
pub mod error;
pub mod kv_cache;
pub mod llama;
pub mod pooling;
pub mod weights;

pub use batch::{Batch, SequenceSlice};
pub use bert::{Encoder, EncoderConfig};
pub use config::{Arch, LlamaConfig};
pub use error::{Error, Result};
pub use kv_cache::KvCache;
pub use llama::Llama;
pub use pooling::{Pooling, PoolingMode};
pub use weights::{load_weights, HfWeights, WeightSource};
