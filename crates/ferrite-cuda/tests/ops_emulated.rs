//! The CUDA backend's ops, run on the emulator of `kernels/emu/` (the kernels of `kernels/`
//! compiled as host C++) and, when the machine has one, on a real GPU, against the CPU backend
//! on random inputs.
//!
//! Tolerances (max |cuda - cpu| over the largest CPU magnitude): 1e-5 for f32 ops (summation
//! order differs), 1e-3 for GeGLU (the CPU's f16 GELU table), 2e-3 for f16 KV caches, 1e-6 for
//! gathers. The quantized matmul rounds
//! activations to q8_1 blocks, the CPU to q8_0/q8_1/q8_K: both are compared with an f64
//! product over the exactly dequantized weights, each within 2e-2.

#![allow(clippy::unwrap_used)]

use ferrite_tensor::quant::dequantize;
use ferrite_tensor::{Activation, AttentionParams, AttentionSeq, DType, Device, RopeConfig, RopeLayout, Tensor};
use half::f16;
use rand::{rngs::StdRng, Rng, SeedableRng};

mod common;

use common::{assert_close, backends, devices, pair, random};

const F32_TOL: f32 = 1e-5;

#[test]
fn elementwise_ops_match_the_cpu() {
    for dev in devices() {
        let shape = [7, 300];
        let (a_cpu, a) = pair(&random(2100, 1, 3.0), &shape, dev);
        let (b_cpu, b) = pair(&random(2100, 2, 3.0), &shape, dev);
        let (r_cpu, r) = pair(&random(300, 3, 1.0), &[300], dev);
        assert_close("add", &a_cpu.add(&b_cpu).unwrap(), &a.add(&b).unwrap(), F32_TOL);
        assert_close("add row", &a_cpu.add(&r_cpu).unwrap(), &a.add(&r).unwrap(), F32_TOL);
        assert_close("mul row", &a_cpu.mul(&r_cpu).unwrap(), &a.mul(&r).unwrap(), F32_TOL);
        assert_close("scale", &a_cpu.scale(0.37).unwrap(), &a.scale(0.37).unwrap(), F32_TOL);
        for act in [Activation::Silu, Activation::Gelu, Activation::GeluTanh, Activation::QuickGelu] {
            assert_close(&format!("{act:?}"), &a_cpu.activation(act).unwrap(), &a.activation(act).unwrap(), 1e-5);
            let want = a_cpu.gated_activation(&b_cpu, act).unwrap();
            // The CPU's GeGLU reads GELU from ggml's f16 table (2^-11 relative steps); the kernel
            // computes it in f32, as llama.cpp's CUDA backend does.
            let tol = if act == Activation::GeluTanh { 1e-3 } else { 1e-5 };
            assert_close(&format!("gated {act:?}"), &want, &a.gated_activation(&b, act).unwrap(), tol);
        }
        assert!(a.add(&Tensor::from_f32(&[1.0; 7], [7], dev).unwrap()).is_err(), "a bad broadcast is an error");
    }
}

#[test]
fn casts_round_like_the_cpu() {
    for dev in devices() {
        let mut data = random(1000, 4, 70000.0);
        data.extend([0.0, -0.0, 1e-8, -6e-5, 65504.0, 65520.0, f32::INFINITY, 3.0e38]);
        let (cpu, gpu) = pair(&data, &[data.len()], dev);
        for dtype in [DType::F16, DType::BF16] {
            let want = cpu.cast(dtype).unwrap();
            let got = gpu.cast(dtype).unwrap();
            assert_eq!(want.to_bytes().unwrap(), got.to_bytes().unwrap(), "f32 -> {dtype:?}");
            let back = got.cast(DType::F32).unwrap();
            assert_eq!(
                want.cast(DType::F32).unwrap().to_bytes().unwrap(),
                back.to_bytes().unwrap(),
                "{dtype:?} -> f32"
            );
        }
    }
}

