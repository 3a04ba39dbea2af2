//! Dense attention rates (GFLOP/s counting the two products, best of a few calls) at the
//! diffusion transformer's shapes (6 heads of 128, text + image tokens) and the VAE's mid-block
//! attention (1 head of 512), then causal prefill over a paged f16 KV cache (the tiled path) at
//! Gemma 3's and SmolLM2's head shapes: `cargo run --release -p ferrite-benches --example attention_rate
//! [REPS]`; `RAYON_NUM_THREADS` sets the threads.

use ferrite_tensor::{Device, Tensor};
use rand::{Rng, SeedableRng};
use std::time::Instant;

fn main() {
    let reps: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let dev = Device::cpu();
    println!("threads {}, best of {reps}", rayon::current_num_threads());
    for (l, h, d) in [(768usize, 6usize, 128usize), (1536, 6, 128), (1024, 1, 512), (4096, 1, 512)] {
        let mk = |rng: &mut rand::rngs::StdRng| {
            let v: Vec<f32> = (0..l * h * d).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
            Tensor::from_f32(&v, vec![l, h, d], &dev).expect("tensor")
        };
        let (q, k, v) = (mk(&mut rng), mk(&mut rng), mk(&mut rng));
        let flop = 4.0 * (l * l * h * d) as f64;
        let best = (0..reps)
            .map(|_| {
                let t = Instant::now();
                let o = q.attention_full(&k, &v, &[l], 1.0 / (d as f32).sqrt()).expect("attention");
                std::hint::black_box(o);
                t.elapsed().as_secs_f64()
            })
            .fold(f64::MAX, f64::min);
        println!("L {l:5} heads {h} head_dim {d}: {:7.2} ms, {:6.1} GFLOP/s", best * 1e3, flop / best / 1e9);
    }
    // Causal prefill over a paged f16 cache (the tiled path): Gemma 3 and SmolLM2 shapes.
    for (l, hq, hkv, d) in [(512usize, 4usize, 1usize, 256usize), (512, 9, 3, 64)] {
        let bs = 16;
        let blocks = l.div_ceil(bs);
        let rand = |n: usize, rng: &mut rand::rngs::StdRng| -> Vec<f32> {
            (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
        };
        let kc = Tensor::zeros([blocks * bs, hkv, d], ferrite_tensor::DType::F16, &dev).expect("cache");
        let vc = Tensor::zeros([blocks * bs, hkv, d], ferrite_tensor::DType::F16, &dev).expect("cache");
        let slots: Vec<u32> = (0..l as u32).collect();
        let k = Tensor::from_f32(&rand(l * hkv * d, &mut rng), vec![l, hkv, d], &dev).expect("k");
        let v = Tensor::from_f32(&rand(l * hkv * d, &mut rng), vec![l, hkv, d], &dev).expect("v");
        kc.write_kv(&k, &slots).expect("write");
        vc.write_kv(&v, &slots).expect("write");
        let q = Tensor::from_f32(&rand(l * hq * d, &mut rng), vec![l, hq, d], &dev).expect("q");
        let seqs = [ferrite_tensor::AttentionSeq {
            q_start: 0,
            q_len: l,
            kv_len: l,
            block_table: (0..blocks as u32).collect(),
        }];
        let p = ferrite_tensor::AttentionParams {
            scale: 1.0 / (d as f32).sqrt(),
            block_size: bs,
            sliding_window: None,
            softcap: None,
        };
        // The causal half (query i sees i + 1 keys), both products.
        let flop = 4.0 * (l * (l + 1) / 2 * hq * d) as f64;
        let time = || {
            let t = Instant::now();
            std::hint::black_box(q.attention(&kc, &vc, &seqs, &p).expect("attention"));
            t.elapsed().as_secs_f64()
        };
        let best = (0..reps).map(|_| time()).fold(f64::MAX, f64::min);
        println!(
            "causal L {l} heads {hq}/{hkv} head_dim {d} (paged f16 cache): {:7.2} ms, {:6.1} GFLOP/s",
            best * 1e3,
            flop / best / 1e9
        );
    }
}
