//! Quantized matmul rates (GMAC/s, best of REPS calls on the current rayon pool) at SmolLM2's
//! and Qwen2.5's shapes for 1 to 512 activation rows: decode, batched decode and prefill
//! through `cpu::matmul::matmul` on the GGUF bytes (`blocks`) and through `Tensor::matmul` on a
//! mapped weight tensor as a loaded model holds it (`engine`: on AVX-512 VNNI, the copy packed
//! at its first use), quantization of the activations included.
//! `cargo run --release -p ferrite-benches --example qgemm_rate [REPS]`; `RAYON_NUM_THREADS`
//! sets the threads, `FERRITE_ISA=avx2` compares the AVX2 kernels on an AVX-512 machine.

use std::sync::Arc;

use ferrite_tensor::cpu::matmul::matmul;
use ferrite_tensor::cpu::CpuStorage;
use ferrite_tensor::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use std::time::Instant;

fn main() {
    let reps: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(20);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    println!(
        "threads {}, isa {:?}, best of {reps}",
        rayon::current_num_threads(),
        ferrite_tensor::cpu::kernels::Isa::best()
    );
    let rows = [1usize, 2, 4, 8, 16, 64, 512];
    print!("{:<26}", "dtype k x n");
    for m in rows {
        print!(" {:>8}", format!("m={m}"));
    }
    println!();
    for (dtype, k, n) in [
        (DType::Q4_1, 576usize, 1536usize),
        (DType::Q4_1, 1536, 576),
        (DType::Q4_1, 576, 192),
        (DType::Q8_0, 576, 49152),
        (DType::Q5_0, 896, 4864),
        (DType::Q8_0, 896, 896),
        (DType::Q4_K, 4864, 896),
        (DType::Q6_K, 4864, 896),
    ] {
        let ts = dtype.type_size();
        let nb = n * k / dtype.block_size();
        let mut w: Vec<u8> = (0..nb * ts).map(|_| rng.gen()).collect();
        for b in w.chunks_exact_mut(ts) {
            // The fp16 scale: first in every block but Q6_K's, whose `d` ends it.
            let d = if dtype == DType::Q6_K { ts - 2 } else { 0 };
            b[d..d + 2].copy_from_slice(&half::f16::from_f32(rng.gen_range(0.002f32..0.05)).to_le_bytes());
            if dtype == DType::Q4_1 || dtype == DType::Q4_K {
                b[2..4].copy_from_slice(&half::f16::from_f32(rng.gen_range(-0.05f32..0.0)).to_le_bytes());
            }
        }
        let len = w.len();
        let storage = CpuStorage::mapped(Arc::new(w.clone()), 0, len).expect("mapped");
        let wt = Tensor::from_storage(Arc::new(storage), Device::cpu(), dtype, vec![n, k], 0).expect("tensor");
        for path in ["blocks", "engine"] {
            print!("{:<26}", format!("{path} {dtype:?} {k} x {n}"));
            for m in rows {
                let x: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
                let xt = Tensor::from_f32(&x, vec![m, k], &Device::cpu()).expect("x");
                let mut out = vec![0f32; m * n];
                let calls = (reps * 64 / m).clamp(3, reps * 8);
                let best = (0..=calls)
                    .map(|_| {
                        let t = Instant::now();
                        if path == "blocks" {
                            matmul(&x, m, k, &w, dtype, n, &mut out).expect("matmul");
                        } else {
                            std::hint::black_box(xt.matmul(&wt).expect("matmul"));
                        }
                        t.elapsed().as_secs_f64()
                    })
                    .fold(f64::MAX, f64::min);
                print!(" {:>8.1}", (m * n * k) as f64 / best / 1e9);
            }
            println!();
        }
    }
}
