//! `ferrite embed`: print the embedding of each text, one JSON array per line.

use std::io::Write;

use anyhow::{Context, Result};
use clap::Args;
use ferrite::EmbeddingRequest;

use super::ModelArgs;

#[derive(Args, Debug)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Keep only this many dimensions (then re-normalise).
    #[arg(long)]
    pub dimensions: Option<u32>,
    /// The texts; one vector (line) each.
    #[arg(required = true)]
    pub texts: Vec<String>,
}

pub fn run(a: EmbedArgs) -> Result<()> {
    let engine = ferrite::blocking::Engine::new(a.model.engine().build()?);
    let mut req = EmbeddingRequest::new(engine.0.model_name(), a.texts);
    if let Some(d) = a.dimensions {
        req = req.dimensions(d);
    }
    let resp = engine.embed(req)?;
    let mut stdout = std::io::stdout().lock();
    for d in &resp.data {
        let v = d.embedding.to_f32().context("decoding an embedding")?;
        writeln!(stdout, "{}", serde_json::to_string(&v)?)?;
    }
    eprintln!("ferrite: {} inputs, {} tokens", resp.data.len(), resp.usage.prompt_tokens);
    Ok(())
}
