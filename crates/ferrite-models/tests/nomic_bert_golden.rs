//! A tiny random nomic-bert encoder (rotary positions on half of each head, SwiGLU MLP, fused
//! `Wqkv`, no biases; committed in tests/golden/nomic_tiny) against an independent numpy
//! forward pass (scripts/golden_nomic_bert.py, output in tests/golden/embeddings_nomic_tiny.json):
//! every sequence alone and all packed in one batch.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use ferrite_models::{Encoder, PoolingMode};
use ferrite_tensor::{Device, RopeLayout};
use serde_json::Value;

mod common;

use common::{cosine, max_abs_diff};

#[test]
fn nomic_bert_matches_numpy_reference() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/nomic_tiny");
    let enc = Encoder::load_folder(&dir, &Device::cpu_with_threads(2).unwrap()).unwrap();
    let cfg = enc.config();
    assert_eq!((cfg.model_type.as_str(), cfg.hidden, cfg.n_head, cfg.n_layer), ("nomic_bert", 32, 4, 2));
    let rope = cfg.rotary.unwrap();
    assert_eq!((rope.dim, rope.layout, rope.theta), (4, RopeLayout::NeoX, 1000.0));
    assert!(cfg.gated_mlp && !cfg.attn_bias && !cfg.mlp_up_bias && !cfg.mlp_down_bias);
    assert_eq!(enc.pooling().mode, PoolingMode::Mean);
    assert!(enc.pooling().normalize);

    let golden: Value = serde_json::from_str(include_str!("golden/embeddings_nomic_tiny.json")).unwrap();
    let cases: Vec<(Vec<u32>, Vec<f32>)> = golden["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let ids = c["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
            let want = c["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
            (ids, want)
        })
        .collect();
    assert!(cases.len() >= 8 && cases.iter().any(|c| c.0.len() > 16));

    let (mut worst_cos, mut worst_diff) = (1f64, 0f32);
    let mut single = Vec::new();
    for (ids, want) in &cases {
        let got = enc.embed(&[ids]).unwrap().remove(0);
        let (cos, diff) = (cosine(&got, want), max_abs_diff(&got, want));
        assert!(cos >= 0.99999 && diff <= 1e-4, "{} tokens: cosine {cos}, max abs diff {diff}", ids.len());
        (worst_cos, worst_diff) = (worst_cos.min(cos), worst_diff.max(diff));
        single.push(got);
    }
    eprintln!("{} sequences: lowest cosine {worst_cos:.9}, largest abs diff {worst_diff:.2e}", cases.len());

    // Packed together, each sequence keeps its own positions and attention.
    let seqs: Vec<&[u32]> = cases.iter().map(|c| c.0.as_slice()).collect();
    for ((b, s), (ids, _)) in enc.embed(&seqs).unwrap().iter().zip(&single).zip(&cases) {
        let diff = max_abs_diff(b, s);
        assert!(diff <= 1e-5, "{} tokens: batched differs by {diff}", ids.len());
    }
}
