//! A single-sequence generator: model + tokenizer + a KV cache + a sampler. (The scheduler of
//! issue #4 takes this over for many sequences at once.)

use std::path::Path;

use anyhow::{bail, Context, Result};
use ferrite_chat::Tokenizer;
use ferrite_models::{load_weights, Batch, KvCache, Llama};
use ferrite_tensor::{DType, Device};

/// KV-cache block size in tokens.
pub const BLOCK_SIZE: usize = 16;

pub struct Loaded {
    pub model: Llama,
    pub tokenizer: Tokenizer,
    pub name: String,
}

pub fn device(name: &str, threads: Option<usize>) -> Result<Device> {
    match name {
        "cpu" => Ok(match threads {
            Some(t) => Device::cpu_with_threads(t)?,
            None => Device::cpu(),
        }),
        other => bail!("device `{other}` is not available in this build (supported: cpu)"),
    }
}

pub fn load(path: &Path, device: &Device) -> Result<Loaded> {
    let (weights, cfg) = load_weights(path).with_context(|| format!("loading {}", path.display()))?;
    let tokenizer = match weights.gguf() {
        Some(g) => Tokenizer::from_gguf(g)?,
        None => Tokenizer::from_file(&path.join("tokenizer.json"), Some(&path.join("tokenizer_config.json")))?,
    };
    let model = Llama::load(weights.as_ref(), cfg, device)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(Loaded { model, tokenizer, name })
}

/// A KV cache for one sequence of up to `tokens` positions, and its block table.
pub fn single_cache(model: &Llama, tokens: usize) -> Result<(KvCache, Vec<u32>)> {
    let blocks = tokens.div_ceil(BLOCK_SIZE).max(1);
    let cache = KvCache::new(model.config(), blocks, BLOCK_SIZE, DType::F16, model.device())?;
    Ok((cache, (0..blocks as u32).collect()))
}

/// Runs `tokens` after `past` cached positions and returns the last position's logits.
pub fn step(model: &Llama, cache: &KvCache, table: &[u32], tokens: &[u32], past: usize) -> Result<Vec<f32>> {
    let logits = model.forward(&Batch::single(tokens, past, table.to_vec()), cache)?;
    Ok(logits.to_vec_f32()?)
}

/// The process's peak resident set size (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
