//! Embedding throughput: sentences per second for requests of 1, 32 and 256 short sentences,
//! and for 256 concurrent one-sentence requests (combined by the embedding worker).
//!
//! `cargo run --release -p ferrite --example embed_bench -- [MODEL_DIR] [THREADS]`

use std::time::Instant;

use ferrite::{EmbeddingRequest, Engine};

const WORDS: [&str; 16] = [
    "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "people", "eat", "fresh", "bread",
    "near", "rivers",
];

/// `n` distinct short sentences (8 words, about 10 tokens with [CLS] and [SEP]).
fn sentences(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| (0..8).map(|j| WORDS[(i * 7 + j * 3 + i / 16) % WORDS.len()]).collect::<Vec<_>>().join(" "))
        .collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), ferrite::Error> {
    let mut args = std::env::args().skip(1);
    let model = args.next().unwrap_or_else(|| {
        ferrite_tensor::model_files::models_dir().join("all-MiniLM-L6-v2").to_string_lossy().into_owned()
    });
    let threads: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(2);
    let engine = Engine::builder().model(model).threads(threads).build()?;
    engine.embed(EmbeddingRequest::new("m", sentences(8))).await?;
    for batch in [1usize, 32, 256] {
        let reps = (512 / batch).max(2);
        let start = Instant::now();
        for _ in 0..reps {
            engine.embed(EmbeddingRequest::new("m", sentences(batch))).await?;
        }
        let s = start.elapsed().as_secs_f64();
        println!(
            "batch {batch:>3}: {:>8.1} sentences/s ({reps} requests, {threads} threads)",
            (reps * batch) as f64 / s
        );
    }
    let start = Instant::now();
    let reqs = sentences(256).into_iter().map(|t| engine.embed(EmbeddingRequest::new("m", t)));
    for r in futures_util::future::join_all(reqs).await {
        r?;
    }
    println!("256 concurrent requests of 1: {:>8.1} sentences/s", 256.0 / start.elapsed().as_secs_f64());
    Ok(())
}