#[test]
fn norms_and_softmax_match_the_cpu() {
    for dev in devices() {
        for d in [64, 576, 1000] {
            let (x_cpu, x) = pair(&random(5 * d, 5, 4.0), &[5, d], dev);
            let (w_cpu, w) = pair(&random(d, 6, 1.0), &[d], dev);
            let (b_cpu, b) = pair(&random(d, 7, 1.0), &[d], dev);
            assert_close("rms_norm", &x_cpu.rms_norm(&w_cpu, 1e-6).unwrap(), &x.rms_norm(&w, 1e-6).unwrap(), F32_TOL);
            let want = x_cpu.layer_norm(&w_cpu, &b_cpu, 1e-5).unwrap();
            assert_close("layer_norm", &want, &x.layer_norm(&w, &b, 1e-5).unwrap(), F32_TOL);
            assert_close("softmax", &x_cpu.softmax().unwrap(), &x.softmax().unwrap(), F32_TOL);
        }
    }
}

#[test]
fn rope_matches_the_cpu_in_both_layouts() {
    for dev in devices() {
        let (t, h, d) = (5, 3, 64);
        let (x_cpu, x) = pair(&random(t * h * d, 8, 2.0), &[t, h, d], dev);
        let positions = [0, 1, 7, 300, 4095];
        for layout in [RopeLayout::Interleaved, RopeLayout::NeoX] {
            for dim in [64, 32] {
                let cfg = RopeConfig { theta: 10000.0, dim, layout, freq_scale: 1.0 };
                let want = x_cpu.rope(&positions, &cfg).unwrap();
                assert_close(&format!("rope {layout:?} {dim}"), &want, &x.rope(&positions, &cfg).unwrap(), 1e-5);
            }
        }
    }
}

#[test]
fn float_matmul_matches_the_cpu_for_every_float_dtype() {
    for dev in devices() {
        let (m, n, k) = (3, 37, 96);
        let (x_cpu, x) = pair(&random(m * k, 9, 1.0), &[m, k], dev);
        let w32 = Tensor::from_f32(&random(n * k, 10, 1.0), [n, k], &Device::cpu()).unwrap();
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let w_cpu = w32.cast(dtype).unwrap();
            let w = w_cpu.to_device(dev).unwrap();
            assert_close(&format!("matmul {dtype:?}"), &x_cpu.matmul(&w_cpu).unwrap(), &x.matmul(&w).unwrap(), 1e-5);
        }
    }
}

const QUANTIZED: [DType; 7] =
    [DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K];

