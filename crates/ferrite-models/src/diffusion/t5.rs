//! [`T5Encoder`]: the encoder half of T5 (FLUX's `text_encoder_2/`, T5-XXL v1.1), whose
//! sequence output FLUX attends to.
//!
//! transformers' `T5EncoderModel`: token embeddings (`shared`), then per block
//! `x += o(attn(RMS(x)))` and `x += wo(gelu_new(wi_0(RMS(x))) * wi_1(RMS(x)))`, then a final
//! RMS norm (T5's layer norm has no mean and no bias). Attention scores are not scaled; they get
//! a relative position bias, learned in block 0 only and reused by every block, which is built on
//! the host per sequence length from [`relative_position_bucket`] and passed as
//! [`DenseAttention::bias`]. FluxPipeline passes no attention mask, so padding is attended, and
//! so it is here. Weights keep their stored dtype; norms are f32.

use std::path::Path;
use std::sync::Mutex;

use ferrite_tensor::{Activation, DenseAttention, Device, Tensor};
use serde::Deserialize;

use super::{CheckedWeights, WeightList};
use crate::{Error, Result};

/// The fields of a `T5Config` (`text_encoder_2/config.json`) the encoder reads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct T5Config {
    pub vocab_size: usize,
    pub d_model: usize,
    pub d_kv: usize,
    pub d_ff: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    #[serde(default = "default_buckets")]
    pub relative_attention_num_buckets: usize,
    #[serde(default = "default_max_distance")]
    pub relative_attention_max_distance: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f32,
    /// `gated-gelu` (T5 v1.1, FLUX) or another `gated-ACT`; T5 v1.0's ungated `relu` is not
    /// supported.
    #[serde(default = "default_ff")]
    pub feed_forward_proj: String,
}

fn default_buckets() -> usize {
    32
}
fn default_max_distance() -> usize {
    128
}
fn default_eps() -> f32 {
    1e-6
}
fn default_ff() -> String {
    "relu".into()
}

impl T5Config {
    /// Parses `config.json` of a `T5EncoderModel` (or any T5 checkpoint).
    pub fn from_json(text: &str) -> Result<T5Config> {
        let cfg: T5Config = serde_json::from_str(text).map_err(|e| Error::Config(format!("T5 config: {e}")))?;
        cfg.activation()?;
        if cfg.relative_attention_num_buckets < 4 || cfg.relative_attention_max_distance < 2 {
            return Err(Error::Config(format!(
                "T5 config: {} relative attention buckets and max distance {} are too few",
                cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance
            )));
        }
        Ok(cfg)
    }

    /// The gate activation of the gated feed-forward, as transformers maps
    /// `feed_forward_proj` (`gated-gelu` is the tanh approximation, `gelu_new`).
    pub fn activation(&self) -> Result<Activation> {
        match self.feed_forward_proj.as_str() {
            "gated-gelu" | "gated-gelu_new" | "gated-gelu_pytorch_tanh" => Ok(Activation::GeluTanh),
            "gated-silu" => Ok(Activation::Silu),
            other => Err(Error::Config(format!(
                "T5 config: unsupported feed_forward_proj `{other}` (supported: gated-gelu, gated-silu)"
            ))),
        }
    }

    fn inner(&self) -> usize {
        self.num_heads * self.d_kv
    }
}

/// The bucket of the relative position `key - query`, exactly as transformers'
/// `T5Attention._relative_position_bucket` with `bidirectional=True`: half the buckets for keys
/// after the query; within each half, distances below a quarter of the buckets get their own
/// bucket and larger ones share log-spaced buckets up to `max_distance`. The log step is
/// computed in f32 in torch's order, so the truncation lands on the same side at exact powers.
pub fn relative_position_bucket(relative: i64, num_buckets: usize, max_distance: usize) -> usize {
    let half = num_buckets / 2;
    let base = if relative > 0 { half } else { 0 };
    let distance = relative.unsigned_abs() as usize;
    let max_exact = half / 2;
    if distance < max_exact {
        return base + distance;
    }
    let span = ((max_distance as f64) / (max_exact as f64)).ln() as f32;
    let log = (distance as f32 / max_exact as f32).ln() / span * (half - max_exact) as f32;
    base + (max_exact + log as usize).min(half - 1)
}

