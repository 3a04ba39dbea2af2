//! The FLUX.1 MMDiT transformer (diffusers' `FluxTransformer2DModel`).
//!
//! Image tokens (2x2 patches of the 16-channel latents, 64 features each) and text tokens (T5's
//! sequence output) are embedded to the model width `D`. Double-stream blocks keep the two
//! streams apart, each with its own AdaLN modulation, projections and MLP, but attend jointly
//! over `[text; image]`. Single-stream blocks then run on the concatenation, with attention and
//! MLP in parallel. Every block's modulation comes from `temb`: the sinusoidal timestep embedding
//! (plus the guidance embedding on guidance-distilled models) plus the pooled CLIP vector.
//! Queries and keys get RMS norms and a 3-axis rope (text tokens sit at position 0; image token
//! `(row, col)` at `(0, row, col)`).
//!
//! Activations are `[n, tokens, D]` for a batch of `n` images of one size.

use serde::Deserialize;

use ferrite_tensor::{Activation, Device, RopeLayout, Tensor};

use super::component::{Linear, Loader};
use crate::{Error, Result};

/// `transformer/config.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FluxConfig {
    #[serde(default = "one")]
    pub patch_size: usize,
    #[serde(default = "default_in")]
    pub in_channels: usize,
    #[serde(default)]
    pub out_channels: Option<usize>,
    pub num_layers: usize,
    pub num_single_layers: usize,
    pub attention_head_dim: usize,
    pub num_attention_heads: usize,
    pub joint_attention_dim: usize,
    pub pooled_projection_dim: usize,
    #[serde(default)]
    pub guidance_embeds: bool,
    #[serde(default = "default_axes")]
    pub axes_dims_rope: Vec<usize>,
}

fn one() -> usize {
    1
}
fn default_in() -> usize {
    64
}
fn default_axes() -> Vec<usize> {
    vec![16, 56, 56]
}

/// Sinusoidal features of the timestep (and guidance) embedders.
const TIME_FEATURES: usize = 256;
/// Rope base of FLUX's position embedding.
const ROPE_THETA: f64 = 10_000.0;
/// Epsilon of every layer norm and q/k RMS norm of the transformer.
const EPS: f32 = 1e-6;

impl FluxConfig {
    /// The model width `D`.
    pub fn dim(&self) -> usize {
        self.attention_head_dim * self.num_attention_heads
    }

    /// Channels of the output per token.
    pub fn out_features(&self) -> usize {
        self.patch_size * self.patch_size * self.out_channels.unwrap_or(self.in_channels)
    }

