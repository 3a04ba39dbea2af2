//! f32 GEMM rates (GFLOP/s, best of a few calls (a busy machine only slows calls down) on the current rayon pool) at the shapes of
//! the diffusion transformer and VAE: ferrite's packed GEMM (`cpu::gemm_blocked`, packing the
//! weights included) next to the `gemm` crate on the same operands. `cargo run --release -p
//! ferrite-benches --example gemm_rate [REPS]`; `RAYON_NUM_THREADS` sets the threads.

use ferrite_tensor::cpu::gemm_blocked::{self, PackedWeights, RowMajor};
use ferrite_tensor::DType;
use rand::{Rng, SeedableRng};
use std::time::Instant;

fn best(v: Vec<f64>) -> f64 {
    v.into_iter().fold(0.0, f64::max)
}

fn main() {
    let reps: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let threads = rayon::current_num_threads();
    println!("threads {threads}, best of {reps}");
    for (m, k, n) in [
        (256usize, 768usize, 2304usize),
        (512, 768, 3072),
        (256, 3072, 768),
        (768, 768, 5376),
        (768, 3840, 768),
        (4096, 4608, 512),
        (16384, 2304, 256),
    ] {
        let x: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        let wf: Vec<f32> = (0..n * k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        let w: Vec<u8> = wf.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut out = vec![0f32; m * n];
        let flop = 2.0 * (m * n * k) as f64;
        let ours = best(
            (0..reps)
                .map(|_| {
                    let t = Instant::now();
                    let packed = PackedWeights::new(&w, DType::F32, n, k).expect("pack");
                    gemm_blocked::gemm(&RowMajor { x: &x, k }, m, &packed, &mut out).expect("gemm");
                    flop / t.elapsed().as_secs_f64() / 1e9
                })
                .collect(),
        );
        let packed = PackedWeights::new(&w, DType::F32, n, k).expect("pack");
        let prepacked = best(
            (0..reps)
                .map(|_| {
                    let t = Instant::now();
                    gemm_blocked::gemm(&RowMajor { x: &x, k }, m, &packed, &mut out).expect("gemm");
                    flop / t.elapsed().as_secs_f64() / 1e9
                })
                .collect(),
        );
        let par = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
        let crate_rate = best(
            (0..reps)
                .map(|_| {
                    let t = Instant::now();
                    // SAFETY: out is m x n row-major, x m x k row-major, wf read as the k x n
                    // matrix with column stride k; all extents as allocated above.
                    unsafe {
                        gemm::gemm(
                            m,
                            n,
                            k,
                            out.as_mut_ptr(),
                            1,
                            n as isize,
                            false,
                            x.as_ptr(),
                            1,
                            k as isize,
                            wf.as_ptr(),
                            k as isize,
                            1,
                            0.0f32,
                            1.0f32,
                            false,
                            false,
                            false,
                            par,
                        )
                    };
                    flop / t.elapsed().as_secs_f64() / 1e9
                })
                .collect(),
        );
        let pack_ms = (0..reps)
            .map(|_| {
                let t = Instant::now();
                let p = PackedWeights::new(&w, DType::F32, n, k).expect("pack");
                std::hint::black_box(&p);
                t.elapsed().as_secs_f64() * 1e3
            })
            .fold(f64::MAX, f64::min);
        println!(
            "m {m:5} k {k:4} n {n:4}: ferrite {ours:6.1} GFLOP/s (packing the weights {pack_ms:.2} ms; packed before: {prepacked:6.1}), gemm crate {crate_rate:6.1} GFLOP/s"
        );
    }
}
