//! Command-line subcommands.

pub mod bench;
pub mod generate;
pub mod serve;

use std::path::PathBuf;

use clap::Args;

/// Options every model-running subcommand shares.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// A .gguf file or a Hugging Face folder (config.json, safetensors, tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Compute device: cpu (wgpu and cuda:N arrive with their backends).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}
