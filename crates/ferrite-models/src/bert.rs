//! BERT-style encoders for sentence embeddings, one definition for the family: BERT itself
//! (all-MiniLM, bge, gte, e5 v2), RoBERTa and XLM-RoBERTa (multilingual e5), which differ only in
//! config values ([`EncoderConfig`]: position offset, activation, sizes) and pooling
//! ([`Pooling`], from the sentence-transformers folder).
//!
//! Sequences run packed, without padding: the tokens of a batch are concatenated and
//! [`Tensor::attention_full`] keeps each sequence's attention within itself, so no mask exists
//! and no compute is spent on padding. Post-layer-norm blocks: `x = LN(x + attn(x))`,
//! `x = LN(x + down(act(up(x))))`.

use std::path::Path;

use ferrite_tensor::{Activation, Device, Tensor};
use serde_json::Value;

use crate::weights::{f32_vector, HfWeights};
use crate::{Error, Pooling, Result, WeightSource};

/// Sizes and variant switches of an encoder, from a Hugging Face `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderConfig {
    /// `model_type` as written (`bert`, `roberta`, `xlm-roberta`).
    pub model_type: String,
    pub n_layer: usize,
    pub hidden: usize,
    pub n_head: usize,
    pub intermediate: usize,
    pub vocab: usize,
    /// Rows of the position table.
    pub max_positions: usize,
    pub type_vocab: usize,
    pub layer_norm_eps: f32,
    pub activation: Activation,
    /// The position of a sequence's first token: 0 for BERT; RoBERTa counts from
    /// `pad_token_id + 1`, so its table holds `max_positions - offset` usable positions.
    pub position_offset: usize,
}

impl EncoderConfig {
    /// Reads a Hugging Face `config.json` of a supported encoder.
    pub fn from_hf_json(v: &Value) -> Result<EncoderConfig> {
        let model_type = v["model_type"].as_str().unwrap_or("").to_string();
        let roberta = match model_type.as_str() {
            "bert" => false,
            "roberta" | "xlm-roberta" | "camembert" => true,
            other => return Err(Error::UnsupportedArch(format!("{other} (encoders: bert, roberta, xlm-roberta)"))),
        };
        let uint = |k: &str| {
            v[k].as_u64().map(|x| x as usize).ok_or_else(|| Error::Config(format!("config.json: missing {k}")))
        };
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
        let cfg = EncoderConfig {
            n_layer: uint("num_hidden_layers")?,
            hidden: uint("hidden_size")?,
            n_head: uint("num_attention_heads")?,
            intermediate: uint("intermediate_size")?,
            vocab: uint("vocab_size")?,
            max_positions: uint("max_position_embeddings")?,
            type_vocab: v["type_vocab_size"].as_u64().unwrap_or(0) as usize,
            layer_norm_eps: v["layer_norm_eps"].as_f64().unwrap_or(1e-12) as f32,
            activation,
            position_offset: if roberta { v["pad_token_id"].as_u64().unwrap_or(1) as usize + 1 } else { 0 },
            model_type,
        };
        if cfg.n_head == 0 || cfg.hidden == 0 || !cfg.hidden.is_multiple_of(cfg.n_head) {
            return Err(Error::Config(format!("hidden {} is not a multiple of {} heads", cfg.hidden, cfg.n_head)));
        }
        if cfg.max_positions <= cfg.position_offset {
            return Err(Error::Config(format!("{} positions, offset {}", cfg.max_positions, cfg.position_offset)));
        }
        Ok(cfg)
    }

    /// The longest sequence the position table allows, special tokens included.
    pub fn max_tokens(&self) -> usize {
        self.max_positions - self.position_offset
    }
}

/// Weight and bias of one linear layer or norm.
struct Affine {
    w: Tensor,
    b: Tensor,
}

struct Layer {
    qkv: [Affine; 3],
    out: Affine,
    attn_norm: Affine,
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
    position: Tensor,
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

    /// Builds the encoder from `src` (GGUF tensor names) on `device`.
    pub fn load(src: &dyn WeightSource, cfg: EncoderConfig, pooling: Pooling, device: &Device) -> Result<Encoder> {
        let w = |name: &str| -> Result<Tensor> { Ok(src.tensor(name)?.to_device(device)?) };
        let v = |name: &str| -> Result<Tensor> { Ok(f32_vector(src, name)?.to_device(device)?) };
        let lin = |name: &str| -> Result<Affine> {
            Ok(Affine { w: w(&format!("{name}.weight"))?, b: v(&format!("{name}.bias"))? })
        };
        let norm = |name: &str| -> Result<Affine> {
            Ok(Affine { w: v(&format!("{name}.weight"))?, b: v(&format!("{name}.bias"))? })
        };
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for il in 0..cfg.n_layer {
            let p = |n: &str| format!("blk.{il}.{n}");
            layers.push(Layer {
                qkv: [lin(&p("attn_q"))?, lin(&p("attn_k"))?, lin(&p("attn_v"))?],
                out: lin(&p("attn_output"))?,
                attn_norm: norm(&p("attn_output_norm"))?,
                up: lin(&p("ffn_up"))?,
                down: lin(&p("ffn_down"))?,
                out_norm: norm(&p("layer_output_norm"))?,
            });
        }
        let word = w("token_embd.weight")?;
        let position = w("position_embd.weight")?;
        if word.dims() != [cfg.vocab, cfg.hidden] || position.dims() != [cfg.max_positions, cfg.hidden] {
            return Err(Error::Config(format!(
                "embeddings {:?} / positions {:?} do not match vocab {}, {} positions, hidden {}",
                word.dims(),
                position.dims(),
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
        let mut x = self.word.embedding(&ids)?.add(&self.position.embedding(&positions)?)?;
        if let Some(tt) = &self.token_type {
            // One segment: every token has type 0, so its row is a bias.
            x = x.add(&tt.embedding(&[0])?)?;
        }
        let eps = c.layer_norm_eps;
        x = x.layer_norm(&self.embed_norm.w, &self.embed_norm.b, eps)?;
        let hd = c.hidden / c.n_head;
        let scale = 1.0 / (hd as f32).sqrt();
        for l in &self.layers {
            let ws = [&l.qkv[0].w, &l.qkv[1].w, &l.qkv[2].w];
            let [q, k, v]: [Tensor; 3] = x
                .matmul_many(&ws)?
                .try_into()
                .map_err(|_| Error::Batch("matmul_many returned the wrong count".into()))?;
            let [q, k, v] = [(q, &l.qkv[0]), (k, &l.qkv[1]), (v, &l.qkv[2])]
                .map(|(t, a)| t.add(&a.b).and_then(|t| t.reshape([n, c.n_head, hd])));
            let a = q?.attention_full(&k?, &v?, &lens, scale)?.reshape([n, c.hidden])?;
            let a = a.matmul(&l.out.w)?.add(&l.out.b)?;
            x = x.add(&a)?.layer_norm(&l.attn_norm.w, &l.attn_norm.b, eps)?;
            let h = x.matmul(&l.up.w)?.add(&l.up.b)?.activation(c.activation)?;
            let f = h.matmul(&l.down.w)?.add(&l.down.b)?;
            x = x.add(&f)?.layer_norm(&l.out_norm.w, &l.out_norm.b, eps)?;
        }
        Ok(x)
    }
}
