//! Loading from a Hugging Face folder (config.json + safetensors): the test converts a GGUF
//! model into the Hugging Face layout (f16 matrices, f32 norms; llama Q/K rows un-permuted to
//! the NeoX rope order, gemma norms stored as `w` rather than GGUF's `1 + w`), loads it through
//! the Hugging Face path and requires the same reference logits as the GGUF path.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::Path;

use ferrite_models::weights::gguf_to_hf;
use ferrite_models::{load_weights, Arch, Batch, KvCache, Llama, LlamaConfig};
use ferrite_tensor::gguf::GgufFile;
use ferrite_tensor::model_files::{test_model, GEMMA3, SMOLLM2};
use ferrite_tensor::{DType, Device};
use half::f16;
use safetensors::tensor::{Dtype, TensorView};
use serde_json::{json, Value};

/// Hugging Face row order of a GGUF llama Q/K matrix (undo the converter's rope permutation).
fn unpermute(rows: &[f32], n_rows: usize, n_cols: usize, heads: usize) -> Vec<f32> {
    let hd = n_rows / heads;
    let mut out = vec![0f32; rows.len()];
    for h in 0..heads {
        for i in 0..hd / 2 {
            for j in 0..2 {
                let src = h * hd + 2 * i + j;
                let dst = h * hd + j * hd / 2 + i;
                out[dst * n_cols..(dst + 1) * n_cols].copy_from_slice(&rows[src * n_cols..(src + 1) * n_cols]);
            }
        }
    }
    out
}

fn write_hf_folder(gguf: &Path, dir: &Path) -> LlamaConfig {
    let g = GgufFile::open(gguf).unwrap();
    let cfg = LlamaConfig::from_gguf(&g).unwrap();
    let mut blobs: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for info in g.tensor_infos() {
        let hf = gguf_to_hf(&info.name, cfg.arch).unwrap_or_else(|| panic!("no HF name for {}", info.name));
        let mut v = g.tensor(&info.name).unwrap().to_vec_f32().unwrap();
        let dims = info.shape.dims().to_vec();
        if cfg.arch == Arch::Llama && (info.name.ends_with("attn_q.weight") || info.name.ends_with("attn_k.weight")) {
            let heads = if info.name.ends_with("attn_q.weight") { cfg.n_head } else { cfg.n_kv_head };
            v = unpermute(&v, dims[0], dims[1], heads);
        }
        if dims.len() == 1 {
            if cfg.arch == Arch::Gemma3 && info.name.ends_with("norm.weight") {
                v.iter_mut().for_each(|w| *w -= 1.0);
            }
            blobs.push((hf, Dtype::F32, dims, v.iter().flat_map(|x| x.to_le_bytes()).collect()));
        } else {
            blobs.push((hf, Dtype::F16, dims, v.iter().flat_map(|&x| f16::from_f32(x).to_le_bytes()).collect()));
        }
    }
    let views: HashMap<String, TensorView> =
        blobs.iter().map(|(n, dt, d, b)| (n.clone(), TensorView::new(*dt, d.clone(), b).unwrap())).collect();
    safetensors::serialize_to_file(&views, &None, &dir.join("model.safetensors")).unwrap();
    let config: Value = match cfg.arch {
        Arch::Llama => json!({
            "model_type": "llama", "hidden_size": cfg.hidden, "intermediate_size": cfg.ffn,
            "num_hidden_layers": cfg.n_layer, "num_attention_heads": cfg.n_head,
            "num_key_value_heads": cfg.n_kv_head, "rms_norm_eps": cfg.rms_eps, "rope_theta": cfg.rope.theta,
            "vocab_size": cfg.vocab, "max_position_embeddings": cfg.context_length, "tie_word_embeddings": true
        }),
        Arch::Gemma3 => json!({
            "model_type": "gemma3_text", "hidden_size": cfg.hidden, "intermediate_size": cfg.ffn,
            "num_hidden_layers": cfg.n_layer, "num_attention_heads": cfg.n_head,
            "num_key_value_heads": cfg.n_kv_head, "head_dim": cfg.head_dim, "rms_norm_eps": cfg.rms_eps,
            "rope_theta": cfg.rope.theta, "rope_local_base_freq": 10000.0, "sliding_window": cfg.sliding_window,
            "query_pre_attn_scalar": cfg.head_dim, "vocab_size": cfg.vocab,
            "max_position_embeddings": cfg.context_length
        }),
        Arch::Qwen2 => unreachable!("not converted in this test"),
    };
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    cfg
}

fn check(model_file: &str, golden: &str) {
    let Some(path) = test_model(model_file) else { return };
    let dir = std::env::temp_dir().join(format!("ferrite-hf-{}-{model_file}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let gguf_cfg = write_hf_folder(&path, &dir);
    let (w, cfg) = load_weights(&dir).unwrap();
    assert_eq!(cfg.rope.layout, ferrite_tensor::RopeLayout::NeoX);
    assert_eq!(
        (cfg.n_layer, cfg.vocab, cfg.head_dim, cfg.sliding_window),
        (gguf_cfg.n_layer, gguf_cfg.vocab, gguf_cfg.head_dim, gguf_cfg.sliding_window)
    );
    let model = Llama::load(w.as_ref(), cfg.clone(), &Device::cpu()).unwrap();
    let gold: Value = serde_json::from_str(golden).unwrap();
    let case = &gold["cases"][0];
    let ids: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    let blocks = ids.len().div_ceil(16);
    let cache = KvCache::new(&cfg, blocks, 16, DType::F16, &Device::cpu()).unwrap();
    let logits =
        model.forward(&Batch::single(&ids, 0, (0..blocks as u32).collect()), &cache).unwrap().to_vec_f32().unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let top: Vec<usize> = case["top_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let want: Vec<f64> = case["top_logits"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let best = (0..logits.len()).max_by(|&a, &b| logits[a].total_cmp(&logits[b])).unwrap();
    assert_eq!(best, top[0], "{model_file} via Hugging Face folder: top-1");
    let tol = 0.05 + 0.05 * case["std"].as_f64().unwrap();
    for (&i, &w) in top.iter().zip(&want) {
        assert!((logits[i] as f64 - w).abs() <= tol, "{model_file} HF logit {i}: {} vs {w}", logits[i]);
    }
}

#[test]
fn smollm2_from_hugging_face_folder() {
    check(SMOLLM2, include_str!("golden/logits_SmolLM2-135M-Instruct.Q4_1.json"));
}

#[test]
fn gemma3_from_hugging_face_folder() {
    check(GEMMA3, include_str!("golden/logits_gemma-3-270m-q4_k_m.json"));
}
