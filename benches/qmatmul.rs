//! Quantized matvec (decode) and matmul (prefill) at the shapes of SmolLM2-135M and
//! Qwen2.5-0.5B, on 2 threads, against the machine's measured read bandwidth.
//!
//! Every case cycles through enough copies of its weight matrix to exceed 4x the L3 cache, so
//! matvec figures are DRAM streaming rates, not cache rates. Before criterion runs, a summary
//! prints each matvec's weight GB/s (median of timed runs) next to the read bandwidth measured
//! in the same process (2-thread sum over a 256 MiB buffer), and the prefill GFLOP/s.
//!
//! Two paths: `blocks` is `matmul` on the GGUF bytes (what a weight seen once gets), `engine`
//! is `Tensor::matmul` on mapped weight tensors as a loaded model holds them, which on AVX-512
//! VNNI runs on the copy packed at first use (the warm-up packs every copy). The summary's
//! engine matvecs run 8 at a time inside `Device::run`, as a forward pass runs them.
//!
//! `cargo bench -p ferrite-benches` (about 2 minutes). `FERRITE_ISA=avx2|scalar` compares levels.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::sync::Arc;

use ferrite_tensor::cpu::kernels::Kernels;
use ferrite_tensor::cpu::matmul::matmul;
use ferrite_tensor::cpu::CpuStorage;
use ferrite_tensor::{DType, Device, Tensor};
use half::f16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const THREADS: usize = 2;
/// Rounds per matvec case in the summary, and matvecs per round and path (the engine's inside
/// one `Device::run`, as a forward pass runs them).
const ROUNDS: usize = 15;
const SAMPLE: usize = 8;
/// Working set per case: 4x the 32 MiB L3.
const STREAM_BYTES: usize = 128 << 20;
const BANDWIDTH_BYTES: usize = 256 << 20;
/// The multi-row cases: activation rows and the [`CASES`] run with them (a batched decode step
/// of 16 streams and a prefill chunk of 64 on [`PREFILL`]; a whole 512-token prompt, as pp512,
/// on Qwen2.5's prefill-heavy shapes: Q5_0 ffn_up, Q4_K and Q6_K ffn_down).
const MULTI: &[(usize, &[usize])] = &[(16, PREFILL), (64, PREFILL), (512, &[3, 4, 5])];

struct Case {
    name: &'static str,
    dtype: DType,
    k: usize,
    n: usize,
}

const CASES: &[Case] = &[
    Case { name: "smollm2_ffn_up", dtype: DType::Q4_1, k: 576, n: 1536 },
    Case { name: "smollm2_ffn_down", dtype: DType::Q4_1, k: 1536, n: 576 },
    Case { name: "smollm2_output", dtype: DType::Q8_0, k: 576, n: 49152 },
    Case { name: "qwen25_ffn_up", dtype: DType::Q5_0, k: 896, n: 4864 },
    Case { name: "qwen25_ffn_down", dtype: DType::Q4_K, k: 4864, n: 896 },
    Case { name: "qwen25_ffn_down", dtype: DType::Q6_K, k: 4864, n: 896 },
    Case { name: "qwen25_output", dtype: DType::Q8_0, k: 896, n: 151936 },
];

/// Cases also run with 16 and 64 activation rows ([`MULTI`]).
const PREFILL: &[usize] = &[0, 2, 3, 4, 5];

fn pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(THREADS).build().expect("thread pool")
}

/// Random blocks with sane f16 scales; `copies` matrices back to back.
fn weights(dtype: DType, k: usize, n: usize, copies: usize, rng: &mut StdRng) -> Vec<u8> {
    let ts = dtype.type_size();
    let blocks = n * k / dtype.block_size() * copies;
    let mut w = vec![0u8; blocks * ts];
    rng.fill(&mut w[..]);
    let scales: &[usize] = match dtype {
        DType::Q6_K => &[208],
        DType::Q4_1 | DType::Q4_K | DType::Q5_K => &[0, 2],
        _ => &[0],
    };
    for b in w.chunks_exact_mut(ts) {
        for &o in scales {
            b[o..o + 2].copy_from_slice(&f16::from_f32(rng.gen_range(0.001f32..0.02)).to_le_bytes());
        }
    }
    w
}

/// Weight matrices of one case, cycled so each call streams a matrix not in cache: as bytes,
/// and as mapped tensors over the same bytes (one per copy).
struct Stream {
    w: Arc<Vec<u8>>,
    tensors: Vec<Tensor>,
    bytes: usize,
    copies: usize,
    next: usize,
}

