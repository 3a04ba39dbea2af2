//! [`FluxPipeline`]: prompts in, RGB images out, the way diffusers' `FluxPipeline` computes them.
//!
//! 1. The prompt goes through CLIP-L (pooled vector) and T5 (sequence), each with its tokenizer.
//! 2. Initial noise `[n, 16, H/8, W/8]` is packed into 2x2 patches: `[n, (H/16)(W/16), 64]`,
//!    feature `c*4 + dy*2 + dx`.
//! 3. Each scheduler step runs the transformer once and moves the latents along its output.
//! 4. The latents are unpacked to NHWC and decoded by the VAE; pixels are rounded to 8 bits.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

use ferrite_tensor::{Device, Tensor};

use super::clip::ClipTextEncoder;
use super::component::{read_config, Component, Loader, TensorSource};
use super::flux::{FluxConfig, FluxTransformer};
use super::gguf_source::BflGguf;
use super::latents::unpack_nhwc;
use super::prompt_tokens::PromptTokenizer;
use super::scheduler::SchedulerConfig;
use super::t5::T5Encoder;
use super::vae::{to_u8, VaeConfig, VaeDecoder};
use crate::{Error, Result};

/// One text-to-image job: `n` images of one prompt, generated in one batched pass.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRequest {
    pub prompt: String,
    /// Only for pipelines with true classifier-free guidance; FLUX rejects it.
    pub negative_prompt: Option<String>,
    pub width: usize,
    pub height: usize,
    pub n: usize,
    /// Denoising steps; `None` takes the pipeline's default (4 for schnell-style configs).
    pub steps: Option<usize>,
    /// Distilled guidance (only where the transformer has a guidance embedding).
    pub guidance_scale: Option<f32>,
    /// Seed of the initial noise; `None` draws one.
    pub seed: Option<u64>,
}

/// An 8-bit RGB image, rows top to bottom, 3 bytes per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

/// Why [`FluxPipeline::validate`] refused a request: the request field at fault (named as in
/// OpenAI's Images API and its extensions) and a message fit for an HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidImageRequest {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> InvalidImageRequest {
    InvalidImageRequest { field, message: message.into() }
}

/// The most images one request may ask for.
pub const MAX_IMAGES: usize = 10;
/// The most denoising steps one request may ask for.
pub const MAX_STEPS: usize = 1000;
/// FluxPipeline's default distilled guidance.
const DEFAULT_GUIDANCE: f32 = 3.5;

/// `model_index.json`: the pipeline class and its components.
#[derive(Debug, Deserialize)]
struct ModelIndex {
    #[serde(rename = "_class_name")]
    class_name: String,
}

/// Text embeddings of a batch of prompts, as the transformer consumes them.
#[derive(Debug)]
pub struct PromptEmbeddings {
    /// CLIP's pooled vectors, `[n, pooled_projection_dim]`.
    pub pooled: Tensor,
    /// T5's sequence output, `[n, L, joint_attention_dim]`.
    pub sequence: Tensor,
}

/// A loaded FLUX pipeline.
#[derive(Debug)]
pub struct FluxPipeline {
    device: Device,
    tokenizer: PromptTokenizer,
    tokenizer_2: PromptTokenizer,
    clip: ClipTextEncoder,
    t5: T5Encoder,
    transformer: FluxTransformer,
    vae: VaeDecoder,
    scheduler: SchedulerConfig,
    max_sequence_length: usize,
}

/// The transformer's weights: diffusers safetensors, or one GGUF file with the original
/// Black Forest Labs names (as the common quantized FLUX files are).
fn transformer_source(dir: &Path) -> Result<Box<dyn TensorSource>> {
    let ggufs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| Error::Io { path: dir.display().to_string(), source })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    match Component::open(dir) {
        Ok(c) => Ok(Box::new(c)),
        Err(e) => match ggufs.as_slice() {
            [one] => Ok(Box::new(BflGguf::open(one)?)),
            [] => Err(e),
            _ => Err(Error::Config(format!("{}: more than one .gguf transformer", dir.display()))),
        },
    }
}

