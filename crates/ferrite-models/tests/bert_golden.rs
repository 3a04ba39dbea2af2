//! all-MiniLM-L6-v2 sentence embeddings against an independent numpy forward pass
//! (scripts/golden_embeddings.py, output in tests/golden/embeddings_minilm.json): 22 sentences in
//! several languages, near-empty and a 314-token one; one at a time and all packed together.

#![allow(clippy::unwrap_used)]

use ferrite_models::{Encoder, PoolingMode};
use ferrite_tensor::model_files::{test_model, MINILM};
use ferrite_tensor::Device;
use serde_json::Value;

mod common;

use common::{cosine, max_abs_diff};

struct Case {
    text: String,
    ids: Vec<u32>,
    want: Vec<f32>,
}

fn cases() -> Vec<Case> {
    let text = include_str!("golden/embeddings_minilm.json");
    let v: Value = serde_json::from_str(text).unwrap();
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            text: c["text"].as_str().unwrap().to_string(),
            ids: c["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect(),
            want: c["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect(),
        })
        .collect()
}

#[test]
fn minilm_matches_numpy_reference() {
    let Some(dir) = test_model(MINILM) else { return };
    let enc = Encoder::load_folder(&dir, &Device::cpu_with_threads(2).unwrap()).unwrap();
    assert_eq!(enc.pooling().mode, PoolingMode::Mean);
    assert!(enc.pooling().normalize);
    assert_eq!(enc.dim(), 384);
    assert_eq!(enc.config().max_tokens(), 512);
    let cases = cases();
    assert!(cases.len() >= 20);

    // The known vector of "A man is eating food.".
    assert_eq!(cases[0].ids, [101, 1037, 2158, 2003, 5983, 2833, 1012, 102]);
    let one = enc.embed(&[&cases[0].ids]).unwrap().remove(0);
    for (got, want) in one.iter().zip([0.03324, 0.00441, -0.00628, 0.04838, -0.1387]) {
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");
    }

    let mut single = Vec::new();
    let (mut worst_cos, mut worst_diff) = (1f64, 0f32);
    for c in &cases {
        let got = enc.embed(&[&c.ids]).unwrap().remove(0);
        let (cos, diff) = (cosine(&got, &c.want), max_abs_diff(&got, &c.want));
        assert!(cos >= 0.99999 && diff <= 1e-4, "{:?}: cosine {cos}, max abs diff {diff}", c.text);
        (worst_cos, worst_diff) = (worst_cos.min(cos), worst_diff.max(diff));
        single.push(got);
    }
    eprintln!("{} sentences: lowest cosine {worst_cos:.9}, largest abs diff {worst_diff:.2e}", cases.len());

    // All sentences packed in one batch give the same vectors.
    let seqs: Vec<&[u32]> = cases.iter().map(|c| c.ids.as_slice()).collect();
    let batched = enc.embed(&seqs).unwrap();
    for ((b, s), c) in batched.iter().zip(&single).zip(&cases) {
        let diff = max_abs_diff(b, s);
        assert!(diff <= 1e-5, "{:?}: batched differs by {diff}", c.text);
    }
}

#[test]
fn minilm_refuses_bad_input() {
    let Some(dir) = test_model(MINILM) else { return };
    let enc = Encoder::load_folder(&dir, &Device::cpu()).unwrap();
    assert!(enc.embed(&[&[]]).is_err());
    assert!(enc.embed(&[&[101, 40_000, 102]]).is_err());
    assert!(enc.embed(&[&vec![1000; 513]]).is_err());
    assert!(enc.embed(&[&vec![1000; 512]]).is_ok());
}
