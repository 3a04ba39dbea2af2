//! Every WGPU kernel against the CPU backend on random inputs, on whatever adapter wgpu picks
//! (lavapipe in CI). Tolerances, max absolute difference relative to the largest CPU value:
//! 1e-6 for exact ops (add, mul, scale, gather, casts' f16 values), 1e-5 for transcendental and
//! reduced ops (activations, norms, softmax, matmul), 2e-5 for rope (GPU `sin`/`cos`), 1e-4 for
//! GeGLU (GELU rounded to f16 as in ggml's table: one f16 ulp apart at most).
//!
//! Without an adapter the tests fail under `CI=true` (the README's test command installs
//! lavapipe) and print `SKIPPED` elsewhere.

#![allow(clippy::unwrap_used)]

use ferrite_tensor::{Activation, DType, Device, RopeConfig, RopeLayout, Tensor};
use half::f16;

mod common;

use common::{assert_close, gpu, pair, random};

#[test]
fn elementwise_ops_match_the_cpu() {
    let Some(g) = gpu() else { return };
    // 70_000 × 257 elements need more than 65535 workgroups of 256: the 2-D grid.
    for (rows, d) in [(3, 7), (1, 1), (70_000, 257)] {
        let n = rows * d;
        let (ac, ag) = pair(&random(n, 1, 4.0), &[rows, d], g);
        let (bc, bg) = pair(&random(n, 2, 4.0), &[rows, d], g);
        let (rc, rg) = pair(&random(d, 3, 4.0), &[d], g);
        assert_close("add", &ac.add(&bc).unwrap(), &ag.add(&bg).unwrap(), 1e-6);
        assert_close("add row", &ac.add(&rc).unwrap(), &ag.add(&rg).unwrap(), 1e-6);
        assert_close("mul row", &ac.mul(&rc).unwrap(), &ag.mul(&rg).unwrap(), 1e-6);
        assert_close("scale", &ac.scale(0.37).unwrap(), &ag.scale(0.37).unwrap(), 1e-6);
        for act in [Activation::Silu, Activation::Gelu, Activation::GeluTanh, Activation::QuickGelu] {
            assert_close(&format!("{act:?}"), &ac.activation(act).unwrap(), &ag.activation(act).unwrap(), 1e-5);
            let (c, gg) = (ac.gated_activation(&bc, act).unwrap(), ag.gated_activation(&bg, act).unwrap());
            // GeGLU rounds GELU to f16 as ggml's table does; GPU tanh may land one f16 ulp away.
            let tol = if act == Activation::GeluTanh { 1e-4 } else { 1e-5 };
            assert_close(&format!("gated {act:?}"), &c, &gg, tol);
        }
    }
    // A view (rows 1..3 of 4) reads from its offset.
    let (ac, ag) = pair(&random(4 * 6, 4, 2.0), &[4, 6], g);
    let (vc, vg) = (ac.narrow_rows(1, 2).unwrap(), ag.narrow_rows(1, 2).unwrap());
    assert_close("scale of a view", &vc.scale(2.0).unwrap(), &vg.scale(2.0).unwrap(), 1e-6);
    // Shapes that do not broadcast are errors, not results.
    let (_, bad) = pair(&random(5, 5, 1.0), &[5], g);
    assert!(vg.add(&bad).is_err());
}

#[test]
fn norms_and_softmax_match_the_cpu() {
    let Some(g) = gpu() else { return };
    for (rows, d) in [(1, 1), (5, 64), (9, 576), (2, 1000)] {
        let (xc, xg) = pair(&random(rows * d, 10, 3.0), &[rows, d], g);
        let (wc, wg) = pair(&random(d, 11, 1.5), &[d], g);
        let (bc, bg) = pair(&random(d, 12, 0.5), &[d], g);
        assert_close("rms_norm", &xc.rms_norm(&wc, 1e-6).unwrap(), &xg.rms_norm(&wg, 1e-6).unwrap(), 1e-5);
        let (lc, lg) = (xc.layer_norm(&wc, &bc, 1e-12).unwrap(), xg.layer_norm(&wg, &bg, 1e-12).unwrap());
        assert_close("layer_norm", &lc, &lg, 1e-5);
        assert_close("softmax", &xc.softmax().unwrap(), &xg.softmax().unwrap(), 1e-5);
    }
}