impl Stream {
    fn new(c: &Case, rng: &mut StdRng, dev: &Device) -> Stream {
        let bytes = c.dtype.bytes_for(c.k).expect("row") * c.n;
        let copies = STREAM_BYTES.div_ceil(bytes).max(1);
        let w = Arc::new(weights(c.dtype, c.k, c.n, copies, rng));
        let tensors = (0..copies)
            .map(|i| {
                let storage = CpuStorage::mapped(w.clone(), i * bytes, bytes).expect("mapped");
                Tensor::from_storage(Arc::new(storage), dev.clone(), c.dtype, vec![c.n, c.k], 0).expect("tensor")
            })
            .collect::<Vec<Tensor>>();
        // Every copy meets one row first, so that the timed runs stream packed copies (as
        // decode does) and never include the packing.
        let x = Tensor::from_f32(&vec![0.5; c.k], vec![1, c.k], dev).expect("x");
        for t in &tensors {
            x.matmul(t).expect("warm-up");
        }
        Stream { w, tensors, bytes, copies, next: 0 }
    }

    fn advance(&mut self) -> usize {
        let i = self.next;
        self.next = (i + 1) % self.copies;
        i
    }

    fn next(&mut self) -> &[u8] {
        let i = self.advance();
        &self.w[i * self.bytes..(i + 1) * self.bytes]
    }

    /// The next copy as a tensor; `x.matmul(w)` is the engine's path.
    fn next_tensor(&mut self) -> &Tensor {
        let i = self.advance();
        &self.tensors[i]
    }
}

/// `x [m, k]` as a tensor on `dev`.
fn x_tensor(x: &[f32], k: usize, dev: &Device) -> Tensor {
    Tensor::from_f32(x, vec![x.len() / k, k], dev).expect("x")
}

/// Read bandwidth probe: a 2-thread sum over a buffer 8x the L3.
struct Bandwidth(Vec<u64>);

impl Bandwidth {
    fn new() -> Bandwidth {
        Bandwidth((0..BANDWIDTH_BYTES / 8).map(|i| i as u64).collect())
    }

    /// Seconds of one pass over the buffer.
    fn pass(&self, pool: &rayon::ThreadPool) -> f64 {
        use rayon::prelude::*;
        let half = self.0.len().div_ceil(THREADS);
        let t = Instant::now();
        let s: u64 = pool.install(|| {
            self.0
                .par_chunks(half)
                .map(|c| {
                    let mut lanes = [0u64; 8];
                    for ch in c.chunks_exact(8) {
                        for (l, v) in lanes.iter_mut().zip(ch) {
                            *l = l.wrapping_add(*v);
                        }
                    }
                    lanes.iter().fold(0u64, |a, b| a.wrapping_add(*b))
                })
                .reduce(|| 0, u64::wrapping_add)
        });
        black_box(s);
        t.elapsed().as_secs_f64()
    }

    fn gbs(secs: f64) -> f64 {
        BANDWIDTH_BYTES as f64 / secs / 1e9
    }
}

