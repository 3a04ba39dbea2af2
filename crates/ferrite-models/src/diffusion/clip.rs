//! [`ClipTextEncoder`]: CLIP's text transformer (FLUX's `text_encoder/`, CLIP-L), of which
//! FLUX uses the pooled output.
//!
//! transformers' `CLIPTextModel`: token plus position embeddings, pre-LN layers
//! (`x += attn(LN1(x))` with causal attention, `x += fc2(act(fc1(LN2(x))))`), a final layer
//! norm, and the hidden state at each sequence's end token as the pooled vector. Weights keep
//! their stored dtype (the matmul and the embedding gather read f16/bf16 directly); norms and
//! biases are f32.

use std::path::Path;

use ferrite_tensor::{Activation, DenseAttention, Device, Tensor};
use serde::Deserialize;

use super::{CheckedWeights, WeightList};
use crate::{Error, Result};

/// The fields of a `CLIPTextConfig` (`text_encoder/config.json`) the encoder reads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClipConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f32,
    /// `2` (the legacy value of the original CLIP configs, FLUX.1's included) means "pool at the
    /// largest id", which is `<|endoftext|>` in CLIP's vocabulary; otherwise pooling is at the
    /// first occurrence of this id.
    #[serde(default = "default_eos")]
    pub eos_token_id: u32,
}

fn default_hidden_act() -> String {
    "quick_gelu".into()
}
fn default_layer_norm_eps() -> f32 {
    1e-5
}
fn default_eos() -> u32 {
    2
}

impl ClipConfig {
    /// Parses `config.json` of a `CLIPTextModel` (or the `text_config` of a full `CLIPModel`).
    pub fn from_json(text: &str) -> Result<ClipConfig> {
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::Config(format!("CLIP config: {e}")))?;
        let json = json.get("text_config").cloned().unwrap_or(json);
        let cfg: ClipConfig = serde_json::from_value(json).map_err(|e| Error::Config(format!("CLIP config: {e}")))?;
        cfg.activation()?;
        if cfg.num_attention_heads == 0 || !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads) {
            return Err(Error::Config(format!(
                "CLIP config: hidden_size {} is not a multiple of num_attention_heads {}",
                cfg.hidden_size, cfg.num_attention_heads
            )));
        }
        Ok(cfg)
    }

    /// The activation `hidden_act` names.
    pub fn activation(&self) -> Result<Activation> {
        match self.hidden_act.as_str() {
            "quick_gelu" => Ok(Activation::QuickGelu),
            "gelu" => Ok(Activation::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" => Ok(Activation::GeluTanh),
            other => Err(Error::Config(format!("CLIP config: unsupported hidden_act `{other}`"))),
        }
    }
}

/// Every tensor name and shape [`ClipTextEncoder::load`] reads for `cfg`, in transformers 5's
/// `CLIPTextModel` naming (transformers 4's, with a `text_model.` prefix, loads too).
pub fn expected_weights(cfg: &ClipConfig) -> WeightList {
    let (d, f) = (cfg.hidden_size, cfg.intermediate_size);
    let mut list: WeightList = vec![
        ("embeddings.token_embedding.weight".into(), vec![cfg.vocab_size, d]),
        ("embeddings.position_embedding.weight".into(), vec![cfg.max_position_embeddings, d]),
    ];
    for l in 0..cfg.num_hidden_layers {
        let p = |n: &str| format!("encoder.layers.{l}.{n}");
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            list.push((p(&format!("self_attn.{proj}.weight")), vec![d, d]));
            list.push((p(&format!("self_attn.{proj}.bias")), vec![d]));
        }
        for (name, shape) in [
            ("layer_norm1.weight", vec![d]),
            ("layer_norm1.bias", vec![d]),
            ("mlp.fc1.weight", vec![f, d]),
            ("mlp.fc1.bias", vec![f]),
            ("mlp.fc2.weight", vec![d, f]),
            ("mlp.fc2.bias", vec![d]),
            ("layer_norm2.weight", vec![d]),
            ("layer_norm2.bias", vec![d]),
        ] {
            list.push((p(name), shape));
        }
    }
    list.push(("final_layer_norm.weight".into(), vec![d]));
    list.push(("final_layer_norm.bias".into(), vec![d]));
    list
}

