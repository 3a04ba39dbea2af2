//! One loader abstraction over GGUF files and Hugging Face safetensors folders.
//!
//! Models ask for tensors by GGUF name (`blk.3.attn_q.weight`); [`HfWeights`] maps those onto
//! Hugging Face names per architecture. Nothing is copied or dequantized at load: GGUF blocks
//! and safetensors data stay memory-mapped.

use std::path::Path;
use std::sync::Arc;

use ferrite_tensor::gguf::GgufFile;
use ferrite_tensor::safetensors::SafetensorsModel;
use ferrite_tensor::{DType, Device, Tensor};

use crate::{Arch, Error, LlamaConfig, Result};

/// Where a model's tensors come from.
pub trait WeightSource: Send + Sync {
    /// The tensor of GGUF name `name`, on the CPU (memory-mapped).
    fn tensor(&self, name: &str) -> Result<Tensor>;
    fn contains(&self, name: &str) -> bool;
    /// The GGUF file, when the weights come from one (tokenizer metadata lives there).
    fn gguf(&self) -> Option<&GgufFile> {
        None
    }
}

/// Weights of a GGUF file, by their own names.
pub struct GgufWeights(pub Arc<GgufFile>);

impl WeightSource for GgufWeights {
    fn tensor(&self, name: &str) -> Result<Tensor> {
        if self.0.tensor_info(name).is_none() {
            return Err(Error::MissingWeight(name.into()));
        }
        Ok(self.0.tensor(name)?)
    }
    fn contains(&self, name: &str) -> bool {
        self.0.tensor_info(name).is_some()
    }
    fn gguf(&self) -> Option<&GgufFile> {
        Some(&self.0)
    }
}

/// Weights of a Hugging Face folder (config.json + safetensors, single or sharded).
pub struct HfWeights {
    st: SafetensorsModel,
    naming: Naming,
}

/// How GGUF names map onto a folder's Hugging Face names.
enum Naming {
    /// The llama family ([`gguf_to_hf`]).
    Decoder(Arch),
    /// BERT-style encoders ([`encoder_gguf_to_hf`], or [`nomic_gguf_to_hf`] when `nomic` says
    /// whether its MLP is gated),
    /// under `prefix` (`""`, `"bert."`, `"roberta."`: sentence-transformers folders save the
    /// bare model, others the whole one).
    Encoder { prefix: &'static str, nomic: Option<bool> },
}

impl HfWeights {
    /// The weights of a BERT-style encoder folder; the name prefix is detected from the file.
    pub fn encoder(path: &Path) -> Result<HfWeights> {
        let st = SafetensorsModel::open(path)?;
        let prefix = ["", "bert.", "roberta.", "model."]
            .into_iter()
            .find(|p| st.tensor_info(&format!("{p}embeddings.word_embeddings.weight")).is_some())
            .ok_or_else(|| Error::MissingWeight("embeddings.word_embeddings.weight".into()))?;
        let has = |n: &str| st.tensor_info(&format!("{prefix}encoder.layers.0.{n}")).is_some();
        let nomic = has("attn.Wqkv.weight").then(|| has("mlp.fc12.weight"));
        Ok(HfWeights { st, naming: Naming::Encoder { prefix, nomic } })
    }

    fn hf_name(&self, name: &str) -> Option<String> {
        match self.naming {
            Naming::Decoder(arch) => gguf_to_hf(name, arch),
            Naming::Encoder { prefix, nomic: None } => encoder_gguf_to_hf(name).map(|n| format!("{prefix}{n}")),
            Naming::Encoder { prefix, nomic: Some(gated) } => {
                nomic_gguf_to_hf(name, gated).map(|n| format!("{prefix}{n}"))
            }
        }
    }
}

/// A GGUF encoder tensor name split as llama.cpp writes them: `STEM.KIND` (`KIND` is `weight`
/// or `bias`), where `STEM` is a top-level name (`token_embd`, ...) or `blk.N.TAIL`.
enum EncoderName<'a> {
    Top(&'a str, &'a str),
    Layer(usize, &'a str, &'a str),
}

fn split_encoder_name(name: &str) -> Option<EncoderName<'_>> {
    let (stem, kind) = name.rsplit_once('.')?;
    if kind != "weight" && kind != "bias" {
        return None;
    }
    match stem.strip_prefix("blk.") {
        Some(rest) => {
            let (layer, tail) = rest.split_once('.')?;
            Some(EncoderName::Layer(layer.parse().ok()?, tail, kind))
        }
        None => Some(EncoderName::Top(stem, kind)),
    }
}

