//! The VAE decoder of a diffusers `AutoencoderKL` (FLUX's has 16 latent channels): latents to
//! pixels through a conv stem, a mid block (resnet, single-head self-attention, resnet), up
//! blocks of resnets with nearest-2x upsampling, and a group-norm/SiLU/conv head.
//!
//! Tensors are NHWC; convolution weights are permuted once at load ([`Loader::conv`]).

use serde::Deserialize;

use ferrite_tensor::{Activation, Tensor};

use super::component::{Conv, Linear, Loader};
use crate::{Error, Result};

/// `vae/config.json`, the decoder's fields.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VaeConfig {
    #[serde(default = "three")]
    pub out_channels: usize,
    #[serde(default = "four")]
    pub latent_channels: usize,
    pub block_out_channels: Vec<usize>,
    #[serde(default = "one")]
    pub layers_per_block: usize,
    #[serde(default = "thirty_two")]
    pub norm_num_groups: usize,
    #[serde(default = "default_scaling")]
    pub scaling_factor: f32,
    #[serde(default)]
    pub shift_factor: Option<f32>,
    #[serde(default = "yes")]
    pub use_post_quant_conv: bool,
    #[serde(default = "yes")]
    pub mid_block_add_attention: bool,
    #[serde(default)]
    pub up_block_types: Vec<String>,
}

fn three() -> usize {
    3
}
fn four() -> usize {
    4
}
fn one() -> usize {
    1
}
fn thirty_two() -> usize {
    32
}
fn default_scaling() -> f32 {
    0.18215
}
fn yes() -> bool {
    true
}

/// Epsilon of every group norm of the decoder.
const EPS: f32 = 1e-6;

impl VaeConfig {
    /// Pixels per latent pixel along each axis (8 for FLUX).
    pub fn scale_factor(&self) -> usize {
        1 << self.block_out_channels.len().saturating_sub(1)
    }

    fn check(&self) -> Result<()> {
        let g = self.norm_num_groups;
        if self.block_out_channels.is_empty() || g == 0 || self.block_out_channels.iter().any(|c| c % g != 0) {
            return Err(Error::Config(format!(
                "vae config: block_out_channels {:?} must be multiples of norm_num_groups {g}",
                self.block_out_channels
            )));
        }
        if let Some(t) = self.up_block_types.iter().find(|t| t.as_str() != "UpDecoderBlock2D") {
            return Err(Error::Config(format!("vae config: up block type `{t}` is not supported")));
        }
        Ok(())
    }

    /// Every decoder weight the loader reads, with its (stored, NCHW) shape.
    pub fn expected_weights(&self) -> Vec<(String, Vec<usize>)> {
        let mut w = Vec::new();
        let conv = |w: &mut Vec<(String, Vec<usize>)>, p: &str, i: usize, o: usize, k: usize| {
            w.push((format!("{p}.weight"), vec![o, i, k, k]));
            w.push((format!("{p}.bias"), vec![o]));
        };
        let norm = |w: &mut Vec<(String, Vec<usize>)>, p: &str, c: usize| {
            w.push((format!("{p}.weight"), vec![c]));
            w.push((format!("{p}.bias"), vec![c]));
        };
        let resnet = |w: &mut Vec<(String, Vec<usize>)>, p: &str, i: usize, o: usize| {
            norm(w, &format!("{p}.norm1"), i);
            conv(w, &format!("{p}.conv1"), i, o, 3);
            norm(w, &format!("{p}.norm2"), o);
            conv(w, &format!("{p}.conv2"), o, o, 3);
            if i != o {
                conv(w, &format!("{p}.conv_shortcut"), i, o, 1);
            }
        };
        let lat = self.latent_channels;
        if self.use_post_quant_conv {
            conv(&mut w, "post_quant_conv", lat, lat, 1);
        }
        let top = *self.block_out_channels.last().unwrap_or(&0);
        conv(&mut w, "decoder.conv_in", lat, top, 3);
        resnet(&mut w, "decoder.mid_block.resnets.0", top, top);
        if self.mid_block_add_attention {
            let p = "decoder.mid_block.attentions.0";
            norm(&mut w, &format!("{p}.group_norm"), top);
            for n in ["to_q", "to_k", "to_v", "to_out.0"] {
                w.push((format!("{p}.{n}.weight"), vec![top, top]));
                w.push((format!("{p}.{n}.bias"), vec![top]));
            }
        }
        resnet(&mut w, "decoder.mid_block.resnets.1", top, top);
        let rev: Vec<usize> = self.block_out_channels.iter().rev().copied().collect();
        let mut prev = rev[0];
        for (i, &out) in rev.iter().enumerate() {
            for j in 0..=self.layers_per_block {
                let inp = if j == 0 { prev } else { out };
                resnet(&mut w, &format!("decoder.up_blocks.{i}.resnets.{j}"), inp, out);
            }
            if i + 1 < rev.len() {
                conv(&mut w, &format!("decoder.up_blocks.{i}.upsamplers.0.conv"), out, out, 3);
            }
            prev = out;
        }
        let first = self.block_out_channels[0];
        norm(&mut w, "decoder.conv_norm_out", first);
        conv(&mut w, "decoder.conv_out", first, self.out_channels, 3);
        w
    }
}

