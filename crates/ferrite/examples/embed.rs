//! Sentence embeddings with all-MiniLM-L6-v2 (a sentence-transformers folder), or the folder
//! named by `FERRITE_EXAMPLE_EMBED_MODEL`; prints each pair's cosine similarity.
//!
//! `cargo run --release -p ferrite --example embed`

use ferrite::{EmbeddingRequest, Engine};

#[tokio::main(flavor = "current_thread")]
pub async fn main() -> Result<(), ferrite::Error> {
    let model = std::env::var("FERRITE_EXAMPLE_EMBED_MODEL").unwrap_or_else(|_| {
        ferrite_tensor::model_files::models_dir().join("all-MiniLM-L6-v2").to_string_lossy().into_owned()
    });
    let engine = Engine::builder().model(model).build()?;
    let texts = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."];
    let req = EmbeddingRequest::new("all-MiniLM-L6-v2", texts.iter().map(|t| t.to_string()).collect::<Vec<_>>());
    let answer = engine.embed(req).await?;
    let vectors: Vec<Vec<f32>> = answer.data.iter().filter_map(|d| d.embedding.to_f32()).collect();
    for i in 0..vectors.len() {
        for j in i + 1..vectors.len() {
            // The vectors are unit length, so the dot product is the cosine.
            let cos: f32 = vectors[i].iter().zip(&vectors[j]).map(|(a, b)| a * b).sum();
            println!("{cos:.4}  {:?} / {:?}", texts[i], texts[j]);
        }
    }
    println!("({} dimensions, {} tokens)", vectors.first().map_or(0, Vec::len), answer.usage.prompt_tokens);
    Ok(())
}