/// `numel` weights of `dtype` as random blocks with sane f16 scales (as the WGPU tests make).
fn random_blocks(dtype: DType, numel: usize, seed: u64) -> Vec<u8> {
    let (fields, lo, hi): (&[usize], f32, f32) = match dtype {
        DType::Q4_0 | DType::Q5_0 | DType::Q8_0 => (&[0], 0.002, 0.02),
        DType::Q4_1 => (&[0, 2], 0.002, 0.1),
        DType::Q4_K | DType::Q5_K => (&[0, 2], 0.0005, 0.003),
        DType::Q6_K => (&[208], 0.0005, 0.003),
        other => panic!("{other:?} is not quantized"),
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut bytes: Vec<u8> = (0..dtype.bytes_for(numel).unwrap()).map(|_| rng.gen()).collect();
    for block in bytes.chunks_exact_mut(dtype.type_size()) {
        for &at in fields {
            let v = rng.gen_range(lo..hi) * if rng.gen::<bool>() { 1.0 } else { -1.0 };
            block[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
        }
    }
    bytes
}

/// max |got - want| / max |want| against the f64 product over the dequantized weights.
fn error(got: &Tensor, x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> f64 {
    let got = got.to_vec_f32().unwrap();
    let mut worst = 0f64;
    let mut peak = 1e-9f64;
    for r in 0..m {
        for j in 0..n {
            let want: f64 =
                x[r * k..(r + 1) * k].iter().zip(&w[j * k..(j + 1) * k]).map(|(&a, &b)| a as f64 * b as f64).sum();
            peak = peak.max(want.abs());
            worst = worst.max((got[r * n + j] as f64 - want).abs());
        }
    }
    worst / peak
}

#[test]
fn quantized_matmul_and_gather_match_the_dequantized_weights_for_every_block_type() {
    for dev in devices() {
        // 9 activation rows take the tiled kernel (more than 8 rows; 13 weight rows, a partial
        // tile), their first 8 the row kernel (13 weight rows cross its 4-row blocks).
        let (m, n, k) = (9, 13, 512);
        let x = random(m * k, 11, 1.0);
        let (x_cpu, x_dev) = pair(&x, &[m, k], dev);
        for (i, dtype) in QUANTIZED.into_iter().enumerate() {
            let bytes = random_blocks(dtype, n * k, 20 + i as u64);
            let w_cpu = Tensor::from_bytes(&bytes, dtype, [n, k], &Device::cpu()).unwrap();
            let w_dev = w_cpu.to_device(dev).unwrap();
            let mut w = vec![0f32; n * k];
            dequantize(dtype, &bytes, &mut w).unwrap();
            let got = x_dev.matmul(&w_dev).unwrap();
            let e_cuda = error(&got, &x, &w, m, n, k);
            let e_cpu = error(&x_cpu.matmul(&w_cpu).unwrap(), &x, &w, m, n, k);
            eprintln!("{dtype:?}: cuda (q8_1) error {e_cuda:.2e}, cpu error {e_cpu:.2e}");
            assert!(e_cuda <= 2e-2, "{dtype:?}: error {e_cuda:e}");
            assert!(e_cpu <= 2e-2, "{dtype:?}: the CPU's error {e_cpu:e}");
            // One row alone gives the same values as within a batch of the row kernel (no
            // cross-row effects); the tiled kernel sums in another order (see the next test).
            let eight = x_dev.narrow_rows(0, 8).unwrap().matmul(&w_dev).unwrap();
            assert!(error(&eight, &x, &w, 8, n, k) <= 2e-2, "{dtype:?}: 8 rows");
            let one = x_dev.narrow_rows(4, 1).unwrap().matmul(&w_dev).unwrap().to_vec_f32().unwrap();
            assert_eq!(one, eight.to_vec_f32().unwrap()[4 * n..5 * n], "{dtype:?}: row 4 alone");

            let ids = [3u32, 0, 12, 3];
            let want = w_cpu.embedding(&ids).unwrap();
            assert_close(&format!("gather {dtype:?}"), &want, &w_dev.embedding(&ids).unwrap(), 1e-6);
        }
    }
}

/// `x [m, k] · w [n, k]ᵀ` in f64 over the dequantized weights, row-major `[m, n]`.
fn product_f64(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f64> {
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
fn relative<T: Copy + Into<f64>>(got: &[f32], want: &[T]) -> f64 {
    assert_eq!(got.len(), want.len());
    let peak = want.iter().fold(1e-9f64, |p, &v| p.max(v.into().abs()));
    let worst = got.iter().zip(want).fold(0f64, |e, (&g, &v)| e.max((g as f64 - v.into()).abs()));
    worst / peak
}

/// More than 8 activation rows take `matmul_q8_1_tiled` (64 x 64 output tiles through shared
/// memory). For every block type, k of 512 and 768 (and 576 for the 32-value blocks) and m of 9,
/// 40 and 77 rows by n = 70 weight rows (partial tiles on both sides): within 2e-2 of the f64 product over the dequantized
/// weights (the q8_1 rounding of the activations, as the row kernel), within 1e-5 (relative to
/// the largest value) of `matmul_q8_1` on the same q8_1 rows (taken 8 at a time: only the
/// summation order differs), and each row exactly the same in every batch (no cross-row effects).
#[test]
fn tiled_quantized_matmul_matches_the_row_kernel_and_the_dequantized_product() {
    for dev in devices() {
        let (rows_max, n) = (77, 70);
        let (mut worst_rows, mut worst_f64) = (0f64, 0f64);
        // k = 576 (SmolLM2's width, legacy blocks only): the last 256-value K-slice is partial.
        for k in [512, 768, 576] {
            let x = random(rows_max * k, 60 + k as u64, 1.0);
            let x_dev = Tensor::from_f32(&x, [rows_max, k], dev).unwrap();
            for (i, dtype) in QUANTIZED.into_iter().enumerate() {
                if !k.is_multiple_of(dtype.block_size()) {
                    continue;
                }
                let bytes = random_blocks(dtype, n * k, 80 + i as u64 + k as u64);
                let w_dev = Tensor::from_bytes(&bytes, dtype, [n, k], dev).unwrap();
                let mut w = vec![0f32; n * k];
                dequantize(dtype, &bytes, &mut w).unwrap();
                let want = product_f64(&x, &w, rows_max, n, k);
                let mut by_rows = Vec::with_capacity(rows_max * n);
                for r0 in (0..rows_max).step_by(8) {
                    let part = x_dev.narrow_rows(r0, 8.min(rows_max - r0)).unwrap().matmul(&w_dev).unwrap();
                    by_rows.extend(part.to_vec_f32().unwrap());
                }
                let all = x_dev.matmul(&w_dev).unwrap().to_vec_f32().unwrap();
                for m in [9, 40, rows_max] {
                    let got = x_dev.narrow_rows(0, m).unwrap().matmul(&w_dev).unwrap().to_vec_f32().unwrap();
                    let e_f64 = relative(&got, &want[..m * n]);
                    let e_rows = relative(&got, &by_rows[..m * n]);
                    eprintln!("{dtype:?} k {k} m {m}: tiled vs f64 {e_f64:.2e}, vs matmul_q8_1 {e_rows:.2e}");
                    assert!(e_f64 <= 2e-2, "{dtype:?} k {k} m {m}: error {e_f64:e} against the f64 product");
                    assert!(e_rows <= 1e-5, "{dtype:?} k {k} m {m}: {e_rows:e} off matmul_q8_1");
                    assert_eq!(got, all[..m * n], "{dtype:?} k {k}: the first {m} rows alone");
                    worst_rows = worst_rows.max(e_rows);
                    worst_f64 = worst_f64.max(e_f64);
                }
            }
        }
        eprintln!("tiled: worst {worst_f64:.2e} against the f64 product, {worst_rows:.2e} against matmul_q8_1");
    }
}

#[test]
fn matmul_many_shares_the_quantized_activations() {
    for dev in devices() {
        let (m, n, k) = (2, 8, 256);
        let (_, x) = pair(&random(m * k, 12, 1.0), &[m, k], dev);
        let w1 = Tensor::from_bytes(&random_blocks(DType::Q8_0, n * k, 30), DType::Q8_0, [n, k], dev).unwrap();
        let w2 = Tensor::from_bytes(&random_blocks(DType::Q4_K, n * k, 31), DType::Q4_K, [n, k], dev).unwrap();
        let many = x.matmul_many(&[&w1, &w2]).unwrap();
        assert_eq!(many[0].to_vec_f32().unwrap(), x.matmul(&w1).unwrap().to_vec_f32().unwrap());
        assert_eq!(many[1].to_vec_f32().unwrap(), x.matmul(&w2).unwrap().to_vec_f32().unwrap());
    }
}

#[test]
fn float_gathers_match_the_cpu() {
    for dev in devices() {
        let table = Tensor::from_f32(&random(50 * 24, 13, 2.0), [50, 24], &Device::cpu()).unwrap();
        let ids = [49u32, 0, 7, 7];
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let t = table.cast(dtype).unwrap();
            assert_close(
                &format!("gather {dtype:?}"),
                &t.embedding(&ids).unwrap(),
                &t.to_device(dev).unwrap().embedding(&ids).unwrap(),
                0.0,
            );
        }
        assert!(table.to_device(dev).unwrap().embedding(&[50]).is_err(), "an id past the table is an error");
    }
}

/// Paged attention over a shuffled block table, two sequences (prefill and decode) and a row of
/// none, GQA, sliding window and softcap, f32 and f16 caches.
#[test]
fn paged_attention_matches_the_cpu() {
    for dev in devices() {
        let (hq, hk, d, bs, slots) = (6, 2, 64, 4, 64);
        let seqs = vec![
            AttentionSeq { q_start: 0, q_len: 5, kv_len: 11, block_table: vec![9, 2, 14] },
            AttentionSeq { q_start: 5, q_len: 1, kv_len: 7, block_table: vec![0, 5] },
        ];
        // Row 6 belongs to no sequence: zeros, as on the CPU.
        let tokens = 7;
        let (q_cpu, q) = pair(&random(tokens * hq * d, 14, 1.0), &[tokens, hq, d], dev);
        for cache_dtype in [DType::F32, DType::F16] {
            let cpu = Device::cpu();
            let kc_cpu = Tensor::zeros([slots, hk, d], cache_dtype, &cpu).unwrap();
            let vc_cpu = Tensor::zeros([slots, hk, d], cache_dtype, &cpu).unwrap();
            let kc = Tensor::zeros([slots, hk, d], cache_dtype, dev).unwrap();
            let vc = Tensor::zeros([slots, hk, d], cache_dtype, dev).unwrap();
            for (i, s) in seqs.iter().enumerate() {
                let slot_ids: Vec<u32> = (0..s.kv_len).map(|p| s.slot(p, bs) as u32).collect();
                let n = s.kv_len * hk * d;
                let (k_cpu, k) = pair(&random(n, 40 + i as u64, 1.0), &[s.kv_len, hk, d], dev);
                let (v_cpu, v) = pair(&random(n, 50 + i as u64, 1.0), &[s.kv_len, hk, d], dev);
                kc_cpu.write_kv(&k_cpu, &slot_ids).unwrap();
                vc_cpu.write_kv(&v_cpu, &slot_ids).unwrap();
                kc.write_kv(&k, &slot_ids).unwrap();
                vc.write_kv(&v, &slot_ids).unwrap();
            }
            assert_eq!(kc_cpu.to_bytes().unwrap(), kc.to_bytes().unwrap(), "write_kv {cache_dtype:?}");
            let tol = if cache_dtype == DType::F16 { 2e-3 } else { F32_TOL };
            for (window, softcap) in [(None, None), (Some(3), None), (None, Some(1.5))] {
                let p = AttentionParams { scale: 0.125, block_size: bs, sliding_window: window, softcap };
                let want = q_cpu.attention(&kc_cpu, &vc_cpu, &seqs, &p).unwrap();
                let got = q.attention(&kc, &vc, &seqs, &p).unwrap();
                assert_close(
                    &format!("attention {cache_dtype:?} window {window:?} softcap {softcap:?}"),
                    &want,
                    &got,
                    tol,
                );
            }
        }
    }
}

#[test]
fn argmax_reads_back_only_the_indices() {
    for (dev, cuda) in backends() {
        let mut x = random(3 * 1000, 15, 1.0);
        x[17] = 5.0;
        x[1000 + 999] = 5.0;
        x[2000 + 3] = 5.0;
        x[2000 + 500] = 5.0; // a tie: the lowest index wins
        let t = Tensor::from_f32(&x, [3, 1000], dev).unwrap();
        assert_eq!(cuda.argmax(&t).unwrap(), vec![17, 999, 3]);
    }
}
