//! BERT-style encoders for sentence embeddings, one definition for the family: BERT itself
//! (all-MiniLM, bge, gte, e5 v2), RoBERTa and XLM-RoBERTa (multilingual e5), and nomic-bert
//! (nomic-embed-text: rotary positions, SwiGLU MLP, no biases), which differ only in config
//! values ([`EncoderConfig`]) and pooling ([`Pooling`], from the sentence-transformers folder).
//!
//! Sequences run packed, without padding: the tokens of a batch are concatenated and
//! [`Tensor::attention_full`] keeps each sequence's attention within itself, so no mask exists
//! and no compute is spent on padding. Post-layer-norm blocks: `x = LN(x + attn(x))`,
//! `x = LN(x + down(act(up(x))))`.

use std::path::Path;

use ferrite_tensor::{Device, Tensor};
use serde_json::Value;

pub use crate::encoder_config::EncoderConfig;
use crate::weights::{f32_vector, HfWeights};
use crate::{Error, Pooling, Result, WeightSource};

/// Weight and bias of one linear layer or norm (linear layers may have no bias).
struct Affine {
    w: Tensor,
    b: Option<Tensor>,
}

impl Affine {
    /// `x + b`, or `x` without a bias.
    fn bias(&self, x: Tensor) -> Result<Tensor> {
        Ok(match &self.b {
            Some(b) => x.add(b)?,
            None => x,
        })
    }

    fn norm(&self, x: &Tensor, eps: f32) -> Result<Tensor> {
        let b = self.b.as_ref().ok_or_else(|| Error::MissingWeight("layer norm bias".into()))?;
        Ok(x.layer_norm(&self.w, b, eps)?)
    }
}

struct Layer {
    qkv: [Affine; 3],
    out: Affine,
    attn_norm: Affine,
    /// The gate projection of a gated MLP.
    gate: Option<Affine>,
    up: Affine,
    down: Affine,
    out_norm: Affine,
}

/// A loaded encoder with its pooling.
pub struct Encoder {
    cfg: EncoderConfig,
    pooling: Pooling,
    device: Device,
    word: Tensor,
    /// The learned position table (absent with rotary positions).
    position: Option<Tensor>,
    token_type: Option<Tensor>,
    embed_norm: Affine,
    layers: Vec<Layer>,
}

