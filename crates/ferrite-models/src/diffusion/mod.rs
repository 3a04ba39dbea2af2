//! Text-to-image: the FLUX.1 pipeline as diffusers lays it out on disk.
//!
//! * [`pipeline`]: [`FluxPipeline`], which loads a diffusers folder (`model_index.json` and
//!   its component folders) and turns prompts into RGB images.
//! * [`clip`] and [`t5`]: the two text encoders (CLIP-L's pooled output, T5's sequence output),
//!   with [`prompt_tokens`] turning prompts into padded token ids for them.
//! * [`flux`]: the MMDiT transformer (double- and single-stream blocks, AdaLN, 3-axis rope).
//! * [`vae`]: the VAE decoder from 16 latent channels to pixels.
//! * [`scheduler`]: the flow-matching Euler scheduler.
//!
//! Image tensors are NHWC (`[n, h, w, c]`), so a convolution is one matmul over im2col rows.

pub mod component;
pub mod flux;
pub mod gguf_source;
pub mod latents;
pub mod pipeline;
pub mod scheduler;
pub mod vae;

pub use pipeline::{FluxPipeline, Image, ImageRequest};
