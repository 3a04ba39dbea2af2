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

pub mod clip;
pub mod component;
pub mod flux;
pub mod gguf_source;
pub mod latents;
pub mod pipeline;
pub mod prompt_tokens;
pub mod scheduler;
pub mod t5;
pub mod vae;

pub use clip::{ClipConfig, ClipTextEncoder};
pub use pipeline::{FluxPipeline, Image, ImageRequest, InvalidImageRequest};
pub use prompt_tokens::PromptTokenizer;
pub use t5::{T5Config, T5Encoder};

use std::collections::HashMap;
use std::path::Path;

use ferrite_tensor::{DType, Device, Tensor};

use crate::{Error, Result};
use component::{Component, TensorSource};

/// The tensor names and shapes a component's loader reads, in the order it reads them.
pub type WeightList = Vec<(String, Vec<usize>)>;

/// A component's weights ([`Component`]), checked at open against the exact list of names and
/// shapes its loader asks for (see `expected_weights` in [`clip`] and [`t5`]); the loader can
/// then take only listed tensors, so the list is what the loader reads.
pub(crate) struct CheckedWeights {
    weights: Component,
    device: Device,
    /// Expected name -> stored name.
    expected: HashMap<String, String>,
}

impl CheckedWeights {
    /// Opens the weights of `dir` and checks every listed tensor: present (under its name or one
    /// of `aliases(name)`: a tied twin, or the name older library versions saved) and of the
    /// listed shape. A dtype ferrite cannot load fails when the tensor is taken.
    pub(crate) fn open(
        dir: &Path,
        device: &Device,
        list: WeightList,
        aliases: &dyn Fn(&str) -> Vec<String>,
    ) -> Result<Self> {
        let weights = Component::open(dir)?;
        let stored: HashMap<String, Vec<usize>> = weights.shapes().into_iter().collect();
        let mut expected = HashMap::with_capacity(list.len());
        for (name, shape) in list {
            let (found, got) = std::iter::once(name.clone())
                .chain(aliases(&name))
                .find_map(|n| stored.get(&n).map(|s| (n, s)))
                .ok_or_else(|| Error::MissingWeight(format!("{name} (in {})", dir.display())))?;
            if *got != shape {
                return Err(Error::Config(format!(
                    "weight `{found}` in {} has shape {got:?}, expected {shape:?}",
                    dir.display()
                )));
            }
            expected.insert(name, found);
        }
        Ok(CheckedWeights { weights, device: device.clone(), expected })
    }

    /// Listed tensor `name` on the device, in its stored dtype.
    pub(crate) fn get(&self, name: &str) -> Result<Tensor> {
        let stored = self
            .expected
            .get(name)
            .ok_or_else(|| Error::Config(format!("loader asked for `{name}`, which its weight list lacks")))?;
        Ok(self.weights.get(stored)?.to_device(&self.device)?)
    }

    /// Listed tensor `name` as f32 (norm weights, biases), converted on the host before the
    /// upload (not every backend converts bf16).
    pub(crate) fn get_f32(&self, name: &str) -> Result<Tensor> {
        let stored = self
            .expected
            .get(name)
            .ok_or_else(|| Error::Config(format!("loader asked for `{name}`, which its weight list lacks")))?;
        Ok(self.weights.get(stored)?.cast(DType::F32)?.to_device(&self.device)?)
    }
}