impl Encoder {
    /// Loads a sentence-transformers (or plain Hugging Face) encoder folder: `config.json`,
    /// safetensors, and the pooling of `modules.json`.
    pub fn load_folder(dir: &Path, device: &Device) -> Result<Encoder> {
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path)
            .map_err(|source| Error::Io { path: cfg_path.display().to_string(), source })?;
        let json: Value =
            serde_json::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", cfg_path.display())))?;
        let cfg = EncoderConfig::from_hf_json(&json)?;
        let pooling = Pooling::from_folder(dir)?;
        Encoder::load(&HfWeights::encoder(dir)?, cfg, pooling, device)
    }

    /// Builds the encoder from `src` (GGUF tensor names) on `device`. Q, K and V come as three
    /// matrices (`attn_q`, `attn_k`, `attn_v`) or one fused `attn_qkv`, split here by rows.
    pub fn load(src: &dyn WeightSource, cfg: EncoderConfig, pooling: Pooling, device: &Device) -> Result<Encoder> {
        let w = |name: &str| -> Result<Tensor> { Ok(src.tensor(name)?.to_device(device)?) };
        let v = |name: &str| -> Result<Tensor> { Ok(f32_vector(src, name)?.to_device(device)?) };
        let lin = |name: &str, bias: bool| -> Result<Affine> {
            let b = if bias { Some(v(&format!("{name}.bias"))?) } else { None };
            Ok(Affine { w: w(&format!("{name}.weight"))?, b })
        };
        let norm = |name: &str| -> Result<Affine> {
            Ok(Affine { w: v(&format!("{name}.weight"))?, b: Some(v(&format!("{name}.bias"))?) })
        };
        let d = cfg.hidden;
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for il in 0..cfg.n_layer {
            let p = |n: &str| format!("blk.{il}.{n}");
            let qkv = if src.contains(&p("attn_qkv.weight")) {
                let fused = lin(&p("attn_qkv"), cfg.attn_bias)?;
                if fused.w.dims() != [3 * d, d] {
                    return Err(Error::Config(format!(
                        "{} is {:?}, not [{}, {d}]",
                        p("attn_qkv"),
                        fused.w.dims(),
                        3 * d
                    )));
                }
                let part = |i: usize| -> Result<Affine> {
                    let b = match &fused.b {
                        Some(b) => Some(Tensor::from_f32(&b.to_vec_f32()?[i * d..(i + 1) * d], vec![d], device)?),
                        None => None,
                    };
                    Ok(Affine { w: fused.w.narrow_rows(i * d, d)?, b })
                };
                [part(0)?, part(1)?, part(2)?]
            } else {
                [
                    lin(&p("attn_q"), cfg.attn_bias)?,
                    lin(&p("attn_k"), cfg.attn_bias)?,
                    lin(&p("attn_v"), cfg.attn_bias)?,
                ]
            };
            layers.push(Layer {
                qkv,
                out: lin(&p("attn_output"), cfg.attn_bias)?,
                attn_norm: norm(&p("attn_output_norm"))?,
                gate: if cfg.gated_mlp { Some(lin(&p("ffn_gate"), cfg.mlp_up_bias)?) } else { None },
                up: lin(&p("ffn_up"), cfg.mlp_up_bias)?,
                down: lin(&p("ffn_down"), cfg.mlp_down_bias)?,
                out_norm: norm(&p("layer_output_norm"))?,
            });
        }
        let word = w("token_embd.weight")?;
        let position = if cfg.rotary.is_none() { Some(w("position_embd.weight")?) } else { None };
        let table_ok = position.as_ref().is_none_or(|p| p.dims() == [cfg.max_positions, cfg.hidden]);
        if word.dims() != [cfg.vocab, cfg.hidden] || !table_ok {
            return Err(Error::Config(format!(
                "embeddings {:?} / positions {:?} do not match vocab {}, {} positions, hidden {}",
                word.dims(),
                position.as_ref().map(|p| p.dims().to_vec()),
                cfg.vocab,
                cfg.max_positions,
                cfg.hidden
            )));
        }
        let token_type = if cfg.type_vocab > 0 { Some(w("token_types.weight")?) } else { None };
        Ok(Encoder {
            embed_norm: norm("token_embd_norm")?,
            word,
            position,
            token_type,
            layers,
            cfg,
            pooling,
            device: device.clone(),
        })
    }

    pub fn config(&self) -> &EncoderConfig {
        &self.cfg
    }

    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// Length of the pooled vectors.
    pub fn dim(&self) -> usize {
        self.cfg.hidden
    }

    /// One pooled (and, if the model says so, normalised) vector per sequence, the sequences
    /// run together as one packed batch.
    pub fn embed(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let states = self.forward(seqs)?.to_vec_f32()?;
        let d = self.cfg.hidden;
        let mut at = 0;
        Ok(seqs
            .iter()
            .map(|s| {
                let rows = &states[at * d..(at + s.len()) * d];
                at += s.len();
                self.pooling.apply(rows, d)
            })
            .collect())
    }

    /// The last hidden states `[total tokens, hidden]` of the packed sequences.
    pub fn forward(&self, seqs: &[&[u32]]) -> Result<Tensor> {
        self.device.run(|| self.forward_inner(seqs))
    }

    fn forward_inner(&self, seqs: &[&[u32]]) -> Result<Tensor> {
        let c = &self.cfg;
        if seqs.is_empty() || seqs.iter().any(|s| s.is_empty()) {
            return Err(Error::Batch("empty batch or empty sequence".into()));
        }
        if let Some(s) = seqs.iter().find(|s| s.len() > c.max_tokens()) {
            return Err(Error::Batch(format!(
                "sequence of {} tokens exceeds the {} positions",
                s.len(),
                c.max_tokens()
            )));
        }
        let ids: Vec<u32> = seqs.iter().flat_map(|s| s.iter().copied()).collect();
        if let Some(&bad) = ids.iter().find(|&&t| t as usize >= c.vocab) {
            return Err(Error::Batch(format!("token id {bad} outside the vocabulary of {}", c.vocab)));
        }
        let positions: Vec<u32> =
            seqs.iter().flat_map(|s| (0..s.len()).map(|p| (p + c.position_offset) as u32)).collect();
        let lens: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        let n = ids.len();
        let mut x = self.word.embedding(&ids)?;
        if let Some(table) = &self.position {
            x = x.add(&table.embedding(&positions)?)?;
        }
        if let Some(tt) = &self.token_type {
            // One segment: every token has type 0, so its row is a bias.
            x = x.add(&tt.embedding(&[0])?)?;
        }
        let eps = c.layer_norm_eps;
        x = self.embed_norm.norm(&x, eps)?;
        let hd = c.hidden / c.n_head;
        let scale = 1.0 / (hd as f32).sqrt();
        for l in &self.layers {
            let ws = [&l.qkv[0].w, &l.qkv[1].w, &l.qkv[2].w];
            let [q, k, v]: [Tensor; 3] = x
                .matmul_many(&ws)?
                .try_into()
                .map_err(|_| Error::Batch("matmul_many returned the wrong count".into()))?;
            let [q, k, v] = [(q, &l.qkv[0]), (k, &l.qkv[1]), (v, &l.qkv[2])]
                .map(|(t, a)| a.bias(t).and_then(|t| Ok(t.reshape([n, c.n_head, hd])?)));
            let (mut q, mut k) = (q?, k?);
            if let Some(rope) = &c.rotary {
                q = q.rope(&positions, rope)?;
                k = k.rope(&positions, rope)?;
            }
            let a = q.attention_full(&k, &v?, &lens, scale)?.reshape([n, c.hidden])?;
            let a = l.out.bias(a.matmul(&l.out.w)?)?;
            x = l.attn_norm.norm(&x.add(&a)?, eps)?;
            let h = match &l.gate {
                Some(gate) => {
                    let [g, u]: [Tensor; 2] = x
                        .matmul_many(&[&gate.w, &l.up.w])?
                        .try_into()
                        .map_err(|_| Error::Batch("matmul_many returned the wrong count".into()))?;
                    gate.bias(g)?.gated_activation(&l.up.bias(u)?, c.activation)?
                }
                None => l.up.bias(x.matmul(&l.up.w)?)?.activation(c.activation)?,
            };
            let f = l.down.bias(h.matmul(&l.down.w)?)?;
            x = l.out_norm.norm(&x.add(&f)?, eps)?;
        }
        Ok(x)
    }
}
