//! [`EngineBuilder`]: what to load and how much memory and parallelism to give it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferrite_chat::{ChatTemplate, Tokenizer};
use ferrite_models::{load_weights, KvCache, Llama};
use ferrite_scheduler::{EngineConfig, EngineCore, EngineHandle, LlamaRunner, TokenText};
use ferrite_tensor::{DType, Device};

use super::{Engine, Inner};
use crate::Error;

/// Tokens per KV-cache block.
const BLOCK_SIZE: usize = 16;

/// Configures and loads an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineBuilder {
    model: Option<String>,
    device: String,
    threads: Option<usize>,
    kv_cache_mb: usize,
    kv_cache_tokens: Option<usize>,
    embedding_batch_tokens: usize,
    max_concurrent_images: usize,
    config: EngineConfig,
}

impl Default for EngineBuilder {
    fn default() -> Self {
        EngineBuilder {
            model: None,
            device: "cpu".into(),
            threads: None,
            kv_cache_mb: 512,
            kv_cache_tokens: None,
            embedding_batch_tokens: 4096,
            max_concurrent_images: 1,
            config: EngineConfig::default(),
        }
    }
}

impl EngineBuilder {
    /// The model: a `.gguf` file, a Hugging Face folder (`config.json`, safetensors,
    /// `tokenizer.json`), or the name of a built-in model (e.g. `smollm2`), which is fetched
    /// into the models folder (`$FERRITE_MODELS`, default `~/.cache/ferrite/models`) when
    /// missing.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// The device: `cpu` (the default), `wgpu` / `wgpu:ADAPTER` (feature `wgpu`; ADAPTER is an
    /// index or part of an adapter's name, else `FERRITE_WGPU_ADAPTER`, else the first GPU), or
    /// `cuda` / `cuda:N` (feature `cuda`; N is the GPU's ordinal, default 0).
    pub fn device(mut self, device: impl Into<String>) -> Self {
        self.device = device.into();
        self
    }

    /// Worker threads for the CPU backend (default: all cores).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads);
        self
    }

    /// Memory for the KV cache in MiB (default 512).
    pub fn kv_cache_mb(mut self, mb: usize) -> Self {
        self.kv_cache_mb = mb;
        self
    }

    /// Size the KV cache in tokens instead of MiB (rounded up to whole blocks).
    pub fn kv_cache_tokens(mut self, tokens: usize) -> Self {
        self.kv_cache_tokens = Some(tokens);
        self
    }

    /// Sequences decoded together at most (default 64).
    pub fn max_num_seqs(mut self, n: usize) -> Self {
        self.config.max_num_seqs = n.max(1);
        self
    }

    /// Waiting requests beyond which new ones are refused with [`Error::Overloaded`]
    /// (default 1024). The workers of embedding and image models bound their queues the same
    /// way.
    pub fn max_queue(mut self, n: usize) -> Self {
        self.config.max_queue = n;
        self
    }

    /// Tokens per scheduling step, prefill chunks and decode tokens together (default 512).
    pub fn max_batch_tokens(mut self, n: usize) -> Self {
        self.config.max_batch_tokens = n.max(1);
        self
    }

    /// Reuse the KV cache of shared prompt prefixes (default on).
    pub fn prefix_caching(mut self, on: bool) -> Self {
        self.config.prefix_caching = on;
        self
    }

    /// Tokens per forward pass of an embedding model (default 4096): waiting inputs are sorted
    /// by length and packed into batches of at most this many tokens.
    pub fn embedding_batch_tokens(mut self, n: usize) -> Self {
        self.embedding_batch_tokens = n.max(1);
        self
    }

    /// Image jobs an image model runs at once (default 1); more wait in its queue.
    pub fn max_concurrent_images(mut self, n: usize) -> Self {
        self.max_concurrent_images = n.max(1);
        self
    }

    /// Loads the model and starts the engine thread. A sentence-transformers or BERT-style
    /// folder (`modules.json`, or an encoder in `config.json`) gives an embedding engine; a
    /// diffusers folder whose `model_index.json` names a FLUX pipeline gives an image engine.
    pub fn build(self) -> Result<Engine, Error> {
        let spec = self.model.clone().ok_or_else(|| Error::Load("no model given (EngineBuilder::model)".into()))?;
        let path = resolve_model(&spec)?;
        let device = open_device(&self.device, self.threads)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or(spec.clone());
        if super::embed::is_embedding_model(&path) {
            let e =
                super::embed::Embedder::load(&path, name, &device, self.embedding_batch_tokens, self.config.max_queue)?;
            return Ok(Engine { model: super::Model::Embedder(Arc::new(e)) });
        }
        if super::image::is_image_model(&path) {
            let (concurrent, queue) = (self.max_concurrent_images, self.config.max_queue);
            let i = super::image::Imager::load(&path, name, &device, concurrent, queue)?;
            return Ok(Engine { model: super::Model::Imager(Arc::new(i)) });
        }
        let load = |e: &dyn std::fmt::Display| Error::Load(format!("{}: {e}", path.display()));
        let (weights, cfg) = load_weights(&path).map_err(|e| load(&e))?;
        let (tokenizer, template) = match weights.gguf() {
            Some(g) => {
                let tok = Tokenizer::from_gguf(g).map_err(|e| load(&e))?;
                let template = ChatTemplate::from_gguf(g, &tok).map_err(|e| load(&e))?;
                (tok, template)
            }
            None => {
                let config = path.join("tokenizer_config.json");
                let config = config.exists().then_some(config);
                let tok =
                    Tokenizer::from_file(&path.join("tokenizer.json"), config.as_deref()).map_err(|e| load(&e))?;
                let template = match &config {
                    Some(c) => ChatTemplate::from_tokenizer_config(c, &tok).map_err(|e| load(&e))?,
                    None => None,
                };
                (tok, template)
            }
        };
        let model = Llama::load(weights.as_ref(), cfg, &device).map_err(|e| load(&e))?;
        let blocks = match self.kv_cache_tokens {
            Some(t) => t.div_ceil(BLOCK_SIZE).max(1),
            None => LlamaRunner::blocks_for_budget(&model, self.kv_cache_mb << 20, BLOCK_SIZE),
        };
        let kv_cache_bytes = blocks * BLOCK_SIZE * KvCache::bytes_per_token(model.config(), DType::F16);
        let runner = LlamaRunner::new(model, blocks, BLOCK_SIZE).map_err(|e| load(&e))?;
        let tokenizer = Arc::new(tokenizer);
        let core = EngineCore::new(Box::new(runner), tokenizer.clone() as Arc<dyn TokenText>, self.config);
        let limits = core.limits();
        let handle = EngineHandle::spawn(core).map_err(|e| Error::Load(format!("starting the engine thread: {e}")))?;
        Ok(Engine {
            model: super::Model::Generator(Arc::new(Inner {
                handle,
                tokenizer,
                template: template.unwrap_or_else(ChatTemplate::chatml),
                name,
                limits,
                kv_cache_bytes,
                grammar: std::sync::OnceLock::new(),
            })),
        })
    }
}