/// Median of a sample.
fn median(mut t: Vec<f64>) -> f64 {
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn median_secs(mut f: impl FnMut(), runs: usize) -> f64 {
    f();
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn summary(pool: &rayon::ThreadPool, dev: &Device, streams: &mut [Stream], rng: &mut StdRng) {
    let probe = Bandwidth::new();
    println!("\n=== qmatmul summary ({THREADS} threads, kernels {:?}) ===", Kernels::best().isa());
    println!(
        "Each case alternates {ROUNDS} rounds of: one read-bandwidth pass (2-thread sum, 256 MiB), \
         {SAMPLE} matvecs on the GGUF bytes, {SAMPLE} engine matvecs; medians of each, so the \
         ratio compares figures of the same seconds."
    );
    for (c, s) in CASES.iter().zip(streams.iter_mut()) {
        let x: Vec<f32> = (0..c.k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        let mut out = vec![0f32; c.n];
        let xt = x_tensor(&x, c.k, dev);
        let (mut bw, mut blocks, mut engine) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            bw.push(probe.pass(pool));
            let t = Instant::now();
            for _ in 0..SAMPLE {
                pool.install(|| matmul(&x, 1, c.k, s.next(), c.dtype, c.n, &mut out)).expect("matvec");
            }
            blocks.push(t.elapsed().as_secs_f64() / SAMPLE as f64);
            // As in a forward pass: inside `Device::run`, so the pool's threads stay awake
            // between calls.
            let t = Instant::now();
            dev.run(|| {
                for _ in 0..SAMPLE {
                    black_box(xt.matmul(s.next_tensor()).expect("matvec"));
                }
            });
            engine.push(t.elapsed().as_secs_f64() / SAMPLE as f64);
        }
        let bw = Bandwidth::gbs(median(bw));
        for (path, t) in [("blocks", median(blocks)), ("engine", median(engine))] {
            let gbs = s.bytes as f64 / t / 1e9;
            println!(
                "matvec {path} {:<17} {:?} {:>5}x{:<6} {:>7.2} MB  {:>8.1} us  {:>5.1} GB/s  of {bw:>5.1}  {:>4.0}% of bandwidth",
                c.name,
                c.dtype,
                c.k,
                c.n,
                s.bytes as f64 / 1e6,
                t * 1e6,
                gbs,
                100.0 * gbs / bw
            );
        }
    }
    for &(m, cases) in MULTI {
        for &i in cases {
            let (c, s) = (&CASES[i], &mut streams[i]);
            let x: Vec<f32> = (0..m * c.k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
            let xt = x_tensor(&x, c.k, dev);
            let t = median_secs(
                || {
                    black_box(xt.matmul(s.next_tensor()).expect("matmul"));
                },
                7,
            );
            let rows: Vec<Tensor> = (0..4).map(|r| x_tensor(&x[r * c.k..(r + 1) * c.k], c.k, dev)).collect();
            let tv = median_secs(
                || {
                    for xr in &rows {
                        black_box(xr.matmul(s.next_tensor()).expect("matvec"));
                    }
                },
                7,
            ) / 4.0;
            let flops = 2.0 * (m * c.k * c.n) as f64;
            println!(
                "m={m:<3} {:<17} {:?} {:>5}x{:<6} {:>7.2} ms  {:>6.1} GFLOP/s  {:>5.1} us/token (matvec {:.1} us/token, {:.1}x)",
                c.name,
                c.dtype,
                c.k,
                c.n,
                t * 1e3,
                flops / t / 1e9,
                t / m as f64 * 1e6,
                tv * 1e6,
                tv / (t / m as f64)
            );
        }
    }
    println!();
}

fn benches(cr: &mut Criterion) {
    let pool = pool();
    let dev = Device::cpu_with_threads(THREADS).expect("device");
    let mut rng = StdRng::seed_from_u64(1);
    let mut streams: Vec<Stream> = CASES.iter().map(|c| Stream::new(c, &mut rng, &dev)).collect();
    summary(&pool, &dev, &mut streams, &mut rng);

    let mut g = cr.benchmark_group("matvec");
    for (c, s) in CASES.iter().zip(streams.iter_mut()) {
        let x: Vec<f32> = (0..c.k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        let xt = x_tensor(&x, c.k, &dev);
        let mut out = vec![0f32; c.n];
        g.throughput(Throughput::Bytes(s.bytes as u64));
        let id = |path: &str| BenchmarkId::new(format!("{path}_{}_{:?}", c.name, c.dtype), format!("{}x{}", c.k, c.n));
        g.bench_function(id("blocks"), |b| {
            b.iter(|| pool.install(|| matmul(&x, 1, c.k, s.next(), c.dtype, c.n, &mut out)).expect("matvec"))
        });
        g.bench_function(id("engine"), |b| b.iter(|| black_box(xt.matmul(s.next_tensor()).expect("matvec"))));
    }
    g.finish();

    for &(m, cases) in MULTI {
        let mut g = cr.benchmark_group(format!("matmul_m{m}"));
        for &i in cases {
            let (c, s) = (&CASES[i], &mut streams[i]);
            let x: Vec<f32> = (0..m * c.k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
            let xt = x_tensor(&x, c.k, &dev);
            g.throughput(Throughput::Elements(2 * (m * c.k * c.n) as u64));
            g.bench_function(BenchmarkId::new(format!("{}_{:?}", c.name, c.dtype), format!("{}x{}", c.k, c.n)), |b| {
                b.iter(|| black_box(xt.matmul(s.next_tensor()).expect("matmul")))
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = qmatmul;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10);
    targets = benches
}
criterion_main!(qmatmul);
