//! [`EncoderConfig`]: the sizes and variant switches of a BERT-style encoder, read from a
//! Hugging Face `config.json`. One encoder definition ([`crate::Encoder`]) serves every family
//! below; they differ only in these values:
//!
//! * `bert`: absolute positions from 0, GELU MLP, biases everywhere.
//! * `roberta`, `xlm-roberta`, `camembert`: positions counted from `pad_token_id + 1`.
//! * `nomic_bert` (nomic-embed-text): rotary positions on the first `rotary_emb_fraction` of
//!   each head (no position table), a gated MLP (`activation_function: "swiglu"`:
//!   `fc2(fc11(x) · silu(fc12(x)))`), biases switched by `qkv_proj_bias` / `mlp_fc1_bias` /
//!   `mlp_fc2_bias`, GPT-2-style key names (`n_embd`, `n_head`, `n_layer`, `n_inner`). Its
//!   fused `Wqkv` matrix is split at load. Pre-norm blocks, RMS norms, parallel blocks and
//!   scaled (xPos) rotary are refused with an error naming the key.

use ferrite_tensor::{Activation, RopeConfig, RopeLayout};
use serde_json::Value;

use crate::{Error, Result};

/// Sizes and variant switches of an encoder, from a Hugging Face `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderConfig {
    /// `model_type` as written (`bert`, `roberta`, `xlm-roberta`, `nomic_bert`).
    pub model_type: String,
    pub n_layer: usize,
    pub hidden: usize,
    pub n_head: usize,
    pub intermediate: usize,
    pub vocab: usize,
    /// The longest sequence the positions allow (rows of the position table, or the rotary
    /// model's `n_positions`), before `position_offset`.
    pub max_positions: usize,
    pub type_vocab: usize,
    pub layer_norm_eps: f32,
    /// The MLP's activation (applied to the gate when `gated_mlp`).
    pub activation: Activation,
    /// The position of a sequence's first token: 0 for BERT; RoBERTa counts from
    /// `pad_token_id + 1`, so its table holds `max_positions - offset` usable positions.
    pub position_offset: usize,
    /// Rotary positions on q and k (no position table), or `None` for a learned table.
    pub rotary: Option<RopeConfig>,
    /// `down(act(gate(x)) · up(x))` instead of `down(act(up(x)))`.
    pub gated_mlp: bool,
    /// Whether the q/k/v and attention-output projections have biases.
    pub attn_bias: bool,
    /// Whether the MLP's up (and gate) projections have biases.
    pub mlp_up_bias: bool,
    /// Whether the MLP's down projection has a bias.
    pub mlp_down_bias: bool,
}

impl EncoderConfig {
    /// Reads a Hugging Face `config.json` of a supported encoder.
    pub fn from_hf_json(v: &Value) -> Result<EncoderConfig> {
        let model_type = v["model_type"].as_str().unwrap_or("").to_string();
        let cfg = match model_type.as_str() {
            "bert" => Self::bert_like(v, false)?,
            "roberta" | "xlm-roberta" | "camembert" => Self::bert_like(v, true)?,
            "nomic_bert" => Self::nomic(v)?,
            other => {
                return Err(Error::UnsupportedArch(format!(
                    "{other} (encoders: bert, roberta, xlm-roberta, nomic_bert)"
                )))
            }
        };
        let cfg = EncoderConfig { model_type, ..cfg };
        if cfg.n_head == 0 || cfg.hidden == 0 || !cfg.hidden.is_multiple_of(cfg.n_head) {
            return Err(Error::Config(format!("hidden {} is not a multiple of {} heads", cfg.hidden, cfg.n_head)));
        }
        if cfg.max_positions <= cfg.position_offset {
            return Err(Error::Config(format!("{} positions, offset {}", cfg.max_positions, cfg.position_offset)));
        }
        if let Some(r) = &cfg.rotary {
            let hd = cfg.hidden / cfg.n_head;
            if r.dim == 0 || r.dim > hd || !r.dim.is_multiple_of(2) {
                return Err(Error::Config(format!("rotary dimension {} for heads of {hd}", r.dim)));
            }
        }
        Ok(cfg)
    }

    fn bert_like(v: &Value, roberta: bool) -> Result<EncoderConfig> {
        if v["position_embedding_type"].as_str().is_some_and(|p| p != "absolute") {
            return Err(Error::Config(format!(
                "position_embedding_type {} is not supported (absolute)",
                v["position_embedding_type"]
            )));
        }
        let activation = match v["hidden_act"].as_str().unwrap_or("gelu") {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            other => return Err(Error::Config(format!("hidden_act `{other}` is not supported (gelu, gelu_new)"))),
        };
        Ok(EncoderConfig {
            model_type: String::new(),
            n_layer: uint(v, "num_hidden_layers")?,
            hidden: uint(v, "hidden_size")?,
            n_head: uint(v, "num_attention_heads")?,
            intermediate: uint(v, "intermediate_size")?,
            vocab: uint(v, "vocab_size")?,
            max_positions: uint(v, "max_position_embeddings")?,
            type_vocab: v["type_vocab_size"].as_u64().unwrap_or(0) as usize,
            layer_norm_eps: v["layer_norm_eps"].as_f64().unwrap_or(1e-12) as f32,
            activation,
            position_offset: if roberta { v["pad_token_id"].as_u64().unwrap_or(1) as usize + 1 } else { 0 },
            rotary: None,
            gated_mlp: false,
            attn_bias: true,
            mlp_up_bias: true,
            mlp_down_bias: true,
        })
    }

