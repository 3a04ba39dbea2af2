//! The diffusion op set (conv2d, group_norm, upsample_nearest, rotary, concat, narrow,
//! modulate, gated_add, attention_dense) on the WGPU backend against the CPU backend, on
//! whatever adapter wgpu picks (lavapipe in CI). Tolerances, max absolute difference relative to
//! the largest CPU value: exact copies (upsample, concat, narrow) must be equal; 1e-6 for
//! modulate, gated_add and rotary; 1e-5 for the reductions (conv2d, whose sums run in another
//! order than the CPU GEMM; group_norm, whose statistics are f32 on the GPU and f64 on the CPU;
//! attention).
//!
//! Without an adapter the tests fail under `CI=true` and print `SKIPPED` elsewhere.

#![allow(clippy::unwrap_used)]

use ferrite_tensor::{Conv2dParams, DType, DenseAttention, Device, Error, RopeLayout, Tensor};
use half::{bf16, f16};

mod common;

use common::{assert_close, gpu, pair, random};

#[test]
fn conv2d_matches_the_cpu() {
    let Some(g) = gpu() else { return };
    // (n, h, w, c_in, c_out, k, stride, padding)
    for (n, h, w, ci, co, k, stride, padding) in [
        (1usize, 9usize, 7usize, 5usize, 6usize, 3usize, 1usize, 1usize),
        (2, 16, 12, 32, 17, 3, 1, 1),
        (2, 9, 8, 3, 4, 3, 2, 0),
        (1, 10, 11, 7, 5, 3, 2, 1),
        (2, 5, 3, 12, 9, 1, 1, 0),
        (1, 2, 2, 3, 2, 3, 1, 1),
        // Several 64-pixel x 64-channel workgroup tiles, partial in both directions.
        (1, 12, 12, 8, 70, 3, 1, 1),
    ] {
        let p = Conv2dParams { stride, padding };
        let (xc, xg) = pair(&random(n * h * w * ci, 1, 2.0), &[n, h, w, ci], g);
        let wv = random(co * k * k * ci, 2, 0.5);
        let (bc, bg) = pair(&random(co, 3, 1.0), &[co], g);
        let what = format!("conv2d {n}x{h}x{w}x{ci} -> {co}, {k}x{k} stride {stride} pad {padding}");
        let (wc, wg) = pair(&wv, &[co, k, k, ci], g);
        assert_close(&what, &xc.conv2d(&wc, Some(&bc), &p).unwrap(), &xg.conv2d(&wg, Some(&bg), &p).unwrap(), 1e-5);
        assert_close(&what, &xc.conv2d(&wc, None, &p).unwrap(), &xg.conv2d(&wg, None, &p).unwrap(), 1e-5);
        // f16 and bf16 weights, read in place.
        let dims = vec![co, k, k, ci];
        let h16: Vec<f16> = wv.iter().map(|&v| f16::from_f32(v)).collect();
        let b16: Vec<bf16> = wv.iter().map(|&v| bf16::from_f32(v)).collect();
        for wc in [
            Tensor::from_f16(&h16, dims.clone(), &Device::cpu()).unwrap(),
            Tensor::from_bf16(&b16, dims.clone(), &Device::cpu()).unwrap(),
        ] {
            let wg = wc.to_device(g).unwrap();
            let what = format!("{what} ({:?} weights)", wc.dtype());
            assert_close(&what, &xc.conv2d(&wc, Some(&bc), &p).unwrap(), &xg.conv2d(&wg, Some(&bg), &p).unwrap(), 1e-5);
        }
    }
    // An input that is a view at an offset (rows 1.. of a larger tensor).
    let (xc, xg) = pair(&random(3 * 4 * 4 * 2, 4, 1.0), &[3, 4 * 4 * 2], g);
    let (vc, vg) = (
        xc.narrow_rows(1, 2).unwrap().reshape(vec![2, 4, 4, 2]).unwrap(),
        xg.narrow_rows(1, 2).unwrap().reshape(vec![2, 4, 4, 2]).unwrap(),
    );
    let (wc, wg) = pair(&random(3 * 9 * 2, 5, 1.0), &[3, 3, 3, 2], g);
    let p = Conv2dParams { stride: 1, padding: 1 };
    assert_close("conv2d of a view", &vc.conv2d(&wc, None, &p).unwrap(), &vg.conv2d(&wg, None, &p).unwrap(), 1e-5);
    // Errors, not results.
    assert!(matches!(vg.conv2d(&wg, None, &Conv2dParams { stride: 0, padding: 1 }), Err(Error::Shape { .. })));
    let (_, bad) = pair(&random(3 * 9, 6, 1.0), &[3, 3, 3, 1], g);
    assert!(matches!(vg.conv2d(&bad, None, &p), Err(Error::Shape { .. })));
}

