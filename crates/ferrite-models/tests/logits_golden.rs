//! Last-position logits of the real models against an independent numpy forward pass over
//! `gguf`-dequantized weights (scripts/reference_logits.py, outputs in tests/golden/).
//!
//! Two runs per case. (1) With every weight converted to f32 at load ([`F32Weights`]), the
//! model runs f32 activations throughout, so it must match the f32/f64 reference tightly
//! (`ATOL_F32`): this checks the model math. (2) As served (quantized weights read in place,
//! 8-bit activations), with a tolerance for the activation rounding, as follows.
//!
//! Tolerance of run (2): ferrite mirrors llama.cpp's CPU rounding (8-bit activation blocks,
//! fp16 scales, f16 flash attention for short runs), which moves logits by up to 0.3 after 30
//! layers on SmolLM2 and Qwen2.5: run (2) requires the same top-1 token, the reference top-5
//! inside our top-10, and every checked logit within `ATOL + RTOL * std`.
//!
//! Known gap: on the 602-token gemma3 prompt (past its 512-token window), whose large
//! activations amplify rounding flips, single logits of run (2) move by up to 3 (llama.cpp
//! itself was about 1.9 off the reference there, per the harness used to mirror its rounding),
//! while run (1) stays within 0.066 on the same prompt. For prompts longer than 512 tokens run
//! (2) checks the top-1 token and the top-5 overlap only, and prints its largest error.
//! Token-exact agreement with llama.cpp itself is tested by ferrite-server's greedy goldens.

#![allow(clippy::unwrap_used)]

use ferrite_models::weights::F32Weights;
use ferrite_models::{load_weights, Batch, KvCache, Llama, LlamaConfig};
use ferrite_tensor::model_files::{test_model, GEMMA3, QWEN25, SMOLLM2};
use ferrite_tensor::{DType, Device};
use serde_json::Value;

/// Max |logit error| with f32 weights and activations (measured: at most 0.056 over all cases).
const ATOL_F32: f64 = 0.1;
const ATOL: f64 = 0.05;
const RTOL: f64 = 0.35;
/// Prompts longer than this get only the top-token checks in run (2) (see the known gap).
const LONG_PROMPT: usize = 512;

fn last_logits(model: &Llama, cfg: &LlamaConfig, ids: &[u32]) -> Vec<f32> {
    let blocks = ids.len().div_ceil(16);
    let cache = KvCache::new(cfg, blocks, 16, DType::F16, &Device::cpu()).unwrap();
    let logits =
        model.forward(&Batch::single(ids, 0, (0..blocks as u32).collect()), &cache).unwrap().to_vec_f32().unwrap();
    assert_eq!(logits.len(), cfg.vocab);
    logits
}

fn ids_of(case: &Value) -> Vec<u32> {
    case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect()
}

/// The reference's checked logits: its top 10 and its first 64.
fn checked(case: &Value) -> Vec<(usize, f64)> {
    let top = case["top_ids"].as_array().unwrap().iter().zip(case["top_logits"].as_array().unwrap());
    let firsts = case["first_logits"].as_array().unwrap().iter().enumerate().map(|(i, v)| (i, v.as_f64().unwrap()));
    top.map(|(i, v)| (i.as_u64().unwrap() as usize, v.as_f64().unwrap())).chain(firsts).collect()
}

fn max_error(logits: &[f32], case: &Value) -> f64 {
    checked(case).iter().map(|&(i, want)| (logits[i] as f64 - want).abs()).fold(0.0, f64::max)
}

/// f32 weights, f32 activations: the model math against the reference, tightly.
fn check_f32(model_file: &str, golden: &str) {
    let Some(path) = test_model(model_file) else { return };
    let gold: Value = serde_json::from_str(golden).expect("golden json");
    let (w, cfg) = load_weights(&path).expect("load");
    let model = Llama::load(&F32Weights(w), cfg.clone(), &Device::cpu()).expect("model");
    for case in gold["cases"].as_array().expect("cases") {
        let logits = last_logits(&model, &cfg, &ids_of(case));
        let err = max_error(&logits, case);
        eprintln!(
            "{model_file} (f32 weights): {} tokens, max |logit error| {err:.4} (tolerance {ATOL_F32})",
            ids_of(case).len()
        );
        assert!(err <= ATOL_F32, "{model_file} f32: max logit error {err}");
    }
}

fn check(model_file: &str, golden: &str) {
    let Some(path) = test_model(model_file) else { return };
    let gold: Value = serde_json::from_str(golden).expect("golden json");
    let (w, cfg) = load_weights(&path).expect("load");
    let model = Llama::load(w.as_ref(), cfg.clone(), &Device::cpu()).expect("model");
    for case in gold["cases"].as_array().expect("cases") {
        let ids = ids_of(case);
        let logits = last_logits(&model, &cfg, &ids);
        let std = case["std"].as_f64().unwrap();
        let tol = ATOL + RTOL * std;
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        let want_top: Vec<usize> =
            case["top_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        assert_eq!(order[0], want_top[0], "{model_file} {} tokens: top-1", ids.len());
        for t in &want_top[..5] {
            assert!(
                order[..10].contains(t),
                "{model_file}: reference top-5 token {t} not in our top-10 {:?}",
                &order[..10]
            );
        }
        for (i, want) in checked(case).into_iter().filter(|_| ids.len() <= LONG_PROMPT) {
            let err = (logits[i] as f64 - want).abs();
            assert!(
                err <= tol,
                "{model_file} {} tokens: logit {i}: got {}, want {want} (tol {tol})",
                ids.len(),
                logits[i]
            );
        }
        let rule =
            if ids.len() <= LONG_PROMPT { format!("tolerance {tol:.4}") } else { "top-token checks only".into() };
        eprintln!("{model_file}: {} tokens, max |logit error| {:.4} ({rule})", ids.len(), max_error(&logits, case));
    }
}

#[test]
fn smollm2_f32_logits_match_reference() {
    check_f32(SMOLLM2, include_str!("golden/logits_SmolLM2-135M-Instruct.Q4_1.json"));
}

#[test]
fn qwen25_f32_logits_match_reference() {
    check_f32(QWEN25, include_str!("golden/logits_qwen2.5-coder-0.5b-instruct-q4_k_m.json"));
}

#[test]
fn gemma3_f32_logits_match_reference() {
    check_f32(GEMMA3, include_str!("golden/logits_gemma-3-270m-q4_k_m.json"));
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