    /// Checks the values the forward pass relies on.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("transformer config: {m}")));
        if self.patch_size != 1 {
            return bad(format!("patch_size {} (FLUX packs 2x2 latents itself; only 1 is supported)", self.patch_size));
        }
        if self.axes_dims_rope.iter().sum::<usize>() != self.attention_head_dim {
            return bad(format!(
                "axes_dims_rope {:?} must sum to attention_head_dim {}",
                self.axes_dims_rope, self.attention_head_dim
            ));
        }
        if self.axes_dims_rope.len() != 3 || self.axes_dims_rope.iter().any(|d| d % 2 != 0) {
            return bad(format!("axes_dims_rope {:?} must be three even sizes", self.axes_dims_rope));
        }
        if self.dim() == 0 || self.in_channels == 0 {
            return bad("zero width".into());
        }
        Ok(())
    }

    /// Every weight the loader reads, with its shape, under diffusers' names.
    pub fn expected_weights(&self) -> Vec<(String, Vec<usize>)> {
        let (d, hd) = (self.dim(), self.attention_head_dim);
        let mut w = Vec::new();
        let lin = |w: &mut Vec<(String, Vec<usize>)>, p: &str, i: usize, o: usize| {
            w.push((format!("{p}.weight"), vec![o, i]));
            w.push((format!("{p}.bias"), vec![o]));
        };
        lin(&mut w, "x_embedder", self.in_channels, d);
        lin(&mut w, "context_embedder", self.joint_attention_dim, d);
        lin(&mut w, "time_text_embed.timestep_embedder.linear_1", TIME_FEATURES, d);
        lin(&mut w, "time_text_embed.timestep_embedder.linear_2", d, d);
        if self.guidance_embeds {
            lin(&mut w, "time_text_embed.guidance_embedder.linear_1", TIME_FEATURES, d);
            lin(&mut w, "time_text_embed.guidance_embedder.linear_2", d, d);
        }
        lin(&mut w, "time_text_embed.text_embedder.linear_1", self.pooled_projection_dim, d);
        lin(&mut w, "time_text_embed.text_embedder.linear_2", d, d);
        for i in 0..self.num_layers {
            let p = format!("transformer_blocks.{i}");
            lin(&mut w, &format!("{p}.norm1.linear"), d, 6 * d);
            lin(&mut w, &format!("{p}.norm1_context.linear"), d, 6 * d);
            for n in ["to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj", "to_out.0", "to_add_out"] {
                lin(&mut w, &format!("{p}.attn.{n}"), d, d);
            }
            for n in ["norm_q", "norm_k", "norm_added_q", "norm_added_k"] {
                w.push((format!("{p}.attn.{n}.weight"), vec![hd]));
            }
            for ff in ["ff", "ff_context"] {
                lin(&mut w, &format!("{p}.{ff}.net.0.proj"), d, 4 * d);
                lin(&mut w, &format!("{p}.{ff}.net.2"), 4 * d, d);
            }
        }
        for i in 0..self.num_single_layers {
            let p = format!("single_transformer_blocks.{i}");
            lin(&mut w, &format!("{p}.norm.linear"), d, 3 * d);
            lin(&mut w, &format!("{p}.proj_mlp"), d, 4 * d);
            lin(&mut w, &format!("{p}.proj_out"), 5 * d, d);
            for n in ["to_q", "to_k", "to_v"] {
                lin(&mut w, &format!("{p}.attn.{n}"), d, d);
            }
            for n in ["norm_q", "norm_k"] {
                w.push((format!("{p}.attn.{n}.weight"), vec![hd]));
            }
        }
        lin(&mut w, "norm_out.linear", d, 2 * d);
        lin(&mut w, "proj_out", d, self.out_features());
        w
    }
}

/// An MLP embedder: `linear_2(silu(linear_1(x)))`.
#[derive(Debug)]
struct Mlp2 {
    l1: Linear,
    l2: Linear,
}