impl FluxPipeline {
    /// Loads a diffusers folder (`model_index.json`, `transformer/`, `vae/`, `text_encoder/`,
    /// `text_encoder_2/`, `tokenizer/`, `tokenizer_2/`, `scheduler/`).
    pub fn load(dir: &Path, device: &Device) -> Result<FluxPipeline> {
        Self::load_with_transformer(dir, None, device)
    }

    /// [`FluxPipeline::load`] with the transformer's weights taken from `transformer` instead
    /// of `transformer/` (e.g. a quantized GGUF file with the original FLUX names, as
    /// city96's FLUX.1-schnell-gguf files are; `transformer/config.json` still describes it).
    pub fn load_with_transformer(dir: &Path, transformer: Option<&Path>, device: &Device) -> Result<FluxPipeline> {
        let index_path = dir.join("model_index.json");
        let text = std::fs::read_to_string(&index_path)
            .map_err(|source| Error::Io { path: index_path.display().to_string(), source })?;
        let index: ModelIndex =
            serde_json::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", index_path.display())))?;
        if !index.class_name.starts_with("Flux") {
            return Err(Error::Config(format!(
                "{}: pipeline `{}` is not a FLUX pipeline",
                index_path.display(),
                index.class_name
            )));
        }
        let tdir = dir.join("transformer");
        let tcfg: FluxConfig = read_config(&tdir)?;
        let tsrc: Box<dyn TensorSource> = match transformer {
            Some(p) if p.extension().is_some_and(|x| x == "gguf") => Box::new(BflGguf::open(p)?),
            Some(p) => Box::new(Component::open(p)?),
            None => transformer_source(&tdir)?,
        };
        let transformer = FluxTransformer::load(tcfg, &Loader { src: tsrc.as_ref(), device })?;
        let vdir = dir.join("vae");
        let vcfg: VaeConfig = read_config(&vdir)?;
        let vae = VaeDecoder::load(vcfg, &Loader { src: &Component::open(&vdir)?, device })?;
        let tokenizer_2 = PromptTokenizer::load(&dir.join("tokenizer_2"))?;
        let max_sequence_length = tokenizer_2.model_max_length().clamp(1, 512);
        Ok(FluxPipeline {
            tokenizer: PromptTokenizer::load(&dir.join("tokenizer"))?,
            tokenizer_2,
            clip: ClipTextEncoder::load(&dir.join("text_encoder"), device)?,
            t5: T5Encoder::load(&dir.join("text_encoder_2"), device)?,
            transformer,
            vae,
            scheduler: SchedulerConfig::load(&dir.join("scheduler"))?,
            device: device.clone(),
            max_sequence_length,
        })
    }

    /// T5 tokens per prompt (padded or truncated to it). Defaults to the T5 tokenizer's
    /// `model_max_length`, at most 512 (diffusers' default `max_sequence_length`).
    pub fn set_max_sequence_length(&mut self, n: usize) {
        self.max_sequence_length = n.max(1);
    }

    pub fn transformer(&self) -> &FluxTransformer {
        &self.transformer
    }

    pub fn vae(&self) -> &VaeDecoder {
        &self.vae
    }

    pub fn scheduler(&self) -> &SchedulerConfig {
        &self.scheduler
    }

    /// Pixels per side of one image token (16 for FLUX: the VAE's 8 times the 2x2 packing).
    pub fn token_pixels(&self) -> usize {
        self.vae.config().scale_factor() * 2
    }

    /// The largest `width * height` the model accepts: the scheduler's `max_image_seq_len`
    /// image tokens.
    pub fn max_pixels(&self) -> usize {
        self.scheduler.max_image_seq_len * self.token_pixels() * self.token_pixels()
    }

    /// Steps taken when a request does not say: 4 for schnell-style (guidance-free)
    /// transformers, 28 for guidance-distilled ones (diffusers' defaults).
    pub fn default_steps(&self) -> usize {
        if self.transformer.config().guidance_embeds {
            28
        } else {
            4
        }
    }

