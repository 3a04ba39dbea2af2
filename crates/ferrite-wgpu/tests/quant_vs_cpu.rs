//! Quantized matmul and embedding gather on the GPU (weights decoded from their GGUF blocks in
//! the shader) for Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q5_K and Q6_K, on random blocks and on real
//! weights of the model files.
//!
//! Matmul: the GPU multiplies f32 activations by the dequantized weights, the CPU backend
//! quantizes the activations to 8 bits first (ggml's Q8_0 / Q8_1 / Q8_K), so both are compared
//! with an f64 product of the same activations and the weights as `ferrite_tensor::quant`
//! dequantizes them. Error = max |result - reference| / max |reference|: at most
//! [`GPU_TOL`] for the GPU (f32 rounding only), at most [`CPU_TOL`] for the CPU (its 8-bit
//! activations; it is checked too, so that the reference is known to be the CPU's product).
//! Gather: equal to the CPU backend's dequantization within 1e-6 of the table's largest value.
//!
//! Without an adapter the tests fail under `CI=true` and print `SKIPPED` elsewhere; so do the
//! real-weight tests without their model file.

#![allow(clippy::unwrap_used)]

use ferrite_tensor::gguf::GgufFile;
use ferrite_tensor::model_files::{test_model, GEMMA3, QWEN25, SMOLLM2};
use ferrite_tensor::quant::dequantize;
use ferrite_tensor::{DType, Device, Tensor};
use half::f16;
use rand::{rngs::StdRng, Rng, SeedableRng};

mod common;

use common::{gpu, random};

/// The GPU's error against the f64 reference (f32 products and sums only).
const GPU_TOL: f64 = 2e-6;
/// The CPU backend's error against the f64 reference (8-bit activations).
const CPU_TOL: f64 = 2e-2;
/// Gathered values against the CPU's dequantization, relative to the table's largest value.
const GATHER_TOL: f32 = 1e-6;

const QUANTIZED: [DType; 7] =
    [DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K];

/// Byte offsets of the f16 scales in a block of `dtype`, and the range of their magnitudes.
fn scale_fields(dtype: DType) -> (&'static [usize], f32, f32) {
    match dtype {
        DType::Q4_0 | DType::Q5_0 | DType::Q8_0 => (&[0], 0.002, 0.02),
        DType::Q4_1 => (&[0, 2], 0.002, 0.1),
        DType::Q4_K | DType::Q5_K => (&[0, 2], 0.0005, 0.003),
        DType::Q6_K => (&[208], 0.0005, 0.003),
        other => panic!("{other:?} is not quantized"),
    }
}

