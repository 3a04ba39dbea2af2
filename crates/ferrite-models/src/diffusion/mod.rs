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
pub mod pipeline;
pub mod prompt_tokens;
pub mod t5;

pub use clip::{ClipConfig, ClipTextEncoder};
pub use pipeline::{FluxPipeline, Image, ImageRequest};
pub use prompt_tokens::PromptTokenizer;
pub use t5::{T5Config, T5Encoder};

use std::collections::HashMap;
use std::path::Path;

use ferrite_tensor::safetensors::SafetensorsModel;
use ferrite_tensor::{DType, Device, Tensor};

use crate::{Error, Result};

/// The tensor names and shapes a component's loader reads, in the order it reads them.
pub type WeightList = Vec<(String, Vec<usize>)>;

/// A component's safetensors checkpoint, checked at open against the exact list of names and
/// shapes its loader asks for (see `expected_weights` in [`clip`] and [`t5`]); the loader can
/// then take only listed tensors, so the list is what the loader reads.
pub(crate) struct CheckedWeights {
    st: SafetensorsModel,
    device: Device,
    /// Expected name -> (stored name, shape).
    expected: HashMap<String, (String, Vec<usize>)>,
}

impl CheckedWeights {
    /// Opens `dir` (single file or sharded index) and checks every listed tensor: present
    /// (under its name or an alias from `aliases`, `(name, alias)` pairs for tied weights saved
    /// under their other name), of the listed shape and of a loadable dtype.
    pub(crate) fn open(dir: &Path, device: &Device, list: WeightList, aliases: &[(&str, &str)]) -> Result<Self> {
        let st = SafetensorsModel::open(dir)?;
        let mut expected = HashMap::with_capacity(list.len());
        for (name, shape) in list {
            let stored = std::iter::once(name.as_str())
                .chain(aliases.iter().filter(|(n, _)| *n == name).map(|(_, a)| *a))
                .find(|n| st.tensor_info(n).is_some())
                .ok_or_else(|| Error::MissingWeight(format!("{name} (in {})", dir.display())))?
                .to_string();
            let Some((dtype, got)) = st.dtype_and_shape(&stored) else {
                return Err(Error::MissingWeight(stored));
            };
            dtype?;
            if got.dims() != shape.as_slice() {
                return Err(Error::Config(format!(
                    "weight `{stored}` in {} has shape {:?}, expected {shape:?}",
                    dir.display(),
                    got.dims()
                )));
            }
            expected.insert(name, (stored, shape));
        }
        Ok(CheckedWeights { st, device: device.clone(), expected })
    }

    /// Listed tensor `name` on the device, in its stored dtype.
    pub(crate) fn get(&self, name: &str) -> Result<Tensor> {
        let (stored, _) = self
            .expected
            .get(name)
            .ok_or_else(|| Error::Config(format!("loader asked for `{name}`, which its weight list lacks")))?;
        Ok(self.st.tensor(stored)?.to_device(&self.device)?)
    }

    /// Listed tensor `name` as f32 (norm weights, biases).
    pub(crate) fn get_f32(&self, name: &str) -> Result<Tensor> {
        Ok(self.get(name)?.cast(DType::F32)?)
    }
}