    /// Checks a request without running it: sizes (multiples of 16, at most
    /// [`FluxPipeline::max_pixels`]), `n`, steps, and options this model cannot use
    /// (`negative_prompt`; `guidance_scale` without a guidance embedding). The message suits an
    /// HTTP 400.
    pub fn validate(&self, req: &ImageRequest) -> std::result::Result<(), InvalidImageRequest> {
        let tp = self.token_pixels();
        if req.width == 0 || req.height == 0 || !req.width.is_multiple_of(tp) || !req.height.is_multiple_of(tp) {
            return Err(invalid(
                "size",
                format!("size {}x{} must be positive multiples of {tp}", req.width, req.height),
            ));
        }
        if req.width * req.height > self.max_pixels() {
            let side = (self.max_pixels() as f64).sqrt() as usize;
            return Err(invalid(
                "size",
                format!(
                    "size {}x{} is larger than this model's limit of {} pixels (e.g. {side}x{side})",
                    req.width,
                    req.height,
                    self.max_pixels()
                ),
            ));
        }
        if !(1..=MAX_IMAGES).contains(&req.n) {
            return Err(invalid("n", format!("n must be between 1 and {MAX_IMAGES}, got {}", req.n)));
        }
        if let Some(s) = req.steps {
            if !(1..=MAX_STEPS).contains(&s) {
                return Err(invalid(
                    "num_inference_steps",
                    format!("num_inference_steps must be between 1 and {MAX_STEPS}, got {s}"),
                ));
            }
        }
        if req.negative_prompt.is_some() {
            return Err(invalid(
                "negative_prompt",
                "negative_prompt is not supported: FLUX is guidance-distilled and has no classifier-free guidance",
            ));
        }
        if let Some(g) = req.guidance_scale {
            if !self.transformer.config().guidance_embeds {
                return Err(invalid(
                    "guidance_scale",
                    "guidance_scale is not supported by this model (its transformer has no guidance embedding)",
                ));
            }
            if !g.is_finite() || g < 0.0 {
                return Err(invalid(
                    "guidance_scale",
                    format!("guidance_scale must be a non-negative number, got {g}"),
                ));
            }
        }
        if req.prompt.trim().is_empty() {
            return Err(invalid("prompt", "prompt must not be empty"));
        }
        Ok(())
    }

    /// Both text encoders' outputs for `prompts`.
    pub fn encode_prompts(&self, prompts: &[&str]) -> Result<PromptEmbeddings> {
        let clip_ids = self.tokenizer.encode(prompts, 77)?;
        let t5_ids = self.tokenizer_2.encode(prompts, self.max_sequence_length)?;
        Ok(PromptEmbeddings { pooled: self.clip.pooled(&clip_ids)?, sequence: self.t5.encode(&t5_ids)? })
    }

    /// Packed Gaussian noise `[n, rows*cols, 64]` from `seed` (Box-Muller over a seeded
    /// `StdRng`; it cannot equal torch's generator, so references pass latents in instead).
    pub fn noise(&self, n: usize, rows: usize, cols: usize, seed: u64) -> Result<Tensor> {
        let feats = self.transformer.config().in_channels;
        let len = n * rows * cols * feats;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut v = Vec::with_capacity(len + 1);
        while v.len() < len {
            let u1: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
            let u2: f64 = rng.gen();
            let r = (-2.0 * u1.ln()).sqrt();
            let a = std::f64::consts::TAU * u2;
            v.push((r * a.cos()) as f32);
            v.push((r * a.sin()) as f32);
        }
        v.truncate(len);
        Ok(Tensor::from_f32(&v, [n, rows * cols, feats], &self.device)?)
    }

    /// The sigmas (ending in 0) for `steps` steps at `rows x cols` image tokens.
    pub fn sigmas(&self, steps: usize, rows: usize, cols: usize) -> Vec<f32> {
        self.scheduler.sigmas(steps, rows * cols)
    }

