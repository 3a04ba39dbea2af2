//! Command-line subcommands.

pub mod bench;
pub mod bench_image;
pub mod embed;
pub mod generate;
pub mod image;
pub mod serve;
pub mod step_bar;

use std::path::PathBuf;

use clap::Args;

/// Options every model-running subcommand shares.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// A .gguf file, a Hugging Face folder (config.json, safetensors, tokenizer.json), a
    /// sentence-transformers folder (embedding models), a diffusers FLUX folder (image models,
    /// with model_index.json), or a built-in model name (smollm2, qwen2.5-coder, gemma3),
    /// fetched when missing.
    #[arg(long)]
    pub model: PathBuf,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Compute device: cpu, wgpu or wgpu:ADAPTER (an index or part of the adapter's name; else
    /// FERRITE_WGPU_ADAPTER, else the first GPU, else a software device such as lavapipe), or
    /// cuda / cuda:N (an NVIDIA GPU by ordinal). `ferrite devices` lists them.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

impl ModelArgs {
    /// An engine builder for this model, device and thread count.
    pub fn engine(&self) -> ferrite::EngineBuilder {
        let mut b = ferrite::Engine::builder().model(self.model.to_string_lossy()).device(self.device.clone());
        if let Some(t) = self.threads {
            b = b.threads(t);
        }
        b
    }
}

/// Whether `path` is a diffusers pipeline folder (its `model_index.json` is there), which
/// `bench` times as an image model.
pub fn is_image_folder(path: &std::path::Path) -> bool {
    path.join("model_index.json").is_file()
}
