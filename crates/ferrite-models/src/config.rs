//! The llama-family configuration, read from GGUF metadata or a Hugging Face `config.json`.

use ferrite_tensor::gguf::GgufFile;
use ferrite_tensor::{Activation, RopeConfig, RopeLayout};
use serde_json::Value;

use crate::{Error, Result};

/// The architectures [`crate::Llama`] implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
    Gemma3,
}

impl Arch {
    pub fn parse(s: &str) -> Result<Arch> {
        match s {
            "llama" | "mistral" => Ok(Arch::Llama),
            "qwen2" => Ok(Arch::Qwen2),
            "gemma3" | "gemma3_text" => Ok(Arch::Gemma3),
            other => Err(Error::UnsupportedArch(other.into())),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub arch: Arch,
    pub n_layer: usize,
    pub hidden: usize,
    pub ffn: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub vocab: usize,
    pub context_length: usize,
    pub rms_eps: f32,
    /// Rope of the full-attention layers.
    pub rope: RopeConfig,
    /// Rope of the sliding-window layers (gemma3: base 10000).
    pub rope_local: RopeConfig,
    /// Multiplier of q·k.
    pub attn_scale: f32,
    /// Sliding-window size, and which layers use it.
    pub sliding_window: Option<usize>,
    /// Layer `i` uses the window when `i % pattern < pattern - 1` (gemma3: 6).
    pub sliding_window_pattern: usize,
    /// Gemma multiplies the embeddings by `sqrt(hidden)`.
    pub embed_scale: Option<f32>,
    pub activation: Activation,
    /// Gemma norms, post-attention and post-FFN norms, q/k norms.
    pub qk_norm: bool,
    pub post_norms: bool,
    /// End-of-generation token ids named by the config (the tokenizer adds its own).
    pub eos_ids: Vec<u32>,
}

/// What the architecture alone decides, whatever the file format: gemma scales embeddings by
/// `sqrt(hidden)`, uses GeGLU, q/k norms and post-attention/post-FFN norms.
fn family_traits(arch: Arch, hidden: usize) -> (Option<f32>, Activation, bool, bool) {
    let gemma = arch == Arch::Gemma3;
    let activation = if gemma { Activation::GeluTanh } else { Activation::Silu };
    (gemma.then(|| (hidden as f32).sqrt()), activation, gemma, gemma)
}

impl LlamaConfig {
    /// Whether layer `il` attends over a sliding window.
    pub fn is_sliding(&self, il: usize) -> bool {
        self.sliding_window.is_some() && il % self.sliding_window_pattern < self.sliding_window_pattern - 1
    }

    fn finish(mut self) -> Result<Self> {
        if self.n_head == 0 || self.n_kv_head == 0 || !self.n_head.is_multiple_of(self.n_kv_head) {
            return Err(Error::Config(format!("{} heads, {} kv heads", self.n_head, self.n_kv_head)));
        }
        if self.n_layer == 0
            || self.hidden == 0
            || self.head_dim == 0
            || !self.head_dim.is_multiple_of(2)
            || self.vocab == 0
        {
            return Err(Error::Config(format!("degenerate sizes in {self:?}")));
        }
        if self.rope.dim > self.head_dim || self.rope.dim == 0 {
            self.rope.dim = self.head_dim;
        }
        self.rope_local.dim = self.rope.dim;
        if self.sliding_window_pattern == 0 {
            self.sliding_window_pattern = 1;
        }
        Ok(self)
    }

    /// Reads the config from GGUF metadata (`{arch}.block_count`, ...). `vocab` comes from the
    /// token list when `{arch}.vocab_size` is absent. GGUF llama models use the interleaved rope
    /// layout (their Q/K weights were permuted for it by the converter).
    pub fn from_gguf(g: &GgufFile) -> Result<LlamaConfig> {
        let arch_name = g.architecture().ok_or_else(|| Error::Config("no general.architecture".into()))?.to_string();
        let arch = Arch::parse(&arch_name)?;
        let key = |k: &str| format!("{arch_name}.{k}");
        let uint = |k: &str| -> Result<usize> {
            g.get(&key(k))
                .and_then(|v| v.as_u64())
                .map(|v| v as usize)
                .ok_or_else(|| Error::Config(format!("missing {}", key(k))))
        };
        let opt_uint = |k: &str| g.get(&key(k)).and_then(|v| v.as_u64()).map(|v| v as usize);
        let float = |k: &str| g.get(&key(k)).and_then(|v| v.as_f32());
        let hidden = uint("embedding_length")?;
        let n_head = uint("attention.head_count")?;
        let head_dim = opt_uint("attention.key_length").unwrap_or(hidden.checked_div(n_head).unwrap_or(0));
        let vocab = match opt_uint("vocab_size") {
            Some(v) => v,
            None => g.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()).map(|a| a.len()).unwrap_or(0),
        };
        let theta = float("rope.freq_base").unwrap_or(10000.0);
        let freq_scale = float("rope.scaling.factor").filter(|f| *f > 0.0).map(|f| 1.0 / f).unwrap_or(1.0);
        let layout = if arch == Arch::Llama { RopeLayout::Interleaved } else { RopeLayout::NeoX };
        let rope = RopeConfig { theta, dim: opt_uint("rope.dimension_count").unwrap_or(head_dim), layout, freq_scale };
        let gemma = arch == Arch::Gemma3;
        let eos_ids =
            g.get("tokenizer.ggml.eos_token_id").and_then(|v| v.as_u64()).map(|v| vec![v as u32]).unwrap_or_default();
        let (embed_scale, activation, qk_norm, post_norms) = family_traits(arch, hidden);
        LlamaConfig {
            arch,
            n_layer: uint("block_count")?,
            hidden,
            ffn: uint("feed_forward_length")?,
            n_head,
            n_kv_head: opt_uint("attention.head_count_kv").unwrap_or(n_head),
            head_dim,
            vocab,
            context_length: opt_uint("context_length").unwrap_or(2048),
            rms_eps: float("attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
            rope,
            rope_local: RopeConfig { theta: if gemma { 10000.0 } else { theta }, freq_scale: 1.0, ..rope },
            attn_scale: 1.0 / (head_dim as f32).sqrt(),
            sliding_window: if gemma { opt_uint("attention.sliding_window") } else { None },
            sliding_window_pattern: if gemma { 6 } else { 1 },
            embed_scale,
            activation,
            qk_norm,
            post_norms,
            eos_ids,
        }
        .finish()
    }

    /// Reads a Hugging Face `config.json`. Hugging Face checkpoints use the NeoX rope layout.
    pub fn from_hf_json(v: &Value) -> Result<LlamaConfig> {
        let arch = Arch::parse(v["model_type"].as_str().unwrap_or(""))?;
        let uint = |k: &str| {
            v[k].as_u64().map(|x| x as usize).ok_or_else(|| Error::Config(format!("config.json: missing {k}")))
        };
        let hidden = uint("hidden_size")?;
        let n_head = uint("num_attention_heads")?;
        let head_dim = v["head_dim"].as_u64().map(|x| x as usize).unwrap_or(hidden.checked_div(n_head).unwrap_or(0));
        let theta = v["rope_theta"].as_f64().unwrap_or(10000.0) as f32;
        let freq_scale =
            match v["rope_scaling"].get("rope_type").or(v["rope_scaling"].get("type")).and_then(|t| t.as_str()) {
                Some("linear") => 1.0 / v["rope_scaling"]["factor"].as_f64().unwrap_or(1.0) as f32,
                _ => 1.0,
            };
        let rope = RopeConfig { theta, dim: head_dim, layout: RopeLayout::NeoX, freq_scale };
        let gemma = arch == Arch::Gemma3;
        let eos_ids = match &v["eos_token_id"] {
            Value::Number(n) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
            Value::Array(a) => a.iter().filter_map(|x| x.as_u64()).map(|x| x as u32).collect(),
            _ => vec![],
        };
        let attn_scale = match v["query_pre_attn_scalar"].as_f64() {
            Some(s) if gemma && s > 0.0 => 1.0 / (s as f32).sqrt(),
            _ => 1.0 / (head_dim as f32).sqrt(),
        };
        let (embed_scale, activation, qk_norm, post_norms) = family_traits(arch, hidden);
        LlamaConfig {
            arch,
            n_layer: uint("num_hidden_layers")?,
            hidden,
            ffn: uint("intermediate_size")?,
            n_head,
            n_kv_head: v["num_key_value_heads"].as_u64().map(|x| x as usize).unwrap_or(n_head),
            head_dim,
            vocab: uint("vocab_size")?,
            context_length: v["max_position_embeddings"].as_u64().unwrap_or(2048) as usize,
            rms_eps: v["rms_norm_eps"].as_f64().unwrap_or(1e-6) as f32,
            rope,
            rope_local: RopeConfig {
                theta: if gemma { v["rope_local_base_freq"].as_f64().unwrap_or(10000.0) as f32 } else { theta },
                freq_scale: 1.0,
                ..rope
            },
            attn_scale,
            sliding_window: if gemma { v["sliding_window"].as_u64().map(|x| x as usize) } else { None },
            sliding_window_pattern: if gemma { v["sliding_window_pattern"].as_u64().unwrap_or(6) as usize } else { 1 },
            embed_scale,
            activation,
            qk_norm,
            post_norms,
            eos_ids,
        }
        .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn llama_json() -> Value {
        json!({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
               "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100, "rope_theta": 10000.0})
    }

    #[test]
    fn hf_config_reads_and_defaults() {
        let c = LlamaConfig::from_hf_json(&llama_json()).unwrap();
        assert_eq!((c.head_dim, c.n_kv_head, c.rope.layout), (16, 2, RopeLayout::NeoX));
        assert!(!c.is_sliding(0));
    }

    #[test]
    fn bad_configs_are_errors() {
        let mut v = llama_json();
        v["model_type"] = json!("gpt_neox");
        assert!(matches!(LlamaConfig::from_hf_json(&v), Err(Error::UnsupportedArch(_))));
        let mut v = llama_json();
        v["num_key_value_heads"] = json!(3);
        assert!(matches!(LlamaConfig::from_hf_json(&v), Err(Error::Config(_))));
        let mut v = llama_json();
        v["num_attention_heads"] = json!(0);
        assert!(matches!(LlamaConfig::from_hf_json(&v), Err(Error::Config(_))));
        let mut v = llama_json();
        v.as_object_mut().unwrap().remove("hidden_size");
        assert!(matches!(LlamaConfig::from_hf_json(&v), Err(Error::Config(_))));
    }

    #[test]
    fn gemma3_uses_sliding_layers_in_sixes() {
        let mut v = llama_json();
        v["model_type"] = json!("gemma3_text");
        v["sliding_window"] = json!(512);
        let c = LlamaConfig::from_hf_json(&v).unwrap();
        assert_eq!((0..12).filter(|&i| !c.is_sliding(i)).collect::<Vec<_>>(), vec![5, 11]);
        assert_eq!(c.rope_local.theta, 10000.0);
    }
}
