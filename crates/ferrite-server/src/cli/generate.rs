//! `ferrite generate`: print the continuation of a prompt.

use std::io::Write;

use anyhow::{bail, Result};
use clap::Args;
use ferrite::{CompletionRequest, FinishReason};

use super::ModelArgs;

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long)]
    pub prompt: String,
    #[arg(long, default_value_t = 128)]
    pub max_tokens: u32,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    #[arg(long, default_value_t = 0)]
    pub top_k: i32,
    #[arg(long, default_value_t = 0)]
    pub seed: i64,
}

pub fn run(a: GenerateArgs) -> Result<()> {
    if a.max_tokens == 0 {
        bail!("--max-tokens must be at least 1");
    }
    // A KV cache just big enough for this request (a token takes at least one byte of text).
    let kv_tokens = a.prompt.len() + 2 + a.max_tokens as usize;
    let engine = ferrite::blocking::Engine::new(a.model.engine().kv_cache_tokens(kv_tokens).build()?);
    let req = CompletionRequest::new(engine.0.model_name(), a.prompt.as_str())
        .max_tokens(a.max_tokens)
        .temperature(a.temperature)
        .top_p(a.top_p)
        .top_k(a.top_k)
        .seed(a.seed);
    let mut stdout = std::io::stdout().lock();
    let mut usage = None;
    for chunk in engine.complete_stream(req)? {
        let chunk = chunk?;
        for c in &chunk.choices {
            stdout.write_all(c.text.as_bytes())?;
            stdout.flush()?;
            if c.finish_reason == Some(FinishReason::Length) || c.finish_reason == Some(FinishReason::Stop) {
                usage = chunk.usage;
            }
        }
    }
    writeln!(stdout)?;
    if let Some(u) = usage {
        eprintln!("ferrite: {} prompt tokens, {} generated", u.prompt_tokens, u.completion_tokens);
    }
    if let Some(peak) = peak_rss_bytes() {
        eprintln!("ferrite: peak_rss_bytes={peak} kv_cache_bytes={}", engine.0.kv_cache_bytes());
    }
    Ok(())
}

/// The process's peak resident set size (Linux `VmHWM`), if known.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
