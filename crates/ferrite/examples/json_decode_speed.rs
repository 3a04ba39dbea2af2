//! Decode speed with and without grammar-constrained JSON (`response_format: json_object`):
//! greedy Qwen2.5-Coder, one stream, the same number of generated tokens both ways, on a prompt
//! whose JSON answer is longer than that. Runs alternate (free, constrained) so that a shared
//! machine's load falls on both alike; prints each run and the medians and their ratio.
//!
//! `cargo run --release -p ferrite --example json_decode_speed -- [MODEL] [THREADS] [TOKENS] [RUNS]`

use std::time::Instant;

use ferrite::{ChatCompletionRequest, ChatMessage, Engine, ResponseFormat};
use futures_util::StreamExt;

const PROMPT: &str = "Return a JSON object with a key \"products\" holding an array of 40 products, each with \
                      an id, a name, a price, a category and a list of tags.";

/// Decode tokens per second of one greedy run (first to last token), its token count, and
/// its text.
async fn run(engine: &Engine, constrained: bool, tokens: u32) -> Result<(f64, u32, String), ferrite::Error> {
    let mut req = ChatCompletionRequest::new("qwen", [ChatMessage::user(PROMPT)])
        .temperature(0.0)
        .max_tokens(tokens)
        .ignore_eos(true);
    if constrained {
        req = req.response_format(ResponseFormat::JsonObject);
    }
    let mut stream = engine.chat_stream(req)?;
    let (mut first, mut last, mut generated, mut text) = (None, Instant::now(), 0, String::new());
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        let now = Instant::now();
        if let Some(c) = chunk.choices.first() {
            text.push_str(c.delta.content.as_deref().unwrap_or(""));
            if c.delta.content.as_deref().is_some_and(|t| !t.is_empty()) && first.is_none() {
                first = Some(now);
            }
        }
        if let Some(u) = chunk.usage {
            generated = u.completion_tokens;
            last = now;
        }
    }
    let secs = last.duration_since(first.unwrap_or(last)).as_secs_f64();
    // Tokens after the first one, over the time from the first to the last.
    Ok((f64::from(generated.saturating_sub(1)) / secs.max(1e-9), generated, text))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), ferrite::Error> {
    let mut args = std::env::args().skip(1);
    let model = args.next().unwrap_or_else(|| "qwen2.5-coder".into());
    let threads: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(2);
    let tokens: u32 = args.next().and_then(|t| t.parse().ok()).unwrap_or(128);
    let runs: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(5);
    let engine = Engine::builder().model(model).threads(threads).kv_cache_mb(128).build()?;
    // Warm up, and build the grammar vocabulary (once per engine) outside the timed runs.
    run(&engine, true, 4).await?;
    let (mut free, mut constrained) = (Vec::new(), Vec::new());
    for i in 0..runs {
        for c in [false, true] {
            let (speed, n, text) = run(&engine, c, tokens).await?;
            let open = serde_json::from_str::<serde_json::Value>(&text).is_err();
            let kind = if c { "json_object" } else { "free" };
            println!("run {i} {kind:>11}: {speed:7.2} tok/s over {n} tokens (JSON still open: {open})");
            if c { &mut constrained } else { &mut free }.push(speed);
        }
    }
    let (f, c) = (median(&mut free), median(&mut constrained));
    println!("median free {f:.2} tok/s, json_object {c:.2} tok/s, ratio {:.3} ({threads} threads)", c / f);
    Ok(())
}