impl Mlp2 {
    fn load(ld: &Loader, p: &str, inp: usize, d: usize) -> Result<Mlp2> {
        Ok(Mlp2 {
            l1: ld.linear(&format!("{p}.linear_1"), inp, d, true)?,
            l2: ld.linear(&format!("{p}.linear_2"), d, d, true)?,
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.l2.forward(&self.l1.forward(x)?.activation(Activation::Silu)?)
    }
}

/// Q, K, V projections with per-head RMS norms of q and k.
#[derive(Debug)]
struct Qkv {
    q: Linear,
    k: Linear,
    v: Linear,
    norm_q: Tensor,
    norm_k: Tensor,
}

impl Qkv {
    fn load(ld: &Loader, p: &str, names: [&str; 5], d: usize, hd: usize) -> Result<Qkv> {
        Ok(Qkv {
            q: ld.linear(&format!("{p}.{}", names[0]), d, d, true)?,
            k: ld.linear(&format!("{p}.{}", names[1]), d, d, true)?,
            v: ld.linear(&format!("{p}.{}", names[2]), d, d, true)?,
            norm_q: ld.f32(&format!("{p}.{}.weight", names[3]), &[hd])?,
            norm_k: ld.f32(&format!("{p}.{}.weight", names[4]), &[hd])?,
        })
    }

    /// `x [n, t, D]` to normed q, k and v, each `[n, t, D]`.
    fn forward(&self, x: &Tensor, heads: usize, hd: usize) -> Result<[Tensor; 3]> {
        let dims = x.dims().to_vec();
        let [q, k, v]: [Tensor; 3] =
            x.matmul_many(&[&self.q.w, &self.k.w, &self.v.w])?.try_into().map_err(|_| Error::Config("qkv".into()))?;
        let bias = |t: Tensor, l: &Linear| -> Result<Tensor> {
            Ok(match &l.b {
                Some(b) => t.add(b)?,
                None => t,
            })
        };
        let (q, k, v) = (bias(q, &self.q)?, bias(k, &self.k)?, bias(v, &self.v)?);
        let per_head = [dims[0] * dims[1], heads, hd];
        let q = q.reshape(per_head)?.rms_norm(&self.norm_q, EPS)?.reshape(dims.clone())?;
        let k = k.reshape(per_head)?.rms_norm(&self.norm_k, EPS)?.reshape(dims)?;
        Ok([q, k, v])
    }
}

/// A GELU(tanh) feed-forward `D -> 4D -> D`.
#[derive(Debug)]
struct FeedForward {
    up: Linear,
    down: Linear,
}

impl FeedForward {
    fn load(ld: &Loader, p: &str, d: usize) -> Result<FeedForward> {
        Ok(FeedForward {
            up: ld.linear(&format!("{p}.net.0.proj"), d, 4 * d, true)?,
            down: ld.linear(&format!("{p}.net.2"), 4 * d, d, true)?,
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.down.forward(&self.up.forward(x)?.activation(Activation::GeluTanh)?)
    }
}

/// One stream of a double block.
#[derive(Debug)]
struct Stream {
    modulation: Linear,
    qkv: Qkv,
    out: Linear,
    ff: FeedForward,
}

#[derive(Debug)]
struct DoubleBlock {
    img: Stream,
    txt: Stream,
}

#[derive(Debug)]
struct SingleBlock {
    modulation: Linear,
    qkv: Qkv,
    mlp: Linear,
    out: Linear,
}

/// Rotary angle tables of one image size, for all tokens of a batch.
#[derive(Debug)]
struct Rope {
    cos: Tensor,
    sin: Tensor,
}

/// The loaded transformer.
#[derive(Debug)]
pub struct FluxTransformer {
    cfg: FluxConfig,
    device: Device,
    x_embedder: Linear,
    context_embedder: Linear,
    time: Mlp2,
    guidance: Option<Mlp2>,
    text: Mlp2,
    double: Vec<DoubleBlock>,
    single: Vec<SingleBlock>,
    norm_out: Linear,
    proj_out: Linear,
    ones: Tensor,
    zeros: Tensor,
}

/// The sinusoidal timestep features diffusers' `Timesteps(256, flip_sin_to_cos=True,
/// downscale_freq_shift=0)` gives: `[cos(t f_i)..., sin(t f_i)...]` with
/// `f_i = exp(-ln(10000) i / 128)`, in f32.
pub fn timestep_features(t: f32) -> Vec<f32> {
    let half = TIME_FEATURES / 2;
    let mut out = vec![0f32; TIME_FEATURES];
    for i in 0..half {
        let exponent = -(10_000f32).ln() * i as f32 / half as f32;
        let arg = t * exponent.exp();
        out[i] = arg.cos();
        out[half + i] = arg.sin();
    }
    out
}

/// FLUX's rope angles (diffusers' `FluxPosEmbed`): for each token's three position ids, the
/// concatenation over axes of `pos * theta^(-2j/d_axis)`, computed in f64 and rounded to f32.
/// Returns `(cos, sin)`, each `ids.len() * head_dim/2` values.
pub fn rope_tables(ids: &[[f64; 3]], axes: &[usize]) -> (Vec<f32>, Vec<f32>) {
    let pairs: usize = axes.iter().sum::<usize>() / 2;
    let (mut cos, mut sin) = (Vec::with_capacity(ids.len() * pairs), Vec::with_capacity(ids.len() * pairs));
    for id in ids {
        for (a, &d) in axes.iter().enumerate() {
            for j in 0..d / 2 {
                let freq = 1.0 / ROPE_THETA.powf((2 * j) as f64 / d as f64);
                let angle = id[a] * freq;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
    }
    (cos, sin)
}

/// Position ids of `txt_len` text tokens then an image of `rows x cols` tokens.
pub fn position_ids(txt_len: usize, rows: usize, cols: usize) -> Vec<[f64; 3]> {
    let mut ids = vec![[0.0; 3]; txt_len];
    for r in 0..rows {
        for c in 0..cols {
            ids.push([0.0, r as f64, c as f64]);
        }
    }
    ids
}

impl FluxTransformer {
    /// Loads the transformer with configuration `cfg` from `ld`.
    pub fn load(cfg: FluxConfig, ld: &Loader) -> Result<FluxTransformer> {
        cfg.check()?;
        let (d, hd) = (cfg.dim(), cfg.attention_head_dim);
        let mut double = Vec::with_capacity(cfg.num_layers);
        for i in 0..cfg.num_layers {
            let p = format!("transformer_blocks.{i}");
            let stream = |modn: &str, names: [&str; 5], out: &str, ff: &str| -> Result<Stream> {
                Ok(Stream {
                    modulation: ld.linear(&format!("{p}.{modn}.linear"), d, 6 * d, true)?,
                    qkv: Qkv::load(ld, &format!("{p}.attn"), names, d, hd)?,
                    out: ld.linear(&format!("{p}.attn.{out}"), d, d, true)?,
                    ff: FeedForward::load(ld, &format!("{p}.{ff}"), d)?,
                })
            };
            double.push(DoubleBlock {
                img: stream("norm1", ["to_q", "to_k", "to_v", "norm_q", "norm_k"], "to_out.0", "ff")?,
                txt: stream(
                    "norm1_context",
                    ["add_q_proj", "add_k_proj", "add_v_proj", "norm_added_q", "norm_added_k"],
                    "to_add_out",
                    "ff_context",
                )?,
            });
        }
        let mut single = Vec::with_capacity(cfg.num_single_layers);
        for i in 0..cfg.num_single_layers {
            let p = format!("single_transformer_blocks.{i}");
            single.push(SingleBlock {
                modulation: ld.linear(&format!("{p}.norm.linear"), d, 3 * d, true)?,
                qkv: Qkv::load(ld, &format!("{p}.attn"), ["to_q", "to_k", "to_v", "norm_q", "norm_k"], d, hd)?,
                mlp: ld.linear(&format!("{p}.proj_mlp"), d, 4 * d, true)?,
                out: ld.linear(&format!("{p}.proj_out"), 5 * d, d, true)?,
            });
        }
        let guidance = if cfg.guidance_embeds {
            Some(Mlp2::load(ld, "time_text_embed.guidance_embedder", TIME_FEATURES, d)?)
        } else {
            None
        };
        Ok(FluxTransformer {
            x_embedder: ld.linear("x_embedder", cfg.in_channels, d, true)?,
            context_embedder: ld.linear("context_embedder", cfg.joint_attention_dim, d, true)?,
            time: Mlp2::load(ld, "time_text_embed.timestep_embedder", TIME_FEATURES, d)?,
            guidance,
            text: Mlp2::load(ld, "time_text_embed.text_embedder", cfg.pooled_projection_dim, d)?,
            double,
            single,
            norm_out: ld.linear("norm_out.linear", d, 2 * d, true)?,
            proj_out: ld.linear("proj_out", d, cfg.out_features(), true)?,
            ones: Tensor::from_f32(&vec![1.0; d], [d], ld.device)?,
            zeros: Tensor::from_f32(&vec![0.0; d], [d], ld.device)?,
            device: ld.device.clone(),
            cfg,
        })
    }

    pub fn config(&self) -> &FluxConfig {
        &self.cfg
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// `temb`'s text part, `[n, D]` from the pooled CLIP vectors `[n, pooled]`: constant over
    /// the denoising steps, so the pipeline computes it once.
    pub fn pooled_embedding(&self, pooled: &Tensor) -> Result<Tensor> {
        self.text.forward(pooled)
    }

    /// The text tokens embedded, `[n, L, D]` from T5's `[n, L, joint]`; also constant.
    pub fn context(&self, t5: &Tensor) -> Result<Tensor> {
        self.context_embedder.forward(t5)
    }

    /// Rope tables for `n` images of `rows x cols` tokens after `txt_len` text tokens.
    fn rope(&self, n: usize, txt_len: usize, rows: usize, cols: usize) -> Result<Rope> {
        let ids = position_ids(txt_len, rows, cols);
        let (cos, sin) = rope_tables(&ids, &self.cfg.axes_dims_rope);
        let half = self.cfg.attention_head_dim / 2;
        let tokens = ids.len();
        let (cos, sin) = (cos.repeat(n), sin.repeat(n));
        Ok(Rope {
            cos: Tensor::from_f32(&cos, [n * tokens, half], &self.device)?,
            sin: Tensor::from_f32(&sin, [n * tokens, half], &self.device)?,
        })
    }

    fn norm(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.layer_norm(&self.ones, &self.zeros, EPS)?)
    }

    /// Joint attention of `q, k, v [n, L, D]` (text first) with rope: `[n, L, D]`.
    fn attention(&self, q: &Tensor, k: &Tensor, v: &Tensor, rope: &Rope) -> Result<Tensor> {
        let dims = q.dims().to_vec();
        let (n, l) = (dims[0], dims[1]);
        let (h, hd) = (self.cfg.num_attention_heads, self.cfg.attention_head_dim);
        let heads = [n * l, h, hd];
        let q = q.reshape(heads)?.rotary(&rope.cos, &rope.sin, RopeLayout::Interleaved)?;
        let k = k.reshape(heads)?.rotary(&rope.cos, &rope.sin, RopeLayout::Interleaved)?;
        let v = v.reshape(heads)?;
        let scale = 1.0 / (hd as f32).sqrt();
        Ok(q.attention_full(&k, &v, &vec![l; n], scale)?.reshape(dims)?)
    }

    /// The per-sample modulation rows: `linear(silu(temb))` split into `parts` `[n, D]` tensors.
    fn modulation(&self, lin: &Linear, silu_temb: &Tensor, parts: usize) -> Result<Vec<Tensor>> {
        let d = self.cfg.dim();
        let m = lin.forward(silu_temb)?;
        (0..parts).map(|i| Ok(m.narrow(1, i * d, d)?)).collect()
    }

    fn double_block(
        &self,
        b: &DoubleBlock,
        img: Tensor,
        txt: Tensor,
        silu_temb: &Tensor,
        rope: &Rope,
    ) -> Result<(Tensor, Tensor)> {
        let (h, hd) = (self.cfg.num_attention_heads, self.cfg.attention_head_dim);
        let mi = self.modulation(&b.img.modulation, silu_temb, 6)?;
        let mt = self.modulation(&b.txt.modulation, silu_temb, 6)?;
        // shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp
        let img_n = self.norm(&img)?.modulate(&mi[1], &mi[0])?;
        let txt_n = self.norm(&txt)?.modulate(&mt[1], &mt[0])?;
        let [qi, ki, vi] = b.img.qkv.forward(&img_n, h, hd)?;
        let [qt, kt, vt] = b.txt.qkv.forward(&txt_n, h, hd)?;
        let cat = |a: &Tensor, b: &Tensor| Tensor::concat(&[a, b], 1);
        let attn = self.attention(&cat(&qt, &qi)?, &cat(&kt, &ki)?, &cat(&vt, &vi)?, rope)?;
        let lt = txt.dims()[1];
        let li = img.dims()[1];
        let (attn_t, attn_i) = (attn.narrow(1, 0, lt)?, attn.narrow(1, lt, li)?);

        let img = img.gated_add(&mi[2], &b.img.out.forward(&attn_i)?)?;
        let ff = b.img.ff.forward(&self.norm(&img)?.modulate(&mi[4], &mi[3])?)?;
        let img = img.gated_add(&mi[5], &ff)?;

        let txt = txt.gated_add(&mt[2], &b.txt.out.forward(&attn_t)?)?;
        let ff = b.txt.ff.forward(&self.norm(&txt)?.modulate(&mt[4], &mt[3])?)?;
        let txt = txt.gated_add(&mt[5], &ff)?;
        Ok((img, txt))
    }

    fn single_block(&self, b: &SingleBlock, x: Tensor, silu_temb: &Tensor, rope: &Rope) -> Result<Tensor> {
        let (h, hd) = (self.cfg.num_attention_heads, self.cfg.attention_head_dim);
        let m = self.modulation(&b.modulation, silu_temb, 3)?;
        let xn = self.norm(&x)?.modulate(&m[1], &m[0])?;
        let mlp = b.mlp.forward(&xn)?.activation(Activation::GeluTanh)?;
        let [q, k, v] = b.qkv.forward(&xn, h, hd)?;
        let attn = self.attention(&q, &k, &v, rope)?;
        let out = b.out.forward(&Tensor::concat(&[&attn, &mlp], 2)?)?;
        Ok(x.gated_add(&m[2], &out)?)
    }

    /// The timestep conditioning `temb [n, D]` for timestep `t` (the scheduler's timestep / 1000,
    /// as the pipeline passes it) and `guidance` where the model has a guidance embedding, plus
    /// the precomputed `pooled_emb` ([`FluxTransformer::pooled_embedding`]).
    pub fn temb(&self, t: f32, guidance: Option<f32>, pooled_emb: &Tensor) -> Result<Tensor> {
        let n = pooled_emb.dims()[0];
        let feats = |v: f32| -> Result<Tensor> {
            let f = timestep_features(v * 1000.0);
            Ok(Tensor::from_f32(&f.repeat(n), [n, TIME_FEATURES], &self.device)?)
        };
        let mut temb = self.time.forward(&feats(t)?)?;
        if let Some(g) = &self.guidance {
            let scale = guidance.ok_or_else(|| Error::Config("this transformer needs a guidance scale".into()))?;
            temb = temb.add(&g.forward(&feats(scale)?)?)?;
        }
        Ok(temb.add(pooled_emb)?)
    }

    /// One forward pass: packed latents `img [n, rows*cols, in_channels]`, the embedded text
    /// `context [n, L, D]` and `temb [n, D]` give the predicted velocity `[n, rows*cols, out]`.
    pub fn forward(&self, img: &Tensor, context: &Tensor, temb: &Tensor, rows: usize, cols: usize) -> Result<Tensor> {
        let dims = img.dims();
        let (n, li) = (dims[0], dims[1]);
        if li != rows * cols || dims[2] != self.cfg.in_channels {
            return Err(Error::Config(format!(
                "latents {dims:?} for {rows}x{cols} tokens of {} channels",
                self.cfg.in_channels
            )));
        }
        let lt = context.dims()[1];
        let rope = self.rope(n, lt, rows, cols)?;
        let silu_temb = temb.activation(Activation::Silu)?;
        let mut x = self.x_embedder.forward(img)?;
        let mut txt = context.clone();
        for b in &self.double {
            (x, txt) = self.double_block(b, x, txt, &silu_temb, &rope)?;
        }
        let mut joint = Tensor::concat(&[&txt, &x], 1)?;
        for b in &self.single {
            joint = self.single_block(b, joint, &silu_temb, &rope)?;
        }
        let x = joint.narrow(1, lt, li)?;
        let m = self.modulation(&self.norm_out, &silu_temb, 2)?;
        // AdaLayerNormContinuous: scale first, then shift.
        let x = self.norm(&x)?.modulate(&m[0], &m[1])?;
        self.proj_out.forward(&x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestep_features_are_cos_then_sin() {
        let f = timestep_features(0.0);
        assert!(f[..128].iter().all(|&v| v == 1.0));
        assert!(f[128..].iter().all(|&v| v == 0.0));
        let f = timestep_features(500.0);
        assert!((f[0] - 500f32.cos()).abs() < 1e-6 && (f[128] - 500f32.sin()).abs() < 1e-6);
    }

    #[test]
    fn rope_tables_follow_the_axes() {
        let ids = position_ids(1, 2, 3);
        assert_eq!(ids.len(), 7);
        assert_eq!(ids[6], [0.0, 1.0, 2.0]);
        let (cos, sin) = rope_tables(&ids, &[4, 6, 6]);
        assert_eq!(cos.len(), 7 * 8);
        // The text token sits at the origin: no rotation.
        assert!(cos[..8].iter().all(|&c| c == 1.0) && sin[..8].iter().all(|&s| s == 0.0));
        // Token (row 1, col 2): axis-1 pair 0 turns by 1 radian, axis-2 pair 1 by 2 * 10000^(-2/6).
        let t = &sin[6 * 8..7 * 8];
        assert!((t[2] - 1f32.sin()).abs() < 1e-7);
        assert!((t[6] - (2.0 * 10_000f64.powf(-2.0 / 6.0)).sin() as f32).abs() < 1e-7);
    }
}
