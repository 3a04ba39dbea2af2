//! SmolLM2 end to end on the WGPU device: its logits against the CPU backend running the same
//! model with f32 weights (exact f32 arithmetic on both sides; the GPU decodes the quantized
//! blocks in its shaders), then a decode step through the paged cache.
//!
//! The CPU backend's default path rounds activations to 8 bits for its integer dot products (as
//! llama.cpp does) and so differs from both by ~1e-2 in the logits; greedy decoding can then
//! pick a different token where two are within that of each other.

#![allow(clippy::unwrap_used)]

use ferrite_models::weights::F32Weights;
use ferrite_models::{load_weights, Batch, KvCache, Llama};
use ferrite_tensor::model_files::{test_model, SMOLLM2};
use ferrite_tensor::{DType, Device};

mod common;

use common::gpu;

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).max_by(|&i, &j| v[i].total_cmp(&v[j])).unwrap()
}

#[test]
fn smollm2_logits_on_wgpu_match_the_cpu_f32_path() {
    let Some(g) = gpu() else { return };
    let Some(path) = test_model(SMOLLM2) else { return };
    let cpu = Device::cpu();
    let (w, cfg) = load_weights(&path).unwrap();
    let gpu_model = Llama::load(w.as_ref(), cfg.clone(), g).unwrap();
    let (w, _) = load_weights(&path).unwrap();
    let cpu_model = Llama::load(&F32Weights(w), cfg.clone(), &cpu).unwrap();
    // "The capital of France is" in SmolLM2's vocabulary, then one decode step.
    let prompt = [504u32, 3575, 282, 4649, 314];
    let blocks = 2;
    let table: Vec<u32> = (0..blocks as u32).collect();
    let (kc, kg) = (
        KvCache::new(&cfg, blocks, 16, DType::F32, &cpu).unwrap(),
        KvCache::new(&cfg, blocks, 16, DType::F32, g).unwrap(),
    );
    let prefill = Batch::single(&prompt, 0, table.clone());
    let a = cpu_model.forward(&prefill, &kc).unwrap().to_vec_f32().unwrap();
    let b = gpu_model.forward(&prefill, &kg).unwrap().to_vec_f32().unwrap();
    let spread = a.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = max_abs_diff(&a, &b);
    eprintln!("prefill: max |cpu f32 - wgpu| = {d:e} over logits up to {spread}");
    assert!(d <= 1e-5 * spread.max(1.0), "prefill logits differ by {d}");
    assert_eq!(argmax(&a), argmax(&b));
    let next = [argmax(&a) as u32];
    let step = Batch::single(&next, prompt.len(), table);
    let a = cpu_model.forward(&step, &kc).unwrap().to_vec_f32().unwrap();
    let b = gpu_model.forward(&step, &kg).unwrap().to_vec_f32().unwrap();
    let d = max_abs_diff(&a, &b);
    eprintln!("decode: max |cpu f32 - wgpu| = {d:e}");
    assert!(d <= 1e-5 * spread.max(1.0), "decode logits differ by {d}");
    assert_eq!(argmax(&a), argmax(&b));
}