#[derive(Debug)]
struct GroupNorm {
    w: Tensor,
    b: Tensor,
    groups: usize,
}

impl GroupNorm {
    fn load(ld: &Loader, p: &str, c: usize, groups: usize) -> Result<GroupNorm> {
        Ok(GroupNorm { w: ld.f32(&format!("{p}.weight"), &[c])?, b: ld.f32(&format!("{p}.bias"), &[c])?, groups })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.group_norm(self.groups, &self.w, &self.b, EPS)?)
    }
}

#[derive(Debug)]
struct Resnet {
    norm1: GroupNorm,
    conv1: Conv,
    norm2: GroupNorm,
    conv2: Conv,
    shortcut: Option<Conv>,
}

impl Resnet {
    fn load(ld: &Loader, p: &str, i: usize, o: usize, g: usize) -> Result<Resnet> {
        Ok(Resnet {
            norm1: GroupNorm::load(ld, &format!("{p}.norm1"), i, g)?,
            conv1: ld.conv(&format!("{p}.conv1"), i, o, 3)?,
            norm2: GroupNorm::load(ld, &format!("{p}.norm2"), o, g)?,
            conv2: ld.conv(&format!("{p}.conv2"), o, o, 3)?,
            shortcut: if i != o { Some(ld.conv(&format!("{p}.conv_shortcut"), i, o, 1)?) } else { None },
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward(&self.norm1.forward(x)?.activation(Activation::Silu)?)?;
        let h = self.conv2.forward(&self.norm2.forward(&h)?.activation(Activation::Silu)?)?;
        let skip = match &self.shortcut {
            Some(c) => c.forward(x)?,
            None => x.clone(),
        };
        Ok(skip.add(&h)?)
    }
}

/// The mid block's single-head self-attention over all pixels, with a residual.
#[derive(Debug)]
struct Attention {
    norm: GroupNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
}

impl Attention {
    fn load(ld: &Loader, p: &str, c: usize, g: usize) -> Result<Attention> {
        Ok(Attention {
            norm: GroupNorm::load(ld, &format!("{p}.group_norm"), c, g)?,
            q: ld.linear(&format!("{p}.to_q"), c, c, true)?,
            k: ld.linear(&format!("{p}.to_k"), c, c, true)?,
            v: ld.linear(&format!("{p}.to_v"), c, c, true)?,
            out: ld.linear(&format!("{p}.to_out.0"), c, c, true)?,
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let (n, h, w, c) = (dims[0], dims[1], dims[2], dims[3]);
        let xn = self.norm.forward(x)?.reshape([n * h * w, c])?;
        let per_head = [n * h * w, 1, c];
        let q = self.q.forward(&xn)?.reshape(per_head)?;
        let k = self.k.forward(&xn)?.reshape(per_head)?;
        let v = self.v.forward(&xn)?.reshape(per_head)?;
        let a = q.attention_full(&k, &v, &vec![h * w; n], 1.0 / (c as f32).sqrt())?.reshape([n * h * w, c])?;
        Ok(x.add(&self.out.forward(&a)?.reshape(dims)?)?)
    }
}

#[derive(Debug)]
struct UpBlock {
    resnets: Vec<Resnet>,
    upsample: Option<Conv>,
}

/// The loaded decoder.
#[derive(Debug)]
pub struct VaeDecoder {
    cfg: VaeConfig,
    post_quant: Option<Conv>,
    conv_in: Conv,
    mid: (Resnet, Option<Attention>, Resnet),
    up: Vec<UpBlock>,
    norm_out: GroupNorm,
    conv_out: Conv,
}

impl VaeDecoder {
    pub fn load(cfg: VaeConfig, ld: &Loader) -> Result<VaeDecoder> {
        cfg.check()?;
        let g = cfg.norm_num_groups;
        let lat = cfg.latent_channels;
        let top = *cfg.block_out_channels.last().unwrap_or(&0);
        let post_quant = if cfg.use_post_quant_conv { Some(ld.conv("post_quant_conv", lat, lat, 1)?) } else { None };
        let mid = (
            Resnet::load(ld, "decoder.mid_block.resnets.0", top, top, g)?,
            if cfg.mid_block_add_attention {
                Some(Attention::load(ld, "decoder.mid_block.attentions.0", top, g)?)
            } else {
                None
            },
            Resnet::load(ld, "decoder.mid_block.resnets.1", top, top, g)?,
        );
        let rev: Vec<usize> = cfg.block_out_channels.iter().rev().copied().collect();
        let mut prev = rev[0];
        let mut up = Vec::new();
        for (i, &out) in rev.iter().enumerate() {
            let resnets = (0..=cfg.layers_per_block)
                .map(|j| {
                    Resnet::load(
                        ld,
                        &format!("decoder.up_blocks.{i}.resnets.{j}"),
                        if j == 0 { prev } else { out },
                        out,
                        g,
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            let upsample = if i + 1 < rev.len() {
                Some(ld.conv(&format!("decoder.up_blocks.{i}.upsamplers.0.conv"), out, out, 3)?)
            } else {
                None
            };
            up.push(UpBlock { resnets, upsample });
            prev = out;
        }
        let first = cfg.block_out_channels[0];
        Ok(VaeDecoder {
            post_quant,
            conv_in: ld.conv("decoder.conv_in", lat, top, 3)?,
            mid,
            up,
            norm_out: GroupNorm::load(ld, "decoder.conv_norm_out", first, g)?,
            conv_out: ld.conv("decoder.conv_out", first, cfg.out_channels, 3)?,
            cfg,
        })
    }

    pub fn config(&self) -> &VaeConfig {
        &self.cfg
    }

    /// Decodes latents `[n, h, w, latent_channels]` as the denoiser produced them (before the
    /// VAE's scaling and shift, which this applies) to pixels `[n, 8h, 8w, 3]` in about [-1, 1].
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        let mut z = latents.scale(1.0 / self.cfg.scaling_factor)?;
        if let Some(s) = self.cfg.shift_factor {
            let c = self.cfg.latent_channels;
            z = z.add(&Tensor::from_f32(&vec![s; c], [c], latents.device())?)?;
        }
        if let Some(pq) = &self.post_quant {
            z = pq.forward(&z)?;
        }
        let mut x = self.conv_in.forward(&z)?;
        x = self.mid.0.forward(&x)?;
        if let Some(a) = &self.mid.1 {
            x = a.forward(&x)?;
        }
        x = self.mid.2.forward(&x)?;
        for b in &self.up {
            for r in &b.resnets {
                x = r.forward(&x)?;
            }
            if let Some(u) = &b.upsample {
                x = u.forward(&x.upsample_nearest(2)?)?;
            }
        }
        let x = self.norm_out.forward(&x)?.activation(Activation::Silu)?;
        self.conv_out.forward(&x)
    }
}

/// Pixels in [-1, 1] to 8-bit as diffusers' image processor does:
/// `round(clamp(x / 2 + 0.5, 0, 1) * 255)` (numpy rounds half to even).
pub fn to_u8(x: f32) -> u8 {
    let v = (x * 0.5 + 0.5).clamp(0.0, 1.0) * 255.0;
    v.round_ties_even() as u8
}