/// `numel` weights of `dtype` as random blocks: random bytes, with f16 scales (and mins) of
/// random sign and sane magnitude.
fn random_blocks(dtype: DType, numel: usize, seed: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut bytes: Vec<u8> = (0..dtype.bytes_for(numel).unwrap()).map(|_| rng.gen()).collect();
    let (fields, lo, hi) = scale_fields(dtype);
    for block in bytes.chunks_exact_mut(dtype.type_size()) {
        for &at in fields {
            let v = rng.gen_range(lo..hi) * if rng.gen::<bool>() { 1.0 } else { -1.0 };
            block[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
        }
    }
    bytes
}

/// `x [m, k] · w [n, k]ᵀ` in f64 over the dequantized weights.
fn reference(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f64> {
    let mut out = vec![0f64; m * n];
    for r in 0..m {
        for j in 0..n {
            out[r * n + j] =
                x[r * k..(r + 1) * k].iter().zip(&w[j * k..(j + 1) * k]).map(|(&a, &b)| a as f64 * b as f64).sum();
        }
    }
    out
}

/// max |got - want| / max |want|.
fn error(got: &Tensor, want: &[f64]) -> f64 {
    let got = got.to_vec_f32().unwrap();
    assert_eq!(got.len(), want.len());
    let peak = want.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
    got.iter().zip(want).map(|(&g, &w)| (g as f64 - w).abs()).fold(0f64, f64::max) / peak
}

/// Checks `x · w` on both devices against the f64 reference; `wc` is the CPU weight, `wg` the
/// same weight on the GPU (maybe a view).
fn check_matmul(what: &str, x: &[f32], wc: &Tensor, wg: &Tensor, g: &Device) {
    let (n, k) = (wc.dims()[0], wc.dims()[1]);
    let m = x.len() / k;
    let w = wc.to_vec_f32().unwrap();
    let want = reference(x, &w, m, n, k);
    let xc = Tensor::from_f32(x, [m, k], &Device::cpu()).unwrap();
    let xg = xc.to_device(g).unwrap();
    let out_g = xg.matmul(wg).unwrap();
    assert_eq!(out_g.dims(), &[m, n], "{what}: shape");
    let (eg, ec) = (error(&out_g, &want), error(&xc.matmul(wc).unwrap(), &want));
    eprintln!("{what}: m {m} n {n} k {k}: gpu error {eg:.2e}, cpu error {ec:.2e}");
    assert!(eg <= GPU_TOL, "{what}: m {m}: GPU error {eg:e} over {GPU_TOL:e}");
    assert!(ec <= CPU_TOL, "{what}: m {m}: CPU error {ec:e} over {CPU_TOL:e}");
}

/// Checks rows `ids` of `tc` (CPU) and `tg` (GPU) against each other.
fn check_gather(what: &str, tc: &Tensor, tg: &Tensor, ids: &[u32]) {
    let want = tc.embedding(ids).unwrap().to_vec_f32().unwrap();
    let got = tg.embedding(ids).unwrap();
    assert_eq!(got.dims(), &[ids.len(), tc.dims()[1]], "{what}: shape");
    let got = got.to_vec_f32().unwrap();
    let peak = want.iter().fold(1e-30f32, |m, v| m.max(v.abs()));
    let worst = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let exact = want.iter().zip(&got).filter(|(a, b)| a.to_bits() == b.to_bits()).count();
    eprintln!(
        "{what}: gather of {} rows: max diff {worst:e} (peak {peak}), {exact}/{} bit-exact",
        ids.len(),
        got.len()
    );
    assert!(worst <= GATHER_TOL * peak, "{what}: gather: max |cpu - gpu| = {worst:e}, over {GATHER_TOL:e} × {peak}");
}

#[test]
fn quantized_matmul_matches_the_f64_reference_and_the_cpu() {
    let Some(g) = gpu() else { return };
    for (i, dtype) in QUANTIZED.into_iter().enumerate() {
        let ks: &[usize] = if dtype.block_size() == 32 { &[32 * 7, 256 * 3] } else { &[256 * 3] };
        for &k in ks {
            let n = 37;
            let bytes = random_blocks(dtype, n * k, 100 + i as u64);
            let wc = Tensor::from_bytes(&bytes, dtype, [n, k], &Device::cpu()).unwrap();
            let wg = wc.to_device(g).unwrap();
            for m in [1, 5] {
                let x = random(m * k, 200 + m as u64, 1.0);
                check_matmul(&format!("{dtype:?}"), &x, &wc, &wg, g);
            }
            // A view of rows 3..34 starts 3 rows into the buffer: with Q4_0 and k = 224 (126-byte
            // rows) at a byte offset that is not a multiple of 4.
            let (vc, vg) = (wc.narrow_rows(3, 31).unwrap(), wg.narrow_rows(3, 31).unwrap());
            assert!(vg.offset_bytes() > 0);
            check_matmul(&format!("{dtype:?} rows 3..34"), &random(2 * k, 300, 1.0), &vc, &vg, g);
        }
    }
}

#[test]
fn quantized_matmul_of_many_rows_uses_every_tile() {
    let Some(g) = gpu() else { return };
    // m = 11: two whole tiles of 4 rows and one of 3; leading dimensions are kept.
    let (m, n, k) = (11, 9, 256);
    let bytes = random_blocks(DType::Q4_K, n * k, 7);
    let wc = Tensor::from_bytes(&bytes, DType::Q4_K, [n, k], &Device::cpu()).unwrap();
    let wg = wc.to_device(g).unwrap();
    check_matmul("Q4_K, 11 rows", &random(m * k, 8, 2.0), &wc, &wg, g);
    let x3 = Tensor::from_f32(&random(m * k, 9, 1.0), [1, m, k], &Device::cpu()).unwrap().to_device(g).unwrap();
    assert_eq!(x3.matmul(&wg).unwrap().dims(), &[1, m, n]);
    // Mismatched widths are errors, not results.
    let bad = Tensor::from_f32(&random(2 * 128, 10, 1.0), [2, 128], &Device::cpu()).unwrap().to_device(g).unwrap();
    assert!(bad.matmul(&wg).is_err());
}

#[test]
fn quantized_gather_equals_the_cpu_dequantization() {
    let Some(g) = gpu() else { return };
    let ids = [0u32, 12, 39, 12, 7];
    for (i, dtype) in QUANTIZED.into_iter().enumerate() {
        let (vocab, d) = (40, if dtype.block_size() == 32 { 32 * 7 } else { 256 * 3 });
        let bytes = random_blocks(dtype, vocab * d, 400 + i as u64);
        let tc = Tensor::from_bytes(&bytes, dtype, [vocab, d], &Device::cpu()).unwrap();
        let tg = tc.to_device(g).unwrap();
        check_gather(&format!("{dtype:?}"), &tc, &tg, &ids);
        // A view: rows 5.. of the table.
        let (vc, vg) = (tc.narrow_rows(5, 35).unwrap(), tg.narrow_rows(5, 35).unwrap());
        check_gather(&format!("{dtype:?} rows 5.."), &vc, &vg, &[34, 0, 1]);
        assert!(tg.embedding(&[vocab as u32]).is_err(), "{dtype:?}: an id outside the table is an error");
        assert_eq!(tg.embedding(&[]).unwrap().dims(), &[0, d]);
    }
}

/// Real weights: one matmul per format the models use, and token embeddings.
#[test]
fn real_model_weights_match() {
    let Some(g) = gpu() else { return };
    let cases: [(&str, &[&str], &str); 3] = [
        (SMOLLM2, &["blk.0.ffn_down.weight", "blk.0.attn_q.weight"], "token_embd.weight"),
        (QWEN25, &["blk.0.attn_q.weight", "blk.0.ffn_down.weight", "blk.0.attn_v.weight"], "token_embd.weight"),
        (GEMMA3, &["blk.0.attn_output.weight"], "token_embd.weight"),
    ];
    for (model, weights, embd) in cases {
        let Some(path) = test_model(model) else { continue };
        let file = GgufFile::open(&path).unwrap();
        for &name in weights {
            let wc = file.tensor(name).unwrap();
            let wg = wc.to_device(g).unwrap();
            let k = wc.dims()[1];
            for m in [1, 5] {
                let x = random(m * k, 500 + m as u64, 1.0);
                check_matmul(&format!("{model} {name} {:?}", wc.dtype()), &x, &wc, &wg, g);
            }
        }
        // The first 2048 rows of the table (uploading a whole vocabulary to a software device
        // is slow), and rows 1000.. of those as a view on the GPU.
        let table = file.tensor(embd).unwrap().narrow_rows(0, 2048).unwrap();
        let tg = table.to_device(g).unwrap();
        let what = format!("{model} {embd} {:?}", table.dtype());
        check_gather(&what, &table, &tg, &[0, 1, 2047, 100, 1000, 1]);
        let (vc, vg) = (table.narrow_rows(1000, 1048).unwrap(), tg.narrow_rows(1000, 1048).unwrap());
        check_gather(&format!("{what} rows 1000.."), &vc, &vg, &[0, 1047, 3]);
    }
}

#[test]
fn random_blocks_dequantize_to_sane_values() {
    // The generator itself: finite values of moderate size for every format.
    for dtype in QUANTIZED {
        let k = 256;
        let mut w = vec![0f32; 4 * k];
        dequantize(dtype, &random_blocks(dtype, 4 * k, 1), &mut w).unwrap();
        let peak = w.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(w.iter().all(|v| v.is_finite()) && peak > 0.01 && peak < 100.0, "{dtype:?}: peak {peak}");
    }
}

/// Where the adapter has subgroups (lavapipe does), the quantized matmul sums its 4 partials
/// per weight row with subgroup shuffles; the fallback uses workgroup memory and a barrier. Both
/// add in the same order: the same bits for every block type.
#[test]
fn subgroup_and_barrier_sums_give_the_same_bits() {
    let Some(g) = gpu() else { return };
    let with = ferrite_wgpu::WgpuBackend::new(None).unwrap();
    if !with.subgroups() {
        eprintln!("SKIPPED: {} has no subgroups of at least 4 lanes (only the fallback runs)", g.name());
        return;
    }
    let without = Device::new(std::sync::Arc::new(ferrite_wgpu::WgpuBackend::new(None).unwrap().without_subgroups()));
    let with = Device::new(std::sync::Arc::new(with));
    let (m, n, k) = (5, 37, 512);
    let x = random(m * k, 77, 1.0);
    for (i, dtype) in QUANTIZED.into_iter().enumerate() {
        let bytes = random_blocks(dtype, n * k, 80 + i as u64);
        let run = |d: &Device| {
            let w = Tensor::from_bytes(&bytes, dtype, [n, k], d).unwrap();
            Tensor::from_f32(&x, [m, k], d).unwrap().matmul(&w).unwrap().to_vec_f32().unwrap()
        };
        assert_eq!(run(&with), run(&without), "{dtype:?}");
    }
}

/// Where the adapter has shader-f16 (lavapipe does), f16 weights are read as WGSL `f16`; the
/// fallback unpacks them from u32 words. The conversion is exact: the same bits.
#[test]
fn native_f16_and_unpacked_f16_weights_give_the_same_bits() {
    let Some(g) = gpu() else { return };
    let with = ferrite_wgpu::WgpuBackend::new(None).unwrap();
    if !with.f16() {
        eprintln!("SKIPPED: {} has no shader-f16 (only the fallback runs)", g.name());
        return;
    }
    let without = Device::new(std::sync::Arc::new(ferrite_wgpu::WgpuBackend::new(None).unwrap().without_f16()));
    let with = Device::new(std::sync::Arc::new(with));
    let (m, n, k) = (3, 29, 96);
    let x = random(m * k, 90, 1.0);
    let w = Tensor::from_f32(&random(n * k, 91, 1.0), [n, k], &Device::cpu()).unwrap().cast(DType::F16).unwrap();
    let run = |d: &Device| {
        let wd = w.to_device(d).unwrap();
        Tensor::from_f32(&x, [m, k], d).unwrap().matmul(&wd).unwrap().to_vec_f32().unwrap()
    };
    let (a, b) = (run(&with), run(&without));
    assert_eq!(a, b);
    let want = Tensor::from_f32(&x, [m, k], &Device::cpu()).unwrap().matmul(&w).unwrap().to_vec_f32().unwrap();
    let worst = a.iter().zip(&want).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-4, "against the CPU: {worst}");
}