/// A weight matrix `[out, in]` and its f32 bias (linear layers), or a norm's scale and shift.
struct Affine {
    w: Tensor,
    b: Tensor,
}

impl Affine {
    fn load(w: &CheckedWeights, name: &str, matrix: bool) -> Result<Affine> {
        let weight = format!("{name}.weight");
        Ok(Affine {
            w: if matrix { w.get(&weight)? } else { w.get_f32(&weight)? },
            b: w.get_f32(&format!("{name}.bias"))?,
        })
    }

    fn linear(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&self.w)?.add(&self.b)?)
    }

    fn norm(&self, x: &Tensor, eps: f32) -> Result<Tensor> {
        Ok(x.layer_norm(&self.w, &self.b, eps)?)
    }
}

struct Layer {
    norm1: Affine,
    qkv: [Affine; 3],
    out: Affine,
    norm2: Affine,
    fc1: Affine,
    fc2: Affine,
}

/// A loaded CLIP text encoder.
pub struct ClipTextEncoder {
    cfg: ClipConfig,
    act: Activation,
    device: Device,
    token: Tensor,
    position: Tensor,
    layers: Vec<Layer>,
    final_norm: Affine,
}

impl std::fmt::Debug for ClipTextEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTextEncoder").field("cfg", &self.cfg).finish()
    }
}

