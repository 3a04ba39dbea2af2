//! `ferrite bench`: prefill and decode throughput through the engine, as llama-bench's pp/tg
//! tests measure them (prefill of N prompt tokens in one batch; decode of M tokens), and with
//! `--concurrency C`, C streams at once as llama-batched-bench does (aggregate decode tok/s
//! and per-stream latency). On an image model it times image generation instead
//! ([`super::bench_image`]).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use ferrite::{CompletionRequest, Engine, Prompt};
use futures_util::StreamExt;

use super::ModelArgs;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, default_value_t = 512)]
    pub prompt_tokens: usize,
    #[arg(long, default_value_t = 128)]
    pub gen_tokens: usize,
    /// Streams decoded at once.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Timed repetitions; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub repetitions: usize,
    /// Image models: WIDTHxHEIGHT of the image.
    #[arg(long, default_value = "256x256")]
    pub size: String,
    /// Image models: denoising steps.
    #[arg(long, default_value_t = 4)]
    pub steps: u32,
}

pub(super) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// When each stream got its first and its last token.
struct StreamTimes {
    first: Duration,
    last: Duration,
    tokens: usize,
    /// When each chunk of tokens arrived, and how many it carried.
    arrivals: Vec<(Duration, usize)>,
}

/// Runs `prompts` at once, greedy, `gen` tokens each (end-of-generation ignored).
async fn round(engine: &Engine, prompts: &[Vec<u32>], gen: usize) -> Result<Vec<StreamTimes>> {
    let start = Instant::now();
    let streams = prompts.iter().map(|p| {
        let req = CompletionRequest::new("bench", Prompt::Tokens(p.clone()))
            .max_tokens(gen as u32)
            .temperature(0.0)
            .ignore_eos(true)
            .logprobs(0);
        async move {
            let mut s = engine.complete_stream(req)?;
            let mut t = StreamTimes { first: Duration::ZERO, last: Duration::ZERO, tokens: 0, arrivals: Vec::new() };
            while let Some(chunk) = s.next().await {
                let n =
                    chunk?.choices.iter().filter_map(|c| c.logprobs.as_ref()).map(|l| l.tokens.len()).sum::<usize>();
                if n > 0 {
                    if t.tokens == 0 {
                        t.first = start.elapsed();
                    }
                    t.tokens += n;
                    t.last = start.elapsed();
                    t.arrivals.push((t.last, n));
                }
            }
            anyhow::Ok(t)
        }
    });
    futures_util::future::join_all(streams).await.into_iter().collect()
}

pub fn run(a: BenchArgs) -> Result<()> {
    if a.prompt_tokens == 0 || a.gen_tokens < 2 || a.repetitions == 0 || a.concurrency == 0 {
        bail!("--prompt-tokens, --concurrency and --repetitions must be positive, --gen-tokens at least 2");
    }
    let c = a.concurrency;
    let threads = a.model.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if super::is_image_folder(&a.model.model) {
        return super::bench_image::run(a.model.engine().build()?, &a.size, a.steps, a.repetitions, threads);
    }
    let engine = a
        .model
        .engine()
        .max_batch_tokens(a.prompt_tokens.max(c))
        .max_num_seqs(c)
        .kv_cache_tokens(c * (a.prompt_tokens + a.gen_tokens + 16) + 64)
        .prefix_caching(false)
        .build()?;
    let vocab =
        engine.tokenizer().context("`bench` measures text models; this one has no tokenizer")?.vocab_size() as u32;
    // Fixed pseudo-random prompts, one per stream (llama-bench also uses random tokens).
    let prompts: Vec<Vec<u32>> = (0..c as u32)
        .map(|s| {
            (0..a.prompt_tokens as u32)
                .map(|i| (i.wrapping_add(s * 7919).wrapping_mul(2654435761) >> 7) % vocab)
                .collect()
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("tokio runtime")?;
    // Warm-up: page the weights in, size the allocator.
    rt.block_on(round(&engine, &prompts[..1], 2))?;
    let (mut pp, mut tg, mut agg, mut ttft, mut itl) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..a.repetitions {
        let times = rt.block_on(round(&engine, &prompts, a.gen_tokens))?;
        if times.iter().any(|t| t.tokens != a.gen_tokens) {
            bail!("a stream ended early");
        }
        let first = times.iter().map(|t| t.first).max().unwrap_or_default();
        let last = times.iter().map(|t| t.last).max().unwrap_or_default();
        pp.push((c * a.prompt_tokens) as f64 / first.as_secs_f64());
        let per_stream: Vec<f64> =
            times.iter().map(|t| (a.gen_tokens - 1) as f64 / (t.last - t.first).as_secs_f64()).collect();
        tg.push(median(per_stream));
        // Only tokens that arrive once every stream decodes: earlier streams start decoding
        // while later ones still prefill, and those tokens do not belong to this window.
        let in_window: usize =
            times.iter().flat_map(|t| &t.arrivals).filter(|(at, _)| *at > first).map(|(_, n)| n).sum();
        agg.push(in_window as f64 / (last - first).as_secs_f64().max(1e-9));
        ttft.push(median(times.iter().map(|t| t.first.as_secs_f64() * 1e3).collect()));
        itl.push(median(
            times.iter().map(|t| (t.last - t.first).as_secs_f64() * 1e3 / (a.gen_tokens - 1) as f64).collect(),
        ));
    }
    let r2 = |x: f64| (x * 100.0).round() / 100.0;
    let line = serde_json::json!({
        "model": engine.model_name(),
        "threads": threads,
        "prompt_tokens": a.prompt_tokens,
        "gen_tokens": a.gen_tokens,
        "concurrency": c,
        "prefill_tok_s": r2(median(pp)),
        "decode_tok_s": r2(median(tg)),
        "aggregate_decode_tok_s": r2(median(agg)),
        "ttft_ms": r2(median(ttft)),
        "inter_token_ms": r2(median(itl)),
    });
    println!("{line}");
    Ok(())
}