#[test]
fn rope_matches_the_cpu_in_both_layouts() {
    let Some(g) = gpu() else { return };
    let (t, h, d) = (7, 3, 64);
    let (xc, xg) = pair(&random(t * h * d, 20, 2.0), &[t, h, d], g);
    let positions: Vec<u32> = vec![0, 1, 2, 17, 100, 255, 511];
    for layout in [RopeLayout::Interleaved, RopeLayout::NeoX] {
        for dim in [64, 32] {
            let cfg = RopeConfig { theta: 10_000.0, dim, layout, freq_scale: 1.0 };
            let (c, gg) = (xc.rope(&positions, &cfg).unwrap(), xg.rope(&positions, &cfg).unwrap());
            assert_close(&format!("rope {layout:?} dim {dim}"), &c, &gg, 2e-5);
        }
    }
}

#[test]
fn gather_cast_and_float_matmul_match_the_cpu() {
    let Some(g) = gpu() else { return };
    let (vocab, d) = (50, 24);
    let table = random(vocab * d, 30, 1.0);
    let ids = [3u32, 0, 49, 3, 17];
    let (tc, tg) = pair(&table, &[vocab, d], g);
    assert_close("gather f32", &tc.embedding(&ids).unwrap(), &tg.embedding(&ids).unwrap(), 1e-6);
    let halves: Vec<f16> = table.iter().map(|&v| f16::from_f32(v)).collect();
    let hc = Tensor::from_f16(&halves, vec![vocab, d], &Device::cpu()).unwrap();
    let hg = hc.to_device(g).unwrap();
    assert_close("gather f16", &hc.embedding(&ids).unwrap(), &hg.embedding(&ids).unwrap(), 1e-6);
    let brains: Vec<half::bf16> = table.iter().map(|&v| half::bf16::from_f32(v)).collect();
    let bc = Tensor::from_bf16(&brains, vec![vocab, d], &Device::cpu()).unwrap();
    let bg = bc.to_device(g).unwrap();
    assert_close("gather bf16", &bc.embedding(&ids).unwrap(), &bg.embedding(&ids).unwrap(), 0.0);
    assert!(tg.embedding(&[50]).is_err(), "an id outside the table is an error");
    // Casts: f32 -> f16 equals the CPU's rounding on these values; f16 -> f32 is exact.
    let odd = &table[..d * 3 - 1];
    let (oc, og) = pair(odd, &[odd.len()], g);
    let (c16, g16) = (oc.cast(DType::F16).unwrap(), og.cast(DType::F16).unwrap());
    assert_eq!(g16.dtype(), DType::F16);
    assert_close("cast to f16 and back", &c16.cast(DType::F32).unwrap(), &g16.cast(DType::F32).unwrap(), 1e-6);
    // Matmul, decode and prefill shapes, f32, f16 and bf16 weights.
    for (m, k, n) in [(1, 64, 33), (5, 576, 40), (3, 2, 1)] {
        let (xc, xg) = pair(&random(m * k, 40, 1.0), &[m, k], g);
        let w = random(n * k, 41, 0.5);
        let (wc, wg) = pair(&w, &[n, k], g);
        assert_close("matmul f32", &xc.matmul(&wc).unwrap(), &xg.matmul(&wg).unwrap(), 1e-5);
        let wh: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
        let whc = Tensor::from_f16(&wh, vec![n, k], &Device::cpu()).unwrap();
        let whg = whc.to_device(g).unwrap();
        assert_close("matmul f16", &xc.matmul(&whc).unwrap(), &xg.matmul(&whg).unwrap(), 1e-5);
        let wb: Vec<half::bf16> = w.iter().map(|&v| half::bf16::from_f32(v)).collect();
        let wbc = Tensor::from_bf16(&wb, vec![n, k], &Device::cpu()).unwrap();
        let wbg = wbc.to_device(g).unwrap();
        assert_close("matmul bf16", &xc.matmul(&wbc).unwrap(), &xg.matmul(&wbg).unwrap(), 1e-5);
    }
}

#[test]
fn no_adapter_matching_a_name_is_a_clear_error() {
    if gpu().is_none() {
        return;
    }
    let err = ferrite_wgpu::device(Some("no-such-adapter-anywhere")).unwrap_err().to_string();
    assert!(err.contains("no adapter matches") && err.contains("adapters:"), "{err}");
}
