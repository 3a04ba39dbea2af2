//! CPU conv2d (tiled im2col + f32 GEMM) at the shapes of the FLUX VAE, on 2 threads, in GFLOP/s
//! (`2 · pixels_out · c_out · kh · kw · c_in` flops per call; criterion's `elem/s` is flop/s).
//!
//! Cases: the decoder's 512-channel 3x3 convolution at the latent's 64x64 (f32 and f16
//! weights), its 256-channel 3x3 at 128x128, a 512 -> 256 1x1 shortcut at 128x128, and the
//! encoder's stride-2 3x3 downsample of 128 channels from 256x256.
//!
//! `cargo bench -p ferrite-benches --bench conv2d` (about a minute).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferrite_tensor::{Conv2dParams, DType, Device, Tensor};
use half::f16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const THREADS: usize = 2;

struct Case {
    name: &'static str,
    hw: usize,
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    padding: usize,
    dtype: DType,
}

const CASES: &[Case] = &[
    Case { name: "dec_3x3_512_at_64", hw: 64, c_in: 512, c_out: 512, k: 3, stride: 1, padding: 1, dtype: DType::F32 },
    Case {
        name: "dec_3x3_512_at_64_f16",
        hw: 64,
        c_in: 512,
        c_out: 512,
        k: 3,
        stride: 1,
        padding: 1,
        dtype: DType::F16,
    },
    Case { name: "dec_3x3_256_at_128", hw: 128, c_in: 256, c_out: 256, k: 3, stride: 1, padding: 1, dtype: DType::F32 },
    Case {
        name: "dec_1x1_512to256_at_128",
        hw: 128,
        c_in: 512,
        c_out: 256,
        k: 1,
        stride: 1,
        padding: 0,
        dtype: DType::F32,
    },
    Case {
        name: "enc_3x3_s2_128_at_256",
        hw: 256,
        c_in: 128,
        c_out: 128,
        k: 3,
        stride: 2,
        padding: 0,
        dtype: DType::F32,
    },
];

fn random(n: usize, rng: &mut StdRng) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
}

fn conv2d(c: &mut Criterion) {
    let dev = Device::cpu_with_threads(THREADS).expect("cpu device");
    let mut rng = StdRng::seed_from_u64(1);
    let mut group = c.benchmark_group("conv2d");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    for case in CASES {
        let x = Tensor::from_f32(
            &random(case.hw * case.hw * case.c_in, &mut rng),
            vec![1, case.hw, case.hw, case.c_in],
            &dev,
        )
        .expect("x");
        let wv = random(case.c_out * case.k * case.k * case.c_in, &mut rng);
        let dims = vec![case.c_out, case.k, case.k, case.c_in];
        let w = match case.dtype {
            DType::F16 => {
                let h: Vec<f16> = wv.iter().map(|&v| f16::from_f32(v)).collect();
                Tensor::from_f16(&h, dims, &dev).expect("w")
            }
            _ => Tensor::from_f32(&wv, dims, &dev).expect("w"),
        };
        let b = Tensor::from_f32(&random(case.c_out, &mut rng), vec![case.c_out], &dev).expect("bias");
        let p = Conv2dParams { stride: case.stride, padding: case.padding };
        let out_hw = (case.hw + 2 * case.padding - case.k) / case.stride + 1;
        let flops = 2 * out_hw * out_hw * case.c_out * case.k * case.k * case.c_in;
        group.throughput(Throughput::Elements(flops as u64));
        group.bench_function(BenchmarkId::from_parameter(case.name), |bench| {
            bench.iter(|| black_box(x.conv2d(&w, Some(&b), &p).expect("conv2d")))
        });
    }
    group.finish();
}

criterion_group!(benches, conv2d);
criterion_main!(benches);
