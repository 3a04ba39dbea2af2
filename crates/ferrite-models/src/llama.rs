//! The llama-family decoder, one definition for llama, qwen2 and gemma3 on every backend.

use ferrite_tensor::{AttentionParams, Device, Tensor};

use crate::weights::f32_vector;
use crate::{Arch, Batch, Error, KvCache, LlamaConfig, Result, WeightSource};

struct Layer {
    attn_norm: Tensor,
    wq: Tensor,
    wk: Tensor,
    wv: Tensor,
    /// Q/K/V biases (qwen2).
    bias: Option<[Tensor; 3]>,
    /// Per-head q/k RMS norms (gemma3).
    qk_norm: Option<[Tensor; 2]>,
    wo: Tensor,
    post_attn_norm: Option<Tensor>,
    ffn_norm: Tensor,
    gate: Tensor,
    up: Tensor,
    down: Tensor,
    post_ffn_norm: Option<Tensor>,
}

/// A loaded llama-family model.
pub struct Llama {
    cfg: LlamaConfig,
    device: Device,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Tensor,
}

impl Llama {
    /// Builds the model from `src` on `device` (weights are moved there; on the CPU they stay
    /// memory-mapped and quantized).
    pub fn load(src: &dyn WeightSource, cfg: LlamaConfig, device: &Device) -> Result<Llama> {
        let dev = |t: Tensor| -> Result<Tensor> { Ok(t.to_device(device)?) };
        let w = |name: &str| -> Result<Tensor> { dev(src.tensor(name)?) };
        let v = |name: &str| -> Result<Tensor> { dev(f32_vector(src, name)?) };
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for il in 0..cfg.n_layer {
            let p = |n: &str| format!("blk.{il}.{n}");
            let bias = if src.contains(&p("attn_q.bias")) {
                Some([v(&p("attn_q.bias"))?, v(&p("attn_k.bias"))?, v(&p("attn_v.bias"))?])
            } else {
                None
            };
            let qk_norm =
                if cfg.qk_norm { Some([v(&p("attn_q_norm.weight"))?, v(&p("attn_k_norm.weight"))?]) } else { None };
            let post = |n: &str| -> Result<Option<Tensor>> {
                if cfg.post_norms {
                    v(&p(n)).map(Some)
                } else {
                    Ok(None)
                }
            };
            layers.push(Layer {
                attn_norm: v(&p("attn_norm.weight"))?,
                wq: w(&p("attn_q.weight"))?,
                wk: w(&p("attn_k.weight"))?,
                wv: w(&p("attn_v.weight"))?,
                bias,
                qk_norm,
                wo: w(&p("attn_output.weight"))?,
                post_attn_norm: post("post_attention_norm.weight")?,
                ffn_norm: v(&p("ffn_norm.weight"))?,
                gate: w(&p("ffn_gate.weight"))?,
                up: w(&p("ffn_up.weight"))?,
                down: w(&p("ffn_down.weight"))?,
                post_ffn_norm: post("post_ffw_norm.weight")?,
            });
        }
        let embed = w("token_embd.weight")?;
        let lm_head = if src.contains("output.weight") { w("output.weight")? } else { embed.clone() };
        if embed.dims() != [cfg.vocab, cfg.hidden] || lm_head.dims() != [cfg.vocab, cfg.hidden] {
            return Err(Error::Config(format!(
                "embeddings {:?} / output {:?} do not match vocab {} x hidden {}",
                embed.dims(),
                lm_head.dims(),
                cfg.vocab,
                cfg.hidden
            )));
        }
        Ok(Llama { norm: v("output_norm.weight")?, embed, lm_head, layers, cfg, device: device.clone() })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Runs one step: writes the batch's keys/values into `cache` and returns the logits
    /// `[batch.logits_rows.len(), vocab]` (f32, on the model's device).
    pub fn forward(&self, batch: &Batch, cache: &KvCache) -> Result<Tensor> {
        self.device.run(|| self.forward_inner(batch, cache))
    }

    fn forward_inner(&self, batch: &Batch, cache: &KvCache) -> Result<Tensor> {
        let c = &self.cfg;
        let n = batch.tokens.len();
        if n == 0 {
            return Err(Error::Batch("empty batch".into()));
        }
        if cache.k.len() != c.n_layer {
            return Err(Error::Batch(format!("cache has {} layers, model {}", cache.k.len(), c.n_layer)));
        }
        if let Some(&bad) = batch.tokens.iter().find(|&&t| t as usize >= c.vocab) {
            return Err(Error::Batch(format!("token id {bad} outside the vocabulary of {}", c.vocab)));
        }
        let (positions, slots, seqs) = batch.layout(cache.block_size, cache.num_blocks)?;
        let mut x = self.embed.embedding(&batch.tokens)?;
        if let Some(s) = c.embed_scale {
            x = x.scale(s)?;
        }
        for (il, l) in self.layers.iter().enumerate() {
            let sliding = c.is_sliding(il);
            let h = x.rms_norm(&l.attn_norm, c.rms_eps)?;
            let [mut q, mut k, mut v]: [Tensor; 3] = h
                .matmul_many(&[&l.wq, &l.wk, &l.wv])?
                .try_into()
                .map_err(|_| Error::Batch("matmul_many returned the wrong count".into()))?;
            if let Some([bq, bk, bv]) = &l.bias {
                (q, k, v) = (q.add(bq)?, k.add(bk)?, v.add(bv)?);
            }
            q = q.reshape([n, c.n_head, c.head_dim])?;
            k = k.reshape([n, c.n_kv_head, c.head_dim])?;
            v = v.reshape([n, c.n_kv_head, c.head_dim])?;
            if let Some([qn, kn]) = &l.qk_norm {
                q = q.rms_norm(qn, c.rms_eps)?;
                k = k.rms_norm(kn, c.rms_eps)?;
            }
            let rope = if sliding { &c.rope_local } else { &c.rope };
            q = q.rope(&positions, rope)?;
            k = k.rope(&positions, rope)?;
            cache.k[il].write_kv(&k, &slots)?;
            cache.v[il].write_kv(&v, &slots)?;
            // llama.cpp's gemma3 graph multiplies Q by the attention scale before attention
            // (`ggml_scale`, then kq_scale 1); the others scale q·k inside it. Same maths, but
            // the f16 rounding of Q in the attention sees different values.
            let mut scale = c.attn_scale;
            if c.arch == Arch::Gemma3 {
                q = q.scale(c.attn_scale)?;
                scale = 1.0;
            }
            let params = AttentionParams {
                scale,
                block_size: cache.block_size,
                sliding_window: if sliding { c.sliding_window } else { None },
                softcap: None,
            };
            let a = q.attention(&cache.k[il], &cache.v[il], &seqs, &params)?;
            let mut a = a.reshape([n, c.n_head * c.head_dim])?.matmul(&l.wo)?;
            if let Some(pn) = &l.post_attn_norm {
                a = a.rms_norm(pn, c.rms_eps)?;
            }
            x = x.add(&a)?;
            let h = x.rms_norm(&l.ffn_norm, c.rms_eps)?;
            let [g, u]: [Tensor; 2] = h
                .matmul_many(&[&l.gate, &l.up])?
                .try_into()
                .map_err(|_| Error::Batch("matmul_many returned the wrong count".into()))?;
            let f = g.gated_activation(&u, c.activation)?;
            let mut f = f.matmul(&l.down)?;
            if let Some(pn) = &l.post_ffn_norm {
                f = f.rms_norm(pn, c.rms_eps)?;
            }
            x = x.add(&f)?;
        }
        let rows: Vec<u32> = batch.logits_rows.iter().map(|&r| r as u32).collect();
        let last = if rows.len() == n && rows.iter().enumerate().all(|(i, &r)| r as usize == i) {
            x
        } else {
            x.embedding(&rows)?
        };
        Ok(last.rms_norm(&self.norm, c.rms_eps)?.matmul(&self.lm_head)?)
    }
}
