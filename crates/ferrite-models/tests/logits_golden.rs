//! Last-position logits of the real models against an independent numpy forward pass over
//! `gguf`-dequantized weights (scripts/reference_logits.py, outputs in tests/golden/).
//!
//! Tolerance: ferrite quantizes activations to 8-bit blocks for the integer dot products (as
//! llama.cpp does) and keeps the KV cache in f16, while the reference is f32/f64 throughout.
//! With f32 activations (an earlier, slower matmul) the error was at most 0.056; with 8-bit
//! activations it grows to about 0.3 logits (2% of the top logit) after 30 layers, and to
//! 0.66-0.81 on the 602-token gemma3 prompt (logit std 4.7; 0.66 with the row-wise attention,
//! 0.81 with the tiled one, although the two attention kernels agree to 2e-5 on their own:
//! gemma's large activations amplify 8-bit rounding flips). That is the same kind of drift
//! llama.cpp has. We require the same top-1 token, every checked logit within
//! `ATOL + RTOL * logit_std` of the reference, and the reference top-5 inside our top-10.
//! Token-exact agreement with llama.cpp itself is tested by ferrite-server's greedy goldens.

use ferrite_models::{load_weights, Batch, KvCache, Llama};
use ferrite_tensor::model_files::{test_model, GEMMA3, QWEN25, SMOLLM2};
use ferrite_tensor::{DType, Device};
use serde_json::Value;

const ATOL: f64 = 0.05;
const RTOL: f64 = 0.2;

fn check(model_file: &str, golden: &str) {
    let Some(path) = test_model(model_file) else { return };
    let gold: Value = serde_json::from_str(golden).expect("golden json");
    let (w, cfg) = load_weights(&path).expect("load");
    let model = Llama::load(w.as_ref(), cfg.clone(), &Device::cpu()).expect("model");
    for case in gold["cases"].as_array().expect("cases") {
        let ids: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let blocks = ids.len().div_ceil(16);
        let cache = KvCache::new(&cfg, blocks, 16, DType::F16, &Device::cpu()).unwrap();
        let logits = model
            .forward(&Batch::single(&ids, 0, (0..blocks as u32).collect()), &cache)
            .unwrap()
            .to_vec_f32()
            .unwrap();
        assert_eq!(logits.len(), cfg.vocab);
        let std = case["std"].as_f64().unwrap();
        let tol = ATOL + RTOL * std;
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        let want_top: Vec<usize> = case["top_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        assert_eq!(order[0], want_top[0], "{model_file} {} tokens: top-1", ids.len());
        for t in &want_top[..5] {
            assert!(order[..10].contains(t), "{model_file}: reference top-5 token {t} not in our top-10 {:?}", &order[..10]);
        }
        let mut max_err = 0f64;
        let pairs = want_top.iter().zip(case["top_logits"].as_array().unwrap()).map(|(&i, v)| (i, v.as_f64().unwrap()));
        let firsts = case["first_logits"].as_array().unwrap().iter().enumerate().map(|(i, v)| (i, v.as_f64().unwrap()));
        for (i, want) in pairs.chain(firsts) {
            let err = (logits[i] as f64 - want).abs();
            max_err = max_err.max(err);
            assert!(err <= tol, "{model_file} {} tokens: logit {i}: got {}, want {want} (tol {tol})", ids.len(), logits[i]);
        }
        eprintln!("{model_file}: {} tokens, max |logit error| {max_err:.4} (tolerance {tol:.4})", ids.len());
    }
}

#[test]
fn smollm2_logits_match_reference() {
    check(SMOLLM2, include_str!("golden/logits_SmolLM2-135M-Instruct.Q4_1.json"));
}

#[test]
fn qwen25_logits_match_reference() {
    check(QWEN25, include_str!("golden/logits_qwen2.5-coder-0.5b-instruct-q4_k_m.json"));
}

#[test]
fn gemma3_logits_match_reference() {
    check(GEMMA3, include_str!("golden/logits_gemma-3-270m-q4_k_m.json"));
}
