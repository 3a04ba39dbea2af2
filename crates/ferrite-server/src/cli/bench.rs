//! `ferrite bench`: prefill and decode throughput, as llama-bench's pp/tg tests measure them
//! (prefill of N prompt tokens in one batch; decode of M tokens one at a time from an empty
//! cache), after a warm-up run.

use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;

use super::ModelArgs;
use crate::generation::{device, load, single_cache, step};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, default_value_t = 512)]
    pub prompt_tokens: usize,
    #[arg(long, default_value_t = 128)]
    pub gen_tokens: usize,
    /// Timed repetitions; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub repetitions: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(a: BenchArgs) -> Result<()> {
    if a.prompt_tokens == 0 || a.gen_tokens == 0 || a.repetitions == 0 {
        bail!("--prompt-tokens, --gen-tokens and --repetitions must be positive");
    }
    let dev = device(&a.model.device, a.model.threads)?;
    let m = load(&a.model.model, &dev)?;
    let vocab = m.model.config().vocab as u32;
    // A fixed pseudo-random prompt (llama-bench also uses random tokens).
    let prompt: Vec<u32> = (0..a.prompt_tokens as u32).map(|i| (i.wrapping_mul(2654435761) >> 7) % vocab).collect();
    let (cache, table) = single_cache(&m.model, a.prompt_tokens.max(a.gen_tokens) + 1)?;
    // Warm-up: page the weights in, size the allocator.
    step(&m.model, &cache, &table, &prompt[..prompt.len().min(32)], 0)?;
    step(&m.model, &cache, &table, &[1], 0)?;
    let mut pp = Vec::new();
    let mut tg = Vec::new();
    for _ in 0..a.repetitions {
        let t = Instant::now();
        step(&m.model, &cache, &table, &prompt, 0)?;
        pp.push(a.prompt_tokens as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let mut tok = 1u32;
        for i in 0..a.gen_tokens {
            let logits = step(&m.model, &cache, &table, &[tok], i)?;
            tok = ferrite_scheduler::sampler::argmax(&logits);
        }
        tg.push(a.gen_tokens as f64 / t.elapsed().as_secs_f64());
    }
    let threads = a.model.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let line = serde_json::json!({
        "model": m.name,
        "threads": threads,
        "prompt_tokens": a.prompt_tokens,
        "gen_tokens": a.gen_tokens,
        "prefill_tok_s": (median(pp) * 100.0).round() / 100.0,
        "decode_tok_s": (median(tg) * 100.0).round() / 100.0,
    });
    println!("{line}");
    Ok(())
}