/// Every tensor name and shape [`T5Encoder::load`] reads for `cfg`, in transformers'
/// `T5EncoderModel` naming (`shared.weight` may be stored as its tied twin
/// `encoder.embed_tokens.weight`).
pub fn expected_weights(cfg: &T5Config) -> WeightList {
    let (d, inner, ff) = (cfg.d_model, cfg.inner(), cfg.d_ff);
    let mut list: WeightList = vec![("shared.weight".into(), vec![cfg.vocab_size, d])];
    for b in 0..cfg.num_layers {
        let p = |n: &str| format!("encoder.block.{b}.layer.{n}");
        for (name, shape) in [
            ("0.SelfAttention.q.weight", vec![inner, d]),
            ("0.SelfAttention.k.weight", vec![inner, d]),
            ("0.SelfAttention.v.weight", vec![inner, d]),
            ("0.SelfAttention.o.weight", vec![d, inner]),
        ] {
            list.push((p(name), shape));
        }
        if b == 0 {
            list.push((
                p("0.SelfAttention.relative_attention_bias.weight"),
                vec![cfg.relative_attention_num_buckets, cfg.num_heads],
            ));
        }
        for (name, shape) in [
            ("0.layer_norm.weight", vec![d]),
            ("1.DenseReluDense.wi_0.weight", vec![ff, d]),
            ("1.DenseReluDense.wi_1.weight", vec![ff, d]),
            ("1.DenseReluDense.wo.weight", vec![d, ff]),
            ("1.layer_norm.weight", vec![d]),
        ] {
            list.push((p(name), shape));
        }
    }
    list.push(("encoder.final_layer_norm.weight".into(), vec![d]));
    list
}

struct Block {
    attn_norm: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    o: Tensor,
    ff_norm: Tensor,
    wi_0: Tensor,
    wi_1: Tensor,
    wo: Tensor,
}

/// A loaded T5 encoder.
pub struct T5Encoder {
    cfg: T5Config,
    act: Activation,
    device: Device,
    embed: Tensor,
    blocks: Vec<Block>,
    final_norm: Tensor,
    /// Block 0's relative attention bias `[buckets, heads]`, on the host.
    relative_bias: Vec<f32>,
    /// The last score bias built, with its length.
    bias_cache: Mutex<Option<(usize, Tensor)>>,
}

impl std::fmt::Debug for T5Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("T5Encoder").field("cfg", &self.cfg).finish()
    }
}