/// A path as given, or a built-in model's file (fetched if missing).
fn resolve_model(spec: &str) -> Result<PathBuf, Error> {
    let path = Path::new(spec);
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    crate::models::ensure_builtin(spec)?
        .ok_or_else(|| Error::Load(format!("{spec}: no such file or folder, and not a built-in model name")))
}

/// The device `spec` names (`cpu`, `wgpu`, `wgpu:ADAPTER`, `cuda`, `cuda:N`).
fn open_device(spec: &str, threads: Option<usize>) -> Result<Device, Error> {
    let (kind, choice) = match spec.split_once(':') {
        Some((k, c)) => (k, Some(c)),
        None => (spec, None),
    };
    match (kind, choice) {
        ("cpu", None) => match threads {
            Some(t) => Device::cpu_with_threads(t).map_err(|e| Error::Load(e.to_string())),
            None => Ok(Device::cpu()),
        },
        #[cfg(feature = "wgpu")]
        ("wgpu", choice) => ferrite_wgpu::device(choice).map_err(|e| Error::Load(e.to_string())),
        #[cfg(not(feature = "wgpu"))]
        ("wgpu", _) => Err(Error::Load("device `wgpu` needs ferrite built with the `wgpu` feature".into())),
        #[cfg(feature = "cuda")]
        ("cuda", choice) => ferrite_cuda::device(choice).map_err(|e| Error::Load(e.to_string())),
        #[cfg(not(feature = "cuda"))]
        ("cuda", _) => Err(Error::Load("device `cuda` needs ferrite built with the `cuda` feature".into())),
        _ => Err(Error::Load(format!("unknown device `{spec}` (supported: cpu, wgpu, wgpu:ADAPTER, cuda, cuda:N)"))),
    }
}

/// What each compiled-in backend finds on this machine: one line per device, or a line saying
/// why there is none (`ferrite devices` prints it).
pub fn devices() -> Vec<String> {
    let mut out = vec![format!("cpu: {} threads", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))];
    #[cfg(feature = "wgpu")]
    {
        let adapters = ferrite_wgpu::describe_adapters();
        if adapters.is_empty() {
            out.push("wgpu: no Vulkan, Metal or DX12 adapter".into());
        }
        out.extend(adapters.into_iter().map(|a| format!("wgpu:{a}")));
    }
    #[cfg(not(feature = "wgpu"))]
    out.push("wgpu: not built in (feature `wgpu`)".into());
    #[cfg(feature = "cuda")]
    match ferrite_cuda::describe_devices() {
        Ok(list) if list.is_empty() => out.push("cuda: the driver sees no GPU".into()),
        Ok(list) => out.extend(list),
        Err(e) => out.push(format!("cuda: {e}")),
    }
    #[cfg(not(feature = "cuda"))]
    out.push("cuda: not built in (feature `cuda`)".into());
    out
}