#[test]
fn group_norm_and_upsample_match_the_cpu() {
    let Some(g) = gpu() else { return };
    for (dims, groups) in
        [(vec![2usize, 5, 3, 64], 32usize), (vec![1, 7, 7, 12], 3), (vec![3, 6], 2), (vec![1, 33, 17, 32], 32)]
    {
        let c = dims[dims.len() - 1];
        let x: Vec<f32> = random(dims.iter().product(), 10, 1.0).iter().map(|v| v * 30.0 + 10.0).collect();
        let (xc, xg) = pair(&x, &dims, g);
        let (wc, wg) = pair(&random(c, 11, 1.5), &[c], g);
        let (bc, bg) = pair(&random(c, 12, 0.5), &[c], g);
        let (nc, ng) = (xc.group_norm(groups, &wc, &bc, 1e-6).unwrap(), xg.group_norm(groups, &wg, &bg, 1e-6).unwrap());
        assert_close(&format!("group_norm {dims:?} / {groups}"), &nc, &ng, 1e-5);
        assert!(matches!(xg.group_norm(5, &wg, &bg, 1e-6), Err(Error::Shape { .. })));
    }
    for (n, h, w, c, f) in [(2usize, 3usize, 5usize, 3usize, 2usize), (1, 1, 1, 4, 3), (1, 40, 33, 64, 2)] {
        let (xc, xg) = pair(&random(n * h * w * c, 13, 1.0), &[n, h, w, c], g);
        let (uc, ug) = (xc.upsample_nearest(f).unwrap(), xg.upsample_nearest(f).unwrap());
        assert_eq!(ug.dims(), uc.dims());
        assert_eq!(ug.to_vec_f32().unwrap(), uc.to_vec_f32().unwrap(), "upsample {n}x{h}x{w}x{c} by {f}");
        assert!(xg.upsample_nearest(0).is_err());
    }
}

#[test]
fn rotary_modulate_and_gated_add_match_the_cpu() {
    let Some(g) = gpu() else { return };
    for (t, h, d) in [(5usize, 3usize, 8usize), (300, 4, 128)] {
        let (xc, xg) = pair(&random(t * h * d, 20, 2.0), &[t, h, d], g);
        let ang = random(t * d / 2, 21, 3.0);
        let (cc, cg) = pair(&ang.iter().map(|a| a.cos()).collect::<Vec<_>>(), &[t, d / 2], g);
        let (sc, sg) = pair(&ang.iter().map(|a| a.sin()).collect::<Vec<_>>(), &[t, d / 2], g);
        for layout in [RopeLayout::Interleaved, RopeLayout::NeoX] {
            let (rc, rg) = (xc.rotary(&cc, &sc, layout).unwrap(), xg.rotary(&cg, &sg, layout).unwrap());
            assert_close(&format!("rotary {layout:?} {t}x{h}x{d}"), &rc, &rg, 1e-6);
        }
        assert!(matches!(xg.rotary(&xg, &sg, RopeLayout::NeoX), Err(Error::Shape { .. })));
    }
    for (n, t, d) in [(2usize, 5usize, 7usize), (3, 100, 300)] {
        let (xc, xg) = pair(&random(n * t * d, 22, 2.0), &[n, t, d], g);
        let (yc, yg) = pair(&random(n * t * d, 23, 2.0), &[n, t, d], g);
        let (ac, ag) = pair(&random(n * d, 24, 1.0), &[n, d], g);
        let (bc, bg) = pair(&random(n * d, 25, 1.0), &[n, d], g);
        assert_close("modulate", &xc.modulate(&ac, &bc).unwrap(), &xg.modulate(&ag, &bg).unwrap(), 1e-6);
        assert_close("gated_add", &xc.gated_add(&ac, &yc).unwrap(), &xg.gated_add(&ag, &yg).unwrap(), 1e-6);
        assert!(matches!(xg.modulate(&yg, &bg), Err(Error::Shape { .. })));
        assert!(matches!(xg.gated_add(&ag, &bg), Err(Error::Shape { .. })));
    }
}

