//! [`FluxPipeline`]: prompts in, RGB images out.

use std::ops::ControlFlow;
use std::path::Path;

use ferrite_tensor::Device;

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

/// A loaded FLUX pipeline.
#[derive(Debug)]
pub struct FluxPipeline {
    _device: Device,
}

impl FluxPipeline {
    /// Loads a diffusers folder (`model_index.json`, `transformer/`, `vae/`, `text_encoder/`,
    /// `text_encoder_2/`, `tokenizer/`, `tokenizer_2/`, `scheduler/`).
    pub fn load(dir: &Path, device: &Device) -> Result<FluxPipeline> {
        let _ = (dir, device);
        Err(Error::Config("the FLUX pipeline is not implemented yet".into()))
    }

    /// Checks a request without running it: sizes (multiples of 16, at most
    /// [`FluxPipeline::max_pixels`]), `n`, steps, and options this model cannot use
    /// (`negative_prompt`; `guidance_scale` without a guidance embedding). The message suits an
    /// HTTP 400.
    pub fn validate(&self, req: &ImageRequest) -> std::result::Result<(), String> {
        let _ = req;
        Err("the FLUX pipeline is not implemented yet".into())
    }

    /// The largest `width * height` the model accepts.
    pub fn max_pixels(&self) -> usize {
        0
    }

    /// Steps taken when a request does not say.
    pub fn default_steps(&self) -> usize {
        4
    }

    /// Runs a validated request. `on_step(done, total)` is called after each denoising step;
    /// returning `ControlFlow::Break(())` cancels the job, which then ends with
    /// [`Error::Cancelled`].
    pub fn generate(
        &self,
        req: &ImageRequest,
        on_step: &mut dyn FnMut(usize, usize) -> ControlFlow<()>,
    ) -> Result<Vec<Image>> {
        let _ = (req, on_step);
        Err(Error::Config("the FLUX pipeline is not implemented yet".into()))
    }
}
