//! The WGPU backend on the adapter wgpu picks (lavapipe, the software Vulkan device, on machines
//! without a GPU): kernels at SmolLM2's shapes and one SmolLM2 decode step, each timed through
//! to the device's completion (`synchronize`), subgroup variants on and off.
//!
//! `cargo bench -p ferrite-benches --bench wgpu` (about 2 minutes on lavapipe). Without an
//! adapter it prints why and measures nothing; without the SmolLM2 file it skips the decode step.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use ferrite_models::{load_weights, Batch, KvCache, Llama};
use ferrite_tensor::model_files::{test_model, SMOLLM2};
use ferrite_tensor::{AttentionParams, AttentionSeq, DType, Device, Tensor};
use ferrite_wgpu::WgpuBackend;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

/// The adapter with its subgroup kernels, and without them; `None` without an adapter.
fn devices() -> Option<[(&'static str, Device); 2]> {
    let with = match WgpuBackend::new(None) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("no WGPU adapter, nothing measured: {e}");
            return None;
        }
    };
    eprintln!("adapter: {:?}, subgroups: {}", with.adapter().name, with.subgroups());
    let without = WgpuBackend::new(None).ok()?.without_subgroups();
    Some([("subgroups", Device::new(Arc::new(with))), ("no_subgroups", Device::new(Arc::new(without)))])
}

fn kernels(c: &mut Criterion) {
    let Some(devices) = devices() else { return };
    let mut g = c.benchmark_group("wgpu_kernels");
    g.sample_size(20).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    let cpu = Device::cpu();
    // SmolLM2's ffn_up shape in Q4_1 (its file's type) and Q8_0: random blocks with sane f16
    // scales (and mins).
    let (k, n) = (576, 1536);
    let blocks = |dtype: DType, seed: u64| {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut bytes: Vec<u8> = (0..dtype.bytes_for(n * k).expect("whole blocks")).map(|_| rng.gen()).collect();
        let fields: &[usize] = if dtype == DType::Q4_1 { &[0, 2] } else { &[0] };
        for b in bytes.chunks_exact_mut(dtype.type_size()) {
            for &at in fields {
                b[at..at + 2].copy_from_slice(&half::f16::from_f32(rng.gen_range(0.002..0.02)).to_le_bytes());
            }
        }
        bytes
    };
    let weights = [(DType::Q4_1, blocks(DType::Q4_1, 1)), (DType::Q8_0, blocks(DType::Q8_0, 2))];
    for (name, dev) in &devices {
        for (dtype, bytes) in &weights {
            let w = Tensor::from_bytes(bytes, *dtype, [n, k], dev).expect("upload");
            for m in [1usize, 16] {
                let x = Tensor::from_f32(&random(m * k, 2), [m, k], dev).expect("x");
                g.bench_function(format!("matmul_{dtype:?}_576x1536_m{m}/{name}"), |b| {
                    b.iter(|| {
                        let y = x.matmul(&w).expect("matmul");
                        dev.backend().synchronize().expect("sync");
                        black_box(y);
                    })
                });
            }
        }
        let x = Tensor::from_f32(&random(576, 3), [1, 576], dev).expect("x");
        let nw = Tensor::from_f32(&random(576, 4), [576], dev).expect("w");
        g.bench_function(format!("rms_norm_576/{name}"), |b| {
            b.iter(|| {
                let y = x.rms_norm(&nw, 1e-5).expect("rms_norm");
                dev.backend().synchronize().expect("sync");
                black_box(y);
            })
        });
        // Decode attention of one token over 512 cached positions, 9 query / 3 KV heads of 64.
        let (hq, hk, d, bs, kv) = (9, 3, 64, 16, 512);
        let cache = |seed| Tensor::from_f32(&random(kv * hk * d, seed), [kv, hk, d], &cpu).expect("cache");
        let (kc, vc) = (cache(5).cast(DType::F16).expect("f16"), cache(6).cast(DType::F16).expect("f16"));
        let (kc, vc) = (kc.to_device(dev).expect("k"), vc.to_device(dev).expect("v"));
        let q = Tensor::from_f32(&random(hq * d, 7), [1, hq, d], dev).expect("q");
        let seqs = [AttentionSeq { q_start: 0, q_len: 1, kv_len: kv, block_table: (0..(kv / bs) as u32).collect() }];
        let p = AttentionParams { scale: 0.125, block_size: bs, sliding_window: None, softcap: None };
        g.bench_function(format!("attention_decode_512/{name}"), |b| {
            b.iter(|| {
                let y = q.attention(&kc, &vc, &seqs, &p).expect("attention");
                dev.backend().synchronize().expect("sync");
                black_box(y);
            })
        });
    }
    g.finish();
}

fn decode(c: &mut Criterion) {
    let Some(devices) = devices() else { return };
    let Some(path) = test_model(SMOLLM2) else {
        eprintln!("SmolLM2 is not in the models folder: no decode step measured");
        return;
    };
    let mut g = c.benchmark_group("wgpu_decode");
    g.sample_size(10).measurement_time(Duration::from_secs(20)).warm_up_time(Duration::from_secs(2));
    for (name, dev) in &devices {
        let (w, cfg) = load_weights(&path).expect("SmolLM2");
        let model = Llama::load(w.as_ref(), cfg.clone(), dev).expect("load");
        let cache = KvCache::new(&cfg, 4, 16, DType::F16, dev).expect("cache");
        let table: Vec<u32> = (0..4).collect();
        let prompt = [504u32, 3575, 282, 4649, 314];
        model.forward(&Batch::single(&prompt, 0, table.clone()), &cache).expect("prefill");
        // One token at position 5, over and over (the same cache slot is rewritten each time).
        let step = Batch::single(&[1u32], prompt.len(), table);
        g.bench_function(format!("smollm2_decode_step/{name}"), |b| {
            b.iter(|| black_box(model.forward(&step, &cache).expect("step").to_vec_f32().expect("logits")))
        });
    }
    g.finish();
}

criterion_group!(benches, kernels, decode);
criterion_main!(benches);
