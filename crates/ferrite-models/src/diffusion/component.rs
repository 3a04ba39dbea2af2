//! One component folder of a diffusers pipeline (`transformer/`, `vae/`, `text_encoder/`...):
//! its `config.json` and its weights, single or sharded safetensors, looked up by name and put
//! on the device in the form the ops want.

use std::path::{Path, PathBuf};

use ferrite_tensor::safetensors::SafetensorsModel;
use ferrite_tensor::{DType, Device, Tensor};
use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// Weight file names diffusers and transformers write, sharded index first.
const WEIGHT_FILES: [&str; 4] = [
    "diffusion_pytorch_model.safetensors.index.json",
    "diffusion_pytorch_model.safetensors",
    "model.safetensors.index.json",
    "model.safetensors",
];

/// Reads `dir/config.json` into `T`.
pub fn read_config<T: DeserializeOwned>(dir: &Path) -> Result<T> {
    let path = dir.join("config.json");
    let text =
        std::fs::read_to_string(&path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
    serde_json::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

/// Where a component's tensors come from, by the names diffusers/transformers give them.
pub trait TensorSource: Send + Sync {
    /// The tensor `name` (on the CPU, memory-mapped), or [`Error::MissingWeight`].
    fn get(&self, name: &str) -> Result<Tensor>;
}

/// A component's safetensors weights.
pub struct Component {
    name: String,
    st: SafetensorsModel,
}

impl Component {
    /// Opens the weights of the component folder `dir`.
    pub fn open(dir: &Path) -> Result<Component> {
        let file: PathBuf = WEIGHT_FILES.iter().map(|f| dir.join(f)).find(|p| p.is_file()).ok_or_else(|| {
            Error::Config(format!("{}: no safetensors weights ({})", dir.display(), WEIGHT_FILES.join(", ")))
        })?;
        let st = SafetensorsModel::open(&file)?;
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(Component { name, st })
    }

    /// The names and shapes of every tensor stored.
    pub fn shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.st.tensor_infos().iter().map(|i| (i.name.clone(), i.shape.dims().to_vec())).collect()
    }
}

impl TensorSource for Component {
    fn get(&self, name: &str) -> Result<Tensor> {
        if self.st.tensor_info(name).is_none() {
            return Err(Error::MissingWeight(format!("{}/{name}", self.name)));
        }
        Ok(self.st.tensor(name)?)
    }
}

/// Loads tensors from a [`TensorSource`] onto a device, checking their shapes.
pub struct Loader<'a> {
    pub src: &'a dyn TensorSource,
    pub device: &'a Device,
}

impl Loader<'_> {
    fn checked(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.src.get(name)?;
        if t.dims() != shape {
            return Err(Error::Config(format!("weight `{name}` has shape {:?}, expected {shape:?}", t.dims())));
        }
        Ok(t)
    }

    /// A matmul weight `[out, in]`, kept in its stored dtype (the matmul reads f16, bf16 and
    /// GGUF blocks directly).
    pub fn matrix(&self, name: &str, out: usize, inp: usize) -> Result<Tensor> {
        Ok(self.checked(name, &[out, inp])?.to_device(self.device)?)
    }

    /// A vector or any tensor read by elementwise ops, as f32 on the device.
    pub fn f32(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.checked(name, shape)?;
        let t = if t.dtype() == DType::F32 { t } else { t.cast(DType::F32)? };
        Ok(t.to_device(self.device)?)
    }

    /// A `nn.Linear(inp, out)` with or without bias.
    pub fn linear(&self, prefix: &str, inp: usize, out: usize, bias: bool) -> Result<Linear> {
        let w = self.matrix(&format!("{prefix}.weight"), out, inp)?;
        let b = if bias { Some(self.f32(&format!("{prefix}.bias"), &[out])?) } else { None };
        Ok(Linear { w, b })
    }

    /// A `nn.Conv2d` weight `[out, in, kh, kw]` permuted to the NHWC kernel layout
    /// `[out, kh, kw, in]` (on the host, once), with its bias.
    pub fn conv(&self, prefix: &str, inp: usize, out: usize, k: usize) -> Result<Conv> {
        let name = format!("{prefix}.weight");
        let t = self.checked(&name, &[out, inp, k, k])?;
        let dtype = t.dtype();
        let v = if dtype == DType::F32 { t } else { t.cast(DType::F32)? }.to_vec_f32()?;
        let mut p = vec![0f32; v.len()];
        for o in 0..out {
            for i in 0..inp {
                for y in 0..k {
                    for x in 0..k {
                        p[((o * k + y) * k + x) * inp + i] = v[((o * inp + i) * k + y) * k + x];
                    }
                }
            }
        }
        let w = Tensor::from_f32(&p, [out, k, k, inp], &Device::cpu())?;
        let w = if matches!(dtype, DType::F16 | DType::BF16) { w.cast(dtype)? } else { w };
        let b = self.f32(&format!("{prefix}.bias"), &[out])?;
        Ok(Conv { w: w.to_device(self.device)?, b, padding: (k / 2), stride: 1 })
    }
}

/// `y = x W^T + b` over the last dimension.
#[derive(Debug, Clone)]
pub struct Linear {
    pub w: Tensor,
    pub b: Option<Tensor>,
}

impl Linear {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.matmul(&self.w)?;
        Ok(match &self.b {
            Some(b) => y.add(b)?,
            None => y,
        })
    }
}

/// A 2-D convolution over NHWC tensors.
#[derive(Debug, Clone)]
pub struct Conv {
    pub w: Tensor,
    pub b: Tensor,
    pub padding: usize,
    pub stride: usize,
}

impl Conv {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let p = ferrite_tensor::Conv2dParams { stride: self.stride, padding: self.padding };
        Ok(x.conv2d(&self.w, Some(&self.b), &p)?)
    }
}