#[test]
fn concat_and_narrow_match_the_cpu() {
    let Some(g) = gpu() else { return };
    let dims = [2usize, 3, 5, 4];
    for axis in 0..4 {
        let mut other = dims;
        other[axis] = 3;
        let (ac, ag) = pair(&random(dims.iter().product(), 30, 1.0), &dims, g);
        let (bc, bg) = pair(&random(other.iter().product(), 31, 1.0), &other, g);
        let (cc, cg) =
            (Tensor::concat(&[&ac, &bc, &ac], axis).unwrap(), Tensor::concat(&[&ag, &bg, &ag], axis).unwrap());
        assert_eq!(cg.dims(), cc.dims());
        assert_eq!(cg.to_vec_f32().unwrap(), cc.to_vec_f32().unwrap(), "concat on axis {axis}");
        let (nc, ng) = (cc.narrow(axis, 1, 4).unwrap(), cg.narrow(axis, 1, 4).unwrap());
        assert_eq!(ng.dims(), nc.dims());
        assert_eq!(ng.to_vec_f32().unwrap(), nc.to_vec_f32().unwrap(), "narrow on axis {axis}");
    }
    // A narrowed view as input; errors.
    let (xc, xg) = pair(&random(6 * 8, 32, 1.0), &[6, 8], g);
    let (vc, vg) = (xc.narrow_rows(2, 3).unwrap(), xg.narrow_rows(2, 3).unwrap());
    assert_eq!(vg.narrow(1, 3, 2).unwrap().to_vec_f32().unwrap(), vc.narrow(1, 3, 2).unwrap().to_vec_f32().unwrap());
    assert!(matches!(vg.narrow(1, 7, 2), Err(Error::Shape { .. })));
    assert!(matches!(Tensor::concat(&[&vg, &xg], 1), Err(Error::Shape { .. })));
    let h = xg.cast(DType::F16).unwrap();
    assert!(matches!(h.narrow(0, 0, 1), Err(Error::UnsupportedDType { .. })));
}

#[test]
fn attention_dense_matches_the_cpu() {
    let Some(g) = gpu() else { return };
    let (lens, hq, hkv, d) = ([6usize, 40, 1], 4usize, 2usize, 16usize);
    let n: usize = lens.iter().sum();
    let (qc, qg) = pair(&random(n * hq * d, 40, 1.0), &[n, hq, d], g);
    let (kc, kg) = pair(&random(n * hkv * d, 41, 1.0), &[n, hkv, d], g);
    let (vc, vg) = pair(&random(n * hkv * d, 42, 1.0), &[n, hkv, d], g);
    let (bc, bg) = pair(&random(hq * 40 * 40, 43, 2.0), &[hq, 40, 40], g);
    for (causal, bias) in [(false, false), (true, false), (false, true), (true, true)] {
        let oc = DenseAttention { scale: 0.25, causal, bias: bias.then_some(&bc) };
        let og = DenseAttention { scale: 0.25, causal, bias: bias.then_some(&bg) };
        let (c, gg) =
            (qc.attention_dense(&kc, &vc, &lens, &oc).unwrap(), qg.attention_dense(&kg, &vg, &lens, &og).unwrap());
        assert_eq!(gg.device().name(), g.name(), "the result stays on the GPU");
        assert_close(&format!("attention_dense causal={causal} bias={bias}"), &c, &gg, 1e-5);
    }
    // attention_full is the same kernel without options; 130 keys span three chunks of 64.
    let lens = [130usize, 7];
    let (qc, qg) = pair(&random(137 * 2 * 32, 44, 1.0), &[137, 2, 32], g);
    let (kc, kg) = pair(&random(137 * 2 * 32, 45, 1.0), &[137, 2, 32], g);
    let (c, gg) = (qc.attention_full(&kc, &kc, &lens, 0.2).unwrap(), qg.attention_full(&kg, &kg, &lens, 0.2).unwrap());
    assert_close("attention_full", &c, &gg, 1e-5);
    // One head of 512 (the VAE's mid block: the kernel's widest), and one of 640 (host path).
    for d in [512usize, 640] {
        let (qc, qg) = pair(&random(70 * d, 46, 0.2), &[70, 1, d], g);
        let (kc, kg) = pair(&random(70 * d, 47, 0.2), &[70, 1, d], g);
        let (vc, vg) = pair(&random(70 * d, 48, 1.0), &[70, 1, d], g);
        let o = DenseAttention { scale: 1.0 / (d as f32).sqrt(), causal: false, bias: None };
        let (c, gg) =
            (qc.attention_dense(&kc, &vc, &[70], &o).unwrap(), qg.attention_dense(&kg, &vg, &[70], &o).unwrap());
        assert_close(&format!("attention_dense head_dim {d}"), &c, &gg, 1e-5);
    }
    // Shapes are checked as on the CPU.
    let none = DenseAttention { scale: 1.0, causal: true, bias: None };
    assert!(matches!(qg.attention_dense(&kg, &kg, &[3], &none), Err(Error::Shape { .. })));
}