impl ClipTextEncoder {
    /// Loads a `text_encoder/` folder: `config.json` and `model.safetensors` (or a sharded
    /// index), f32, f16 or bf16.
    pub fn load(dir: &Path, device: &Device) -> Result<ClipTextEncoder> {
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path)
            .map_err(|source| Error::Io { path: cfg_path.display().to_string(), source })?;
        let cfg = ClipConfig::from_json(&text)?;
        // transformers 4 saved `CLIPTextModel` under `text_model.` (the published FLUX.1
        // checkpoints), transformers 5 without it.
        let w = CheckedWeights::open(dir, device, expected_weights(&cfg), &|n| vec![format!("text_model.{n}")])?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let p = |n: &str| format!("encoder.layers.{l}.{n}");
            layers.push(Layer {
                norm1: Affine::load(&w, &p("layer_norm1"), false)?,
                qkv: [
                    Affine::load(&w, &p("self_attn.q_proj"), true)?,
                    Affine::load(&w, &p("self_attn.k_proj"), true)?,
                    Affine::load(&w, &p("self_attn.v_proj"), true)?,
                ],
                out: Affine::load(&w, &p("self_attn.out_proj"), true)?,
                norm2: Affine::load(&w, &p("layer_norm2"), false)?,
                fc1: Affine::load(&w, &p("mlp.fc1"), true)?,
                fc2: Affine::load(&w, &p("mlp.fc2"), true)?,
            });
        }
        Ok(ClipTextEncoder {
            act: cfg.activation()?,
            device: device.clone(),
            token: w.get("embeddings.token_embedding.weight")?,
            position: w.get("embeddings.position_embedding.weight")?,
            final_norm: Affine::load(&w, "final_layer_norm", false)?,
            layers,
            cfg,
        })
    }

    /// The config it was loaded with.
    pub fn config(&self) -> &ClipConfig {
        &self.cfg
    }

    /// The pooled output `[n, hidden]` of `n` id rows (all of one length, at most
    /// `max_position_embeddings`).
    pub fn pooled(&self, ids: &[Vec<u32>]) -> Result<Tensor> {
        self.check(ids)?;
        let len = ids[0].len();
        let picked: Vec<u32> =
            ids.iter().enumerate().map(|(i, row)| (i * len + self.pool_position(row)) as u32).collect();
        self.device.run(|| Ok(self.last_hidden(ids)?.embedding(&picked)?))
    }

    /// The last hidden states `[n * L, hidden]` after the final layer norm.
    fn last_hidden(&self, ids: &[Vec<u32>]) -> Result<Tensor> {
        let c = &self.cfg;
        let (n, len) = (ids.len(), ids[0].len());
        let tokens = n * len;
        let flat: Vec<u32> = ids.iter().flatten().copied().collect();
        let positions: Vec<u32> = (0..n).flat_map(|_| 0..len as u32).collect();
        let mut x = self.token.embedding(&flat)?.add(&self.position.embedding(&positions)?)?;
        let heads = c.num_attention_heads;
        let hd = c.hidden_size / heads;
        let opts = DenseAttention { scale: 1.0 / (hd as f32).sqrt(), causal: true, bias: None };
        let lens = vec![len; n];
        let eps = c.layer_norm_eps;
        for l in &self.layers {
            let h = l.norm1.norm(&x, eps)?;
            let [q, k, v] = [&l.qkv[0], &l.qkv[1], &l.qkv[2]]
                .map(|a| a.linear(&h).and_then(|t| Ok(t.reshape([tokens, heads, hd])?)));
            let a = q?.attention_dense(&k?, &v?, &lens, &opts)?.reshape([tokens, c.hidden_size])?;
            x = x.add(&l.out.linear(&a)?)?;
            let h = l.fc1.linear(&l.norm2.norm(&x, eps)?)?.activation(self.act)?;
            x = x.add(&l.fc2.linear(&h)?)?;
        }
        self.final_norm.norm(&x, eps)
    }

    /// Where transformers' `CLIPTextTransformer` pools a row: with the legacy
    /// `eos_token_id == 2`, at the (first) largest id; otherwise at the first `eos_token_id`
    /// (position 0 when there is none, as `argmax` of an all-false row gives).
    fn pool_position(&self, row: &[u32]) -> usize {
        if self.cfg.eos_token_id == 2 {
            let max = row.iter().copied().max().unwrap_or(0);
            row.iter().position(|&t| t == max).unwrap_or(0)
        } else {
            row.iter().position(|&t| t == self.cfg.eos_token_id).unwrap_or(0)
        }
    }

    /// Checks the rows: at least one, all of one non-zero length within the position table,
    /// every id within the vocabulary.
    fn check(&self, ids: &[Vec<u32>]) -> Result<()> {
        let c = &self.cfg;
        let Some(first) = ids.first() else {
            return Err(Error::Batch("CLIP: no id rows".into()));
        };
        let len = first.len();
        if len == 0 || len > c.max_position_embeddings || ids.iter().any(|r| r.len() != len) {
            return Err(Error::Batch(format!(
                "CLIP: id rows must share one length in 1..={} (got lengths {:?})",
                c.max_position_embeddings,
                ids.iter().map(Vec::len).collect::<Vec<_>>()
            )));
        }
        if let Some(&bad) = ids.iter().flatten().find(|&&t| t as usize >= c.vocab_size) {
            return Err(Error::Batch(format!("CLIP: token id {bad} outside the vocabulary of {}", c.vocab_size)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLUX_CLIP_L: &str = r#"{
        "architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 0,
        "dropout": 0.0, "eos_token_id": 2, "hidden_act": "quick_gelu", "hidden_size": 768,
        "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 3072,
        "layer_norm_eps": 1e-05, "max_position_embeddings": 77, "model_type": "clip_text_model",
        "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 1,
        "projection_dim": 768, "torch_dtype": "bfloat16", "vocab_size": 49408
    }"#;

    #[test]
    fn parses_clip_l_and_lists_its_weights() {
        let cfg = ClipConfig::from_json(FLUX_CLIP_L).expect("config");
        assert_eq!(cfg.activation().expect("act"), Activation::QuickGelu);
        assert_eq!(cfg.eos_token_id, 2);
        let list = expected_weights(&cfg);
        // 2 embeddings + 16 per layer + the final norm's 2.
        assert_eq!(list.len(), 2 + 16 * 12 + 2);
        let params: usize = list.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
        assert_eq!(params, 123_060_480, "CLIP-L's text model has 123,060,480 parameters");
    }

    #[test]
    fn rejects_unknown_activations_and_bad_head_counts() {
        let bad_act = FLUX_CLIP_L.replace("quick_gelu", "swish");
        assert!(ClipConfig::from_json(&bad_act).expect_err("act").to_string().contains("swish"));
        let bad_heads = FLUX_CLIP_L.replace("\"num_attention_heads\": 12", "\"num_attention_heads\": 7");
        assert!(ClipConfig::from_json(&bad_heads).is_err());
        assert!(ClipConfig::from_json("{\"hidden_size\": 8}").is_err(), "missing fields");
    }
}
