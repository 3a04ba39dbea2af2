//! `ferrite generate`: print the continuation of a prompt.

use std::io::Write;

use anyhow::{bail, Result};
use clap::Args;
use ferrite_scheduler::{Sampler, SamplingParams};

use super::ModelArgs;
use crate::generation::{device, load, single_cache, step};

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long)]
    pub prompt: String,
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(a: GenerateArgs) -> Result<()> {
    if !(a.temperature >= 0.0 && a.temperature.is_finite()) {
        bail!("--temperature must be a finite number >= 0");
    }
    if !(a.top_p > 0.0 && a.top_p <= 1.0) {
        bail!("--top-p must be in (0, 1]");
    }
    let dev = device(&a.model.device, a.model.threads)?;
    let m = load(&a.model.model, &dev)?;
    let prompt = m.tokenizer.encode(&a.prompt, true)?;
    if prompt.is_empty() {
        bail!("the prompt is empty after tokenization");
    }
    let ctx = m.model.config().context_length;
    if prompt.len() + a.max_tokens > ctx {
        bail!("prompt ({} tokens) + max tokens ({}) exceed the context of {ctx}", prompt.len(), a.max_tokens);
    }
    eprintln!("ferrite: {} ({} prompt tokens)", m.name, prompt.len());
    let (cache, table) = single_cache(&m.model, prompt.len() + a.max_tokens)?;
    let mut sampler =
        Sampler::new(SamplingParams { temperature: a.temperature, top_p: a.top_p, top_k: a.top_k, seed: a.seed });
    let mut logits = step(&m.model, &cache, &table, &prompt, 0)?;
    let mut stream = m.tokenizer.stream_decoder(true);
    let mut stdout = std::io::stdout().lock();
    for i in 0..a.max_tokens {
        let tok = sampler.sample(&logits);
        if m.tokenizer.is_eog(tok) {
            break;
        }
        // Only complete UTF-8 comes out (a character may span tokens).
        stdout.write_all(stream.push(tok)?.as_bytes())?;
        stdout.flush()?;
        if i + 1 < a.max_tokens {
            logits = step(&m.model, &cache, &table, &[tok], prompt.len() + i)?;
        }
    }
    stdout.write_all(stream.finish().as_bytes())?;
    let kv_bytes = cache.k.iter().chain(&cache.v).map(|t| t.len_bytes()).sum::<usize>();
    if let Some(peak) = crate::generation::peak_rss_bytes() {
        eprintln!("ferrite: peak_rss_bytes={peak} kv_cache_bytes={kv_bytes}");
    }
    writeln!(stdout)?;
    Ok(())
}