/// The top-level embedding tensors every encoder family names alike (`token_embd_norm` is the
/// family's own).
fn encoder_embedding(stem: &str, embd_norm: &'static str) -> Option<&'static str> {
    Some(match stem {
        "token_embd" => "embeddings.word_embeddings",
        "position_embd" => "embeddings.position_embeddings",
        "token_types" => "embeddings.token_type_embeddings",
        "token_embd_norm" => embd_norm,
        _ => return None,
    })
}

/// The Hugging Face name of a GGUF tensor name of a BERT-style encoder (llama.cpp's names:
/// `token_types.weight`, `blk.N.attn_output_norm.weight`, `blk.N.layer_output_norm.bias`, ...).
pub fn encoder_gguf_to_hf(name: &str) -> Option<String> {
    match split_encoder_name(name)? {
        EncoderName::Top(stem, kind) => Some(format!("{}.{kind}", encoder_embedding(stem, "embeddings.LayerNorm")?)),
        EncoderName::Layer(layer, tail, kind) => {
            let hf = match tail {
                "attn_q" => "attention.self.query",
                "attn_k" => "attention.self.key",
                "attn_v" => "attention.self.value",
                "attn_output" => "attention.output.dense",
                "attn_output_norm" => "attention.output.LayerNorm",
                "ffn_up" => "intermediate.dense",
                "ffn_down" => "output.dense",
                "layer_output_norm" => "output.LayerNorm",
                _ => return None,
            };
            Some(format!("encoder.layer.{layer}.{hf}.{kind}"))
        }
    }
}

/// The Hugging Face name of a GGUF tensor name of a nomic-bert encoder (llama.cpp's names for
/// it: `blk.N.attn_qkv` is the fused `Wqkv`, `ffn_up` / `ffn_gate` are `fc11` / `fc12` of the
/// gated MLP, `fc1` without a gate).
pub fn nomic_gguf_to_hf(name: &str, gated: bool) -> Option<String> {
    match split_encoder_name(name)? {
        EncoderName::Top(stem, kind) => Some(format!("{}.{kind}", encoder_embedding(stem, "emb_ln")?)),
        EncoderName::Layer(layer, tail, kind) => {
            let hf = match tail {
                "attn_qkv" => "attn.Wqkv",
                "attn_output" => "attn.out_proj",
                "attn_output_norm" => "norm1",
                "ffn_up" if gated => "mlp.fc11",
                "ffn_up" => "mlp.fc1",
                "ffn_gate" => "mlp.fc12",
                "ffn_down" => "mlp.fc2",
                "layer_output_norm" => "norm2",
                _ => return None,
            };
            Some(format!("encoder.layers.{layer}.{hf}.{kind}"))
        }
    }
}

/// The Hugging Face name of a GGUF tensor name, for `arch`.
pub fn gguf_to_hf(name: &str, arch: Arch) -> Option<String> {
    match name {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, tail) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let gemma = arch == Arch::Gemma3;
    let hf = match tail {
        "attn_norm.weight" => "input_layernorm.weight",
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_q.bias" => "self_attn.q_proj.bias",
        "attn_k.bias" => "self_attn.k_proj.bias",
        "attn_v.bias" => "self_attn.v_proj.bias",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "attn_q_norm.weight" => "self_attn.q_norm.weight",
        "attn_k_norm.weight" => "self_attn.k_norm.weight",
        "post_attention_norm.weight" if gemma => "post_attention_layernorm.weight",
        "ffn_norm.weight" if gemma => "pre_feedforward_layernorm.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "post_ffw_norm.weight" if gemma => "post_feedforward_layernorm.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}"))
}

impl WeightSource for HfWeights {
    fn tensor(&self, name: &str) -> Result<Tensor> {
        let hf = self.hf_name(name).ok_or_else(|| Error::MissingWeight(name.into()))?;
        if self.st.tensor_info(&hf).is_none() {
            return Err(Error::MissingWeight(format!("{name} ({hf})")));
        }
        let t = self.st.tensor(&hf)?;
        // Gemma's Hugging Face norms compute x * (1 + w); GGUF stores 1 + w. Apply it here so
        // the model sees GGUF semantics from both sources.
        if matches!(self.naming, Naming::Decoder(Arch::Gemma3)) && name.ends_with("norm.weight") {
            let v: Vec<f32> = t.to_vec_f32()?.into_iter().map(|w| w + 1.0).collect();
            return Ok(Tensor::from_f32(&v, t.shape().clone(), &Device::cpu())?);
        }
        Ok(t)
    }
    fn contains(&self, name: &str) -> bool {
        self.hf_name(name).is_some_and(|hf| self.st.tensor_info(&hf).is_some())
    }
}

/// Opens a model: a `.gguf` file, or a Hugging Face folder with `config.json` and safetensors.
pub fn load_weights(path: &Path) -> Result<(Box<dyn WeightSource>, LlamaConfig)> {
    if path.is_dir() {
        let cfg_path = path.join("config.json");
        let text = std::fs::read_to_string(&cfg_path)
            .map_err(|source| Error::Io { path: cfg_path.display().to_string(), source })?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", cfg_path.display())))?;
        let cfg = LlamaConfig::from_hf_json(&json)?;
        let st = SafetensorsModel::open(path)?;
        Ok((Box::new(HfWeights { st, naming: Naming::Decoder(cfg.arch) }), cfg))
    } else {
        let g = GgufFile::open(path)?;
        let cfg = LlamaConfig::from_gguf(&g)?;
        Ok((Box::new(GgufWeights(Arc::new(g))), cfg))
    }
}

/// Any weight source with every tensor converted to f32 at load (a reference mode for tests and
/// numerical comparisons: the model then runs f32 weights against f32 activations, with no
/// 8-bit activation rounding; memory grows to 4 bytes per weight).
pub struct F32Weights(pub Box<dyn WeightSource>);

impl WeightSource for F32Weights {
    fn tensor(&self, name: &str) -> Result<Tensor> {
        Ok(self.0.tensor(name)?.cast(DType::F32)?)
    }
    fn contains(&self, name: &str) -> bool {
        self.0.contains(name)
    }
    fn gguf(&self) -> Option<&GgufFile> {
        self.0.gguf()
    }
}

/// A 1-D weight (norm, bias) as f32.
pub(crate) fn f32_vector(src: &dyn WeightSource, name: &str) -> Result<Tensor> {
    Ok(src.tensor(name)?.cast(DType::F32)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoder_names_map_to_each_familys_hugging_face_names() {
        let bert = |n: &str| encoder_gguf_to_hf(n);
        assert_eq!(bert("token_embd.weight").as_deref(), Some("embeddings.word_embeddings.weight"));
        assert_eq!(bert("token_embd_norm.bias").as_deref(), Some("embeddings.LayerNorm.bias"));
        assert_eq!(bert("blk.3.attn_q.weight").as_deref(), Some("encoder.layer.3.attention.self.query.weight"));
        assert_eq!(bert("blk.0.layer_output_norm.bias").as_deref(), Some("encoder.layer.0.output.LayerNorm.bias"));
        assert_eq!(bert("blk.0.attn_qkv.weight"), None);
        assert_eq!(nomic_gguf_to_hf("token_embd_norm.weight", true).as_deref(), Some("emb_ln.weight"));
        assert_eq!(
            nomic_gguf_to_hf("token_types.weight", true).as_deref(),
            Some("embeddings.token_type_embeddings.weight")
        );
        assert_eq!(
            nomic_gguf_to_hf("blk.11.attn_qkv.weight", true).as_deref(),
            Some("encoder.layers.11.attn.Wqkv.weight")
        );
        assert_eq!(nomic_gguf_to_hf("blk.1.ffn_up.weight", true).as_deref(), Some("encoder.layers.1.mlp.fc11.weight"));
        assert_eq!(nomic_gguf_to_hf("blk.1.ffn_up.weight", false).as_deref(), Some("encoder.layers.1.mlp.fc1.weight"));
        assert_eq!(
            nomic_gguf_to_hf("blk.1.ffn_gate.weight", true).as_deref(),
            Some("encoder.layers.1.mlp.fc12.weight")
        );
        for bad in ["blk.x.attn_q.weight", "blk.1.attn_q.scale", "output.weight", "blk.2"] {
            assert_eq!(encoder_gguf_to_hf(bad), None, "{bad}");
            assert_eq!(nomic_gguf_to_hf(bad, true), None, "{bad}");
        }
    }
}