    /// nomic-bert's keys (`NomicBertConfig`, a GPT-2-style config), with its defaults.
    fn nomic(v: &Value) -> Result<EncoderConfig> {
        for (key, why) in [
            ("prenorm", "pre-norm blocks"),
            ("use_rms_norm", "RMS norms"),
            ("parallel_block", "parallel blocks"),
            ("causal", "causal attention"),
        ] {
            if v[key].as_bool() == Some(true) {
                return Err(Error::Config(format!("nomic_bert with {key}: true ({why}) is not supported")));
            }
        }
        if !v["rotary_emb_scale_base"].is_null() {
            return Err(Error::Config("nomic_bert with rotary_emb_scale_base (xPos) is not supported".into()));
        }
        let (gated_mlp, activation) = match v["activation_function"].as_str().unwrap_or("gelu") {
            "swiglu" => (true, Activation::Silu),
            "geglu" => (true, Activation::Gelu),
            "gelu" => (false, Activation::Gelu),
            "gelu_new" | "gelu_fast" | "gelu_pytorch_tanh" => (false, Activation::GeluTanh),
            other => {
                return Err(Error::Config(format!(
                    "activation_function `{other}` is not supported (swiglu, geglu, gelu, gelu_new)"
                )))
            }
        };
        let (hidden, n_head) = (uint(v, "n_embd")?, uint(v, "n_head")?);
        let fraction = v["rotary_emb_fraction"].as_f64().unwrap_or(0.0);
        let rotary = (fraction > 0.0).then(|| {
            let hd = hidden / n_head.max(1);
            RopeConfig {
                theta: v["rotary_emb_base"].as_f64().unwrap_or(10000.0) as f32,
                dim: (hd as f64 * fraction) as usize,
                layout: if v["rotary_emb_interleaved"].as_bool() == Some(true) {
                    RopeLayout::Interleaved
                } else {
                    RopeLayout::NeoX
                },
                freq_scale: 1.0,
            }
        });
        let flag = |k: &str| v[k].as_bool().unwrap_or(true);
        Ok(EncoderConfig {
            model_type: String::new(),
            n_layer: uint(v, "n_layer")?,
            hidden,
            n_head,
            intermediate: v["n_inner"].as_u64().map_or(4 * hidden, |x| x as usize),
            vocab: uint(v, "vocab_size")?,
            max_positions: uint(v, "n_positions")?,
            type_vocab: v["type_vocab_size"].as_u64().unwrap_or(0) as usize,
            layer_norm_eps: v["layer_norm_epsilon"].as_f64().unwrap_or(1e-5) as f32,
            activation,
            position_offset: 0,
            rotary,
            gated_mlp,
            attn_bias: flag("qkv_proj_bias"),
            mlp_up_bias: flag("mlp_fc1_bias"),
            mlp_down_bias: flag("mlp_fc2_bias"),
        })
    }

    /// The longest sequence the positions allow, special tokens included.
    pub fn max_tokens(&self) -> usize {
        self.max_positions - self.position_offset
    }
}

fn uint(v: &Value, k: &str) -> Result<usize> {
    v[k].as_u64().map(|x| x as usize).ok_or_else(|| Error::Config(format!("config.json: missing {k}")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn nomic_v15() -> Value {
        // nomic-embed-text-v1.5's config.json (the keys that matter).
        json!({
            "model_type": "nomic_bert", "activation_function": "swiglu", "n_embd": 768, "n_head": 12,
            "n_layer": 12, "n_inner": 3072, "n_positions": 8192, "vocab_size": 30528,
            "type_vocab_size": 2, "layer_norm_epsilon": 1e-12, "rotary_emb_fraction": 1.0,
            "rotary_emb_base": 1000, "rotary_emb_interleaved": false, "rotary_emb_scale_base": null,
            "prenorm": false, "qkv_proj_bias": false, "mlp_fc1_bias": false, "mlp_fc2_bias": false,
            "use_rms_norm": false, "causal": false, "parallel_block": false
        })
    }

    #[test]
    fn nomic_config_reads_as_rotary_swiglu_without_biases() {
        let c = EncoderConfig::from_hf_json(&nomic_v15()).unwrap();
        assert_eq!((c.hidden, c.n_head, c.n_layer, c.intermediate, c.vocab), (768, 12, 12, 3072, 30528));
        assert_eq!(c.max_tokens(), 8192);
        assert_eq!(c.layer_norm_eps, 1e-12);
        assert_eq!(c.rotary, Some(RopeConfig { theta: 1000.0, dim: 64, layout: RopeLayout::NeoX, freq_scale: 1.0 }));
        assert!(c.gated_mlp && c.activation == Activation::Silu);
        assert!(!c.attn_bias && !c.mlp_up_bias && !c.mlp_down_bias);
        let bert = json!({"model_type": "bert", "num_hidden_layers": 6, "hidden_size": 384,
            "num_attention_heads": 12, "intermediate_size": 1536, "vocab_size": 30522,
            "max_position_embeddings": 512, "type_vocab_size": 2});
        let b = EncoderConfig::from_hf_json(&bert).unwrap();
        assert!(b.rotary.is_none() && !b.gated_mlp && b.attn_bias && b.mlp_down_bias);
    }

    #[test]
    fn unsupported_nomic_variants_name_their_key() {
        for (key, value) in [
            ("prenorm", json!(true)),
            ("use_rms_norm", json!(true)),
            ("rotary_emb_scale_base", json!(512)),
            ("activation_function", json!("relu")),
            ("rotary_emb_fraction", json!(0.01)),
        ] {
            let mut v = nomic_v15();
            v[key] = value;
            let e = EncoderConfig::from_hf_json(&v).unwrap_err().to_string();
            let named = e.contains(key) || (key == "rotary_emb_fraction" && e.contains("rotary dimension"));
            assert!(named, "{key}: {e}");
        }
    }
}
