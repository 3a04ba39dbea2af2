//! Single-thread, in-cache kernel rates (best of 2000 calls) for each ISA level and 1 or 4
//! activation rows: what the kernels can do when memory is not the limit. Useful on a busy
//! machine, where best-of-N filters out preemption. `cargo run --release -p ferrite-benches
//! --example kernel_rate`.

use ferrite_tensor::cpu::kernels::{Isa, Kernels};
use ferrite_tensor::quant::act::{ActFormat, QuantizedActs};
use ferrite_tensor::DType;
use rand::{Rng, SeedableRng};
use std::time::Instant;

fn main() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    for (dtype, k, n) in [
        (DType::Q4_1, 576usize, 64usize),
        (DType::Q8_0, 576, 64),
        (DType::Q5_0, 896, 64),
        (DType::Q4_K, 4864, 16),
        (DType::Q6_K, 4864, 16),
        (DType::Q4_0, 1536, 32),
    ] {
        let ts = dtype.type_size();
        let rb = k / dtype.block_size() * ts;
        let mut w = vec![0u8; rb * n];
        rng.fill(&mut w[..]);
        for b in w.chunks_exact_mut(ts) {
            let o = if dtype == DType::Q6_K { 208 } else { 0 };
            b[o..o + 2].copy_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
        }
        let x: Vec<f32> = (0..4 * k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        let mut qa = QuantizedActs::new();
        let format = ActFormat::for_weights(dtype).expect("quantized dtype");
        qa.quantize(&x, k, format).expect("kernel");
        let rows: Vec<_> = (0..4).map(|i| qa.row(i)).collect();
        // Levels this CPU lacks are skipped.
        for kern in [Isa::Avx512Vnni, Isa::Avx2].into_iter().filter_map(Kernels::for_isa) {
            let isa = kern.isa();
            for r in [1usize, 2, 4] {
                let mut out = vec![0f32; n * r];
                let mut best = f64::MAX;
                for _ in 0..2000 {
                    let t = Instant::now();
                    kern.quant_dot(dtype, &w, rb, &rows[..r], &mut out, r).expect("kernel");
                    best = best.min(t.elapsed().as_secs_f64());
                }
                let bytes = (rb * n) as f64;
                println!(
                    "{dtype:?} k={k} {isa:?} R={r}: {:.1} GB/s weights in-cache 1 thread, {:.1} GMAC/s, {:.2} ns/block",
                    bytes / best / 1e9,
                    (k * n * r) as f64 / best / 1e9,
                    best * 1e9 / (bytes / ts as f64)
                );
            }
        }
        let t = Instant::now();
        for _ in 0..100 {
            qa.quantize(&x, k, format).expect("kernel");
        }
        println!("  quantize 4x{k}: {:.2} us", t.elapsed().as_secs_f64() / 100.0 * 1e6);
    }
}