impl T5Encoder {
    /// Loads a `text_encoder_2/` folder: `config.json` and `model.safetensors` or a sharded
    /// `model.safetensors.index.json`, f32, f16 or bf16.
    pub fn load(dir: &Path, device: &Device) -> Result<T5Encoder> {
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path)
            .map_err(|source| Error::Io { path: cfg_path.display().to_string(), source })?;
        let cfg = T5Config::from_json(&text)?;
        let tied = |name: &str| match name {
            "shared.weight" => vec!["encoder.embed_tokens.weight".to_string()],
            _ => vec![],
        };
        let w = CheckedWeights::open(dir, device, expected_weights(&cfg), &tied)?;
        let mut blocks = Vec::with_capacity(cfg.num_layers);
        for b in 0..cfg.num_layers {
            let p = |n: &str| format!("encoder.block.{b}.layer.{n}");
            blocks.push(Block {
                attn_norm: w.get_f32(&p("0.layer_norm.weight"))?,
                q: w.get(&p("0.SelfAttention.q.weight"))?,
                k: w.get(&p("0.SelfAttention.k.weight"))?,
                v: w.get(&p("0.SelfAttention.v.weight"))?,
                o: w.get(&p("0.SelfAttention.o.weight"))?,
                ff_norm: w.get_f32(&p("1.layer_norm.weight"))?,
                wi_0: w.get(&p("1.DenseReluDense.wi_0.weight"))?,
                wi_1: w.get(&p("1.DenseReluDense.wi_1.weight"))?,
                wo: w.get(&p("1.DenseReluDense.wo.weight"))?,
            });
        }
        let relative_bias =
            w.get("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")?.to_vec_f32()?;
        Ok(T5Encoder {
            act: cfg.activation()?,
            device: device.clone(),
            embed: w.get("shared.weight")?,
            final_norm: w.get_f32("encoder.final_layer_norm.weight")?,
            blocks,
            relative_bias,
            bias_cache: Mutex::new(None),
            cfg,
        })
    }

    /// The config it was loaded with.
    pub fn config(&self) -> &T5Config {
        &self.cfg
    }

    /// The sequence output `[n, L, d_model]` of `n` id rows of one length `L`.
    pub fn encode(&self, ids: &[Vec<u32>]) -> Result<Tensor> {
        let c = &self.cfg;
        let Some(first) = ids.first() else {
            return Err(Error::Batch("T5: no id rows".into()));
        };
        let len = first.len();
        if len == 0 || ids.iter().any(|r| r.len() != len) {
            return Err(Error::Batch(format!(
                "T5: id rows must share one non-zero length (got lengths {:?})",
                ids.iter().map(Vec::len).collect::<Vec<_>>()
            )));
        }
        if let Some(&bad) = ids.iter().flatten().find(|&&t| t as usize >= c.vocab_size) {
            return Err(Error::Batch(format!("T5: token id {bad} outside the vocabulary of {}", c.vocab_size)));
        }
        let bias = self.position_bias(len)?;
        let x = self.device.run(|| self.forward(ids, &bias))?;
        Ok(x.reshape([ids.len(), len, c.d_model])?)
    }

    fn forward(&self, ids: &[Vec<u32>], bias: &Tensor) -> Result<Tensor> {
        let c = &self.cfg;
        let (n, len) = (ids.len(), ids[0].len());
        let tokens = n * len;
        let flat: Vec<u32> = ids.iter().flatten().copied().collect();
        let mut x = self.embed.embedding(&flat)?;
        let opts = DenseAttention { scale: 1.0, causal: false, bias: Some(bias) };
        let lens = vec![len; n];
        let eps = c.layer_norm_epsilon;
        for b in &self.blocks {
            let h = x.rms_norm(&b.attn_norm, eps)?;
            let [q, k, v]: [Tensor; 3] = h
                .matmul_many(&[&b.q, &b.k, &b.v])?
                .try_into()
                .map_err(|_| Error::Batch("matmul_many returned the wrong count".into()))?;
            let shape = [tokens, c.num_heads, c.d_kv];
            let a = q.reshape(shape)?.attention_dense(&k.reshape(shape)?, &v.reshape(shape)?, &lens, &opts)?;
            x = x.add(&a.reshape([tokens, c.inner()])?.matmul(&b.o)?)?;
            let h = x.rms_norm(&b.ff_norm, eps)?;
            let [gate, up]: [Tensor; 2] = h
                .matmul_many(&[&b.wi_0, &b.wi_1])?
                .try_into()
                .map_err(|_| Error::Batch("matmul_many returned the wrong count".into()))?;
            // Not `gated_activation`: its GeluTanh is ggml's fp16 GeGLU table (llama.cpp parity
            // for Gemma), about 1e-3 off; T5 golden-matches transformers' exact gelu_new.
            x = x.add(&gate.activation(self.act)?.mul(&up)?.matmul(&b.wo)?)?;
        }
        Ok(x.rms_norm(&self.final_norm, eps)?)
    }

    /// The score bias `[heads, len, len]`: `bias[h, i, j]` is block 0's learned bias of head `h`
    /// for the bucket of `j - i`. Built once per length (the last one is kept).
    fn position_bias(&self, len: usize) -> Result<Tensor> {
        let mut cache = self.bias_cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((l, t)) = cache.as_ref() {
            if *l == len {
                return Ok(t.clone());
            }
        }
        let c = &self.cfg;
        let heads = c.num_heads;
        // The bucket of every relative distance -(len-1) ..= len-1.
        let buckets: Vec<usize> = (1 - len as i64..len as i64)
            .map(|r| relative_position_bucket(r, c.relative_attention_num_buckets, c.relative_attention_max_distance))
            .collect();
        let mut bias = vec![0f32; heads * len * len];
        for (h, plane) in bias.chunks_exact_mut(len * len).enumerate() {
            for (i, row) in plane.chunks_exact_mut(len).enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = self.relative_bias[buckets[len - 1 + j - i] * heads + h];
                }
            }
        }
        let t = Tensor::from_f32(&bias, [heads, len, len], &self.device)?;
        *cache = Some((len, t.clone()));
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLUX_T5_XXL: &str = r#"{
        "architectures": ["T5EncoderModel"], "classifier_dropout": 0.0, "d_ff": 10240, "d_kv": 64,
        "d_model": 4096, "decoder_start_token_id": 0, "dense_act_fn": "gelu_new", "dropout_rate": 0.1,
        "eos_token_id": 1, "feed_forward_proj": "gated-gelu", "initializer_factor": 1.0,
        "is_encoder_decoder": true, "is_gated_act": true, "layer_norm_epsilon": 1e-06,
        "model_type": "t5", "num_decoder_layers": 24, "num_heads": 64, "num_layers": 24,
        "output_past": true, "pad_token_id": 0, "relative_attention_max_distance": 128,
        "relative_attention_num_buckets": 32, "tie_word_embeddings": false,
        "torch_dtype": "bfloat16", "use_cache": true, "vocab_size": 32128
    }"#;

    /// Buckets of transformers 4.x `T5Attention._relative_position_bucket(torch.arange(-200, 201),
    /// bidirectional=True, num_buckets=32, max_distance=128)` at the distances where the bucket
    /// changes, and at exact powers of two where f32 truncation decides.
    #[test]
    fn buckets_match_transformers() {
        let bucket = |r: i64| relative_position_bucket(r, 32, 128);
        let cases = [
            (0, 0),
            (1, 17),
            (-1, 1),
            (7, 23),
            (-7, 7),
            (8, 24),
            (-8, 8),
            (11, 24),
            (12, 25),
            (15, 25),
            (16, 26),
            (-16, 10),
            (22, 26),
            (23, 27),
            (32, 28),
            (-32, 12),
            (45, 28),
            (46, 29),
            (64, 30),
            (90, 30),
            (91, 31),
            (128, 31),
            (200, 31),
            (-200, 15),
        ];
        for (r, want) in cases {
            assert_eq!(bucket(r), want, "relative position {r}");
        }
    }

    #[test]
    fn buckets_grow_monotonically_and_stay_in_their_half() {
        for (nb, md) in [(32, 128), (64, 256), (8, 20)] {
            let mut last = 0;
            for r in 0..1000i64 {
                let b = relative_position_bucket(r, nb, md);
                let neg = relative_position_bucket(-r, nb, md);
                assert!(b >= last && b < nb, "{nb} {md} {r}: {b}");
                assert!(neg < nb / 2, "{nb} {md} {r}: {neg}");
                assert_eq!(b, if r == 0 { 0 } else { neg + nb / 2 }, "symmetric halves at {r}");
                last = b;
            }
        }
    }

    #[test]
    fn parses_t5_xxl_and_lists_its_weights() {
        let cfg = T5Config::from_json(FLUX_T5_XXL).expect("config");
        assert_eq!(cfg.activation().expect("act"), Activation::GeluTanh);
        let list = expected_weights(&cfg);
        assert_eq!(list.len(), 1 + 24 * 9 + 1 + 1);
        let params: usize = list.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
        assert_eq!(params, 4_762_310_656, "T5-XXL's encoder has 4,762,310,656 parameters");
        let bad = FLUX_T5_XXL.replace("gated-gelu", "relu");
        assert!(T5Config::from_json(&bad).expect_err("relu").to_string().contains("relu"));
    }
}