    /// Runs the denoising loop from packed `latents [n, rows*cols, 64]`; returns the final
    /// packed latents. `on_step(done, total)` after each step may cancel.
    #[allow(clippy::too_many_arguments)]
    pub fn denoise(
        &self,
        latents: Tensor,
        rows: usize,
        cols: usize,
        prompt: &PromptEmbeddings,
        steps: usize,
        guidance: Option<f32>,
        on_step: &mut dyn FnMut(usize, usize) -> ControlFlow<()>,
    ) -> Result<Tensor> {
        let tf = &self.transformer;
        let guidance = tf.config().guidance_embeds.then(|| guidance.unwrap_or(DEFAULT_GUIDANCE));
        let pooled_emb = tf.pooled_embedding(&prompt.pooled)?;
        let context = tf.context(&prompt.sequence)?;
        let sigmas = self.sigmas(steps, rows, cols);
        let timesteps = self.scheduler.timesteps(&sigmas);
        let mut x = latents;
        for (i, &t) in timesteps.iter().enumerate() {
            let temb = tf.temb(t / 1000.0, guidance, &pooled_emb)?;
            let v = tf.forward(&x, &context, &temb, rows, cols)?;
            x = x.add(&v.scale(sigmas[i + 1] - sigmas[i])?)?;
            if on_step(i + 1, timesteps.len()).is_break() {
                return Err(Error::Cancelled);
            }
        }
        Ok(x)
    }

    /// Packed latents `[n, rows*cols, 4c]` to NHWC latents `[n, 2 rows, 2 cols, c]`.
    pub fn unpack(&self, packed: &Tensor, rows: usize, cols: usize) -> Result<Tensor> {
        let dims = packed.dims().to_vec();
        let (n, c) = (dims[0], dims[2] / 4);
        let v = unpack_nhwc(&packed.to_vec_f32()?, n, rows, cols);
        Ok(Tensor::from_f32(&v, [n, 2 * rows, 2 * cols, c], &self.device)?)
    }

    /// Decodes packed latents to pixels `[n, H, W, 3]` in about [-1, 1].
    pub fn decode(&self, packed: &Tensor, rows: usize, cols: usize) -> Result<Tensor> {
        self.vae.decode(&self.unpack(packed, rows, cols)?)
    }

    /// Pixels `[n, H, W, 3]` to 8-bit images.
    pub fn to_images(pixels: &Tensor) -> Result<Vec<Image>> {
        let dims = pixels.dims().to_vec();
        let (n, h, w) = (dims[0], dims[1], dims[2]);
        let v = pixels.to_vec_f32()?;
        Ok(v.chunks(h * w * 3)
            .take(n)
            .map(|c| Image { width: w, height: h, rgb: c.iter().map(|&x| to_u8(x)).collect() })
            .collect())
    }

    /// Runs a validated request. `on_step(done, total)` is called after each denoising step;
    /// returning `ControlFlow::Break(())` cancels the job, which then ends with
    /// [`Error::Cancelled`].
    pub fn generate(
        &self,
        req: &ImageRequest,
        on_step: &mut dyn FnMut(usize, usize) -> ControlFlow<()>,
    ) -> Result<Vec<Image>> {
        self.validate(req).map_err(|e| Error::Config(e.message))?;
        let tp = self.token_pixels();
        let (rows, cols) = (req.height / tp, req.width / tp);
        let prompts = vec![req.prompt.as_str(); req.n];
        let prompt = self.encode_prompts(&prompts)?;
        let seed = req.seed.unwrap_or_else(rand::random);
        let latents = self.noise(req.n, rows, cols, seed)?;
        let steps = req.steps.unwrap_or_else(|| self.default_steps());
        let x = self.denoise(latents, rows, cols, &prompt, steps, req.guidance_scale, on_step)?;
        Self::to_images(&self.decode(&x, rows, cols)?)
    }
}
