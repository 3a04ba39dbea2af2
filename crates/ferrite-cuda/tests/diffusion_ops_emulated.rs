//! The diffusion op set (conv2d, group_norm, upsample_nearest, rotary, concat, narrow,
//! modulate, gated_add, attention_dense / attention_full) of the CUDA backend, run on the
//! emulator of `kernels/emu/` and, when the machine has one, on a real GPU, against the CPU
//! backend on random inputs.
//!
//! Tolerances, max |cuda - cpu| over the largest CPU magnitude:
//! * exact (bit for bit): upsample_nearest, concat and narrow (copies), and rotary, modulate and
//!   gated_add, whose kernels round every product on its own as the CPU does;
//! * 1e-5: conv2d (the implicit GEMM sums in another order than the CPU's tiled GEMM),
//!   group_norm (f32 statistics per chunk, merged, where the CPU uses f64), attention_dense
//!   (online softmax over 128-key chunks, against the CPU's blocked GEMMs).
//!
//! Each comparison prints its measured error. Shapes are small: the emulator runs every CUDA
//! thread as a coroutine. Without a C++ compiler the tests fail under `CI=true` and print
//! `SKIPPED` elsewhere.

#![allow(clippy::unwrap_used)]

use ferrite_tensor::{Conv2dParams, DType, DenseAttention, Device, Error, RopeLayout, Tensor};
use half::{bf16, f16};

mod common;

use common::{devices, pair, random};

/// Asserts that max |cpu - got| <= tol · max |cpu| (shapes equal, `got` still on the device)
/// and prints the measured relative error.
fn check(what: &str, cpu: &Tensor, got: &Tensor, tol: f32) {
    assert_eq!(cpu.dims(), got.dims(), "{what}: shapes");
    assert!(got.device().name().starts_with("cuda"), "{what}: the result stays on the device");
    let (a, b) = (cpu.to_vec_f32().unwrap(), got.to_vec_f32().unwrap());
    let peak = a.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(!b.iter().any(|v| v.is_nan()) || a.iter().any(|v| v.is_nan()), "{what}: NaN");
    eprintln!("{what}: max |cpu - cuda| / max |cpu| = {:.2e}", worst / peak);
    assert!(worst <= tol * peak, "{what}: max |cpu - cuda| = {worst:e}, over {tol:e} x {peak}");
}

/// Bit-for-bit equality.
fn check_exact(what: &str, cpu: &Tensor, got: &Tensor) {
    assert_eq!(cpu.dims(), got.dims(), "{what}: shapes");
    assert!(got.device().name().starts_with("cuda"), "{what}: the result stays on the device");
    assert_eq!(cpu.to_bytes().unwrap(), got.to_bytes().unwrap(), "{what}");
    eprintln!("{what}: identical");
}

#[test]
fn conv2d_matches_the_cpu() {
    for dev in devices() {
        // (n, h, w, c_in, c_out, k, stride, padding)
        for (n, h, w, ci, co, k, stride, padding) in [
            (1usize, 9usize, 7usize, 5usize, 6usize, 3usize, 1usize, 1usize),
            (2, 16, 12, 32, 17, 3, 1, 1),
            (2, 9, 8, 3, 4, 3, 2, 0),
            (1, 10, 11, 7, 5, 3, 2, 1),
            (2, 5, 3, 12, 9, 1, 1, 0),
            (1, 2, 2, 3, 2, 3, 1, 1),
            // Several 64-pixel x 64-channel tiles, partial in both directions.
            (1, 12, 12, 8, 70, 3, 1, 1),
        ] {
            let p = Conv2dParams { stride, padding };
            let (xc, xg) = pair(&random(n * h * w * ci, 1, 2.0), &[n, h, w, ci], dev);
            let wv = random(co * k * k * ci, 2, 0.5);
            let (bc, bg) = pair(&random(co, 3, 1.0), &[co], dev);
            let what = format!("conv2d {n}x{h}x{w}x{ci} -> {co}, {k}x{k} stride {stride} pad {padding}");
            let (wc, wg) = pair(&wv, &[co, k, k, ci], dev);
            check(&what, &xc.conv2d(&wc, Some(&bc), &p).unwrap(), &xg.conv2d(&wg, Some(&bg), &p).unwrap(), 1e-5);
            check(
                &format!("{what} no bias"),
                &xc.conv2d(&wc, None, &p).unwrap(),
                &xg.conv2d(&wg, None, &p).unwrap(),
                1e-5,
            );
            // f16 and bf16 weights, read in place.
            let dims = vec![co, k, k, ci];
            let h16: Vec<f16> = wv.iter().map(|&v| f16::from_f32(v)).collect();
            let b16: Vec<bf16> = wv.iter().map(|&v| bf16::from_f32(v)).collect();
            for wc in [
                Tensor::from_f16(&h16, dims.clone(), &Device::cpu()).unwrap(),
                Tensor::from_bf16(&b16, dims.clone(), &Device::cpu()).unwrap(),
            ] {
                let wg = wc.to_device(dev).unwrap();
                let what = format!("{what} ({:?} weights)", wc.dtype());
                check(&what, &xc.conv2d(&wc, Some(&bc), &p).unwrap(), &xg.conv2d(&wg, Some(&bg), &p).unwrap(), 1e-5);
            }
        }
        // An input that is a view at an offset (rows 1.. of a larger tensor).
        let (xc, xg) = pair(&random(3 * 4 * 4 * 2, 4, 1.0), &[3, 4 * 4 * 2], dev);
        let (vc, vg) = (
            xc.narrow_rows(1, 2).unwrap().reshape(vec![2, 4, 4, 2]).unwrap(),
            xg.narrow_rows(1, 2).unwrap().reshape(vec![2, 4, 4, 2]).unwrap(),
        );
        let (wc, wg) = pair(&random(3 * 9 * 2, 5, 1.0), &[3, 3, 3, 2], dev);
        let p = Conv2dParams { stride: 1, padding: 1 };
        check("conv2d of a view", &vc.conv2d(&wc, None, &p).unwrap(), &vg.conv2d(&wg, None, &p).unwrap(), 1e-5);
        // Errors, not results.
        assert!(matches!(vg.conv2d(&wg, None, &Conv2dParams { stride: 0, padding: 1 }), Err(Error::Shape { .. })));
        let (_, bad) = pair(&random(3 * 9, 6, 1.0), &[3, 3, 3, 1], dev);
        assert!(matches!(vg.conv2d(&bad, None, &p), Err(Error::Shape { .. })));
        let (_, bias4) = pair(&[0.0; 4], &[4], dev);
        assert!(matches!(vg.conv2d(&wg, Some(&bias4), &p), Err(Error::Shape { .. })));
        let q8 = Tensor::from_bytes(&[0u8; 34 * 3], DType::Q8_0, vec![3, 32], dev).unwrap();
        assert!(matches!(vg.conv2d(&q8, None, &p), Err(Error::UnsupportedDType { .. })));
    }
}

#[test]
fn group_norm_matches_the_cpu() {
    for dev in devices() {
        for (dims, groups) in [
            (vec![2usize, 5, 3, 64], 32usize),
            (vec![1, 7, 7, 12], 3),
            (vec![3, 6], 2),
            (vec![1, 33, 17, 32], 32),
            // Several chunks of positions per (sample, group): 4 groups of 1024 positions
            // (4 channels per group), and 2 chunks of 2048 + 202 positions (2 channels per group).
            (vec![1, 64, 64, 8], 2),
            (vec![2, 45, 50, 4], 2),
        ] {
            let c = dims[dims.len() - 1];
            let x: Vec<f32> = random(dims.iter().product(), 10, 1.0).iter().map(|v| v * 30.0 + 10.0).collect();
            let (xc, xg) = pair(&x, &dims, dev);
            let (wc, wg) = pair(&random(c, 11, 1.5), &[c], dev);
            let (bc, bg) = pair(&random(c, 12, 0.5), &[c], dev);
            let (nc, ng) =
                (xc.group_norm(groups, &wc, &bc, 1e-6).unwrap(), xg.group_norm(groups, &wg, &bg, 1e-6).unwrap());
            check(&format!("group_norm {dims:?} / {groups}"), &nc, &ng, 1e-5);
            assert!(matches!(xg.group_norm(5, &wg, &bg, 1e-6), Err(Error::Shape { .. })));
            assert!(matches!(xg.group_norm(0, &wg, &bg, 1e-6), Err(Error::Shape { .. })));
        }
        let (_, x1) = pair(&[1.0; 6], &[6], dev);
        let (_, w6) = pair(&[1.0; 6], &[6], dev);
        assert!(matches!(x1.group_norm(3, &w6, &w6, 1e-6), Err(Error::Shape { .. })));
    }
}

#[test]
fn upsample_matches_the_cpu() {
    for dev in devices() {
        for (n, h, w, c, f) in
            [(2usize, 3usize, 5usize, 3usize, 2usize), (1, 1, 1, 4, 3), (1, 20, 17, 16, 2), (1, 2, 3, 1, 1)]
        {
            let (xc, xg) = pair(&random(n * h * w * c, 13, 1.0), &[n, h, w, c], dev);
            let (uc, ug) = (xc.upsample_nearest(f).unwrap(), xg.upsample_nearest(f).unwrap());
            check_exact(&format!("upsample {n}x{h}x{w}x{c} by {f}"), &uc, &ug);
            assert!(matches!(xg.upsample_nearest(0), Err(Error::Shape { .. })));
        }
        let (_, flat) = pair(&[1.0; 6], &[2, 3], dev);
        assert!(matches!(flat.upsample_nearest(2), Err(Error::Shape { .. })));
    }
}

#[test]
fn rotary_modulate_and_gated_add_match_the_cpu() {
    for dev in devices() {
        for (t, h, d) in [(5usize, 3usize, 8usize), (40, 4, 128), (1, 1, 2)] {
            let (xc, xg) = pair(&random(t * h * d, 20, 2.0), &[t, h, d], dev);
            let ang = random(t * d / 2, 21, 3.0);
            let (cc, cg) = pair(&ang.iter().map(|a| a.cos()).collect::<Vec<_>>(), &[t, d / 2], dev);
            let (sc, sg) = pair(&ang.iter().map(|a| a.sin()).collect::<Vec<_>>(), &[t, d / 2], dev);
            for layout in [RopeLayout::Interleaved, RopeLayout::NeoX] {
                let (rc, rg) = (xc.rotary(&cc, &sc, layout).unwrap(), xg.rotary(&cg, &sg, layout).unwrap());
                check_exact(&format!("rotary {layout:?} {t}x{h}x{d}"), &rc, &rg);
            }
            assert!(matches!(xg.rotary(&xg, &sg, RopeLayout::NeoX), Err(Error::Shape { .. })));
        }
        for (n, t, d) in [(2usize, 5usize, 7usize), (3, 20, 300), (1, 1, 1)] {
            let (xc, xg) = pair(&random(n * t * d, 22, 2.0), &[n, t, d], dev);
            let (yc, yg) = pair(&random(n * t * d, 23, 2.0), &[n, t, d], dev);
            let (ac, ag) = pair(&random(n * d, 24, 1.0), &[n, d], dev);
            let (bc, bg) = pair(&random(n * d, 25, 1.0), &[n, d], dev);
            check_exact(
                &format!("modulate {n}x{t}x{d}"),
                &xc.modulate(&ac, &bc).unwrap(),
                &xg.modulate(&ag, &bg).unwrap(),
            );
            let what = format!("gated_add {n}x{t}x{d}");
            check_exact(&what, &xc.gated_add(&ac, &yc).unwrap(), &xg.gated_add(&ag, &yg).unwrap());
            assert!(matches!(xg.modulate(&yg, &bg), Err(Error::Shape { .. })));
            assert!(matches!(xg.gated_add(&ag, &bg), Err(Error::Shape { .. })));
        }
    }
}

#[test]
fn concat_and_narrow_match_the_cpu() {
    for dev in devices() {
        let dims = [2usize, 3, 5, 4];
        for axis in 0..4 {
            let mut other = dims;
            other[axis] = 3;
            let (ac, ag) = pair(&random(dims.iter().product(), 30, 1.0), &dims, dev);
            let (bc, bg) = pair(&random(other.iter().product(), 31, 1.0), &other, dev);
            let (cc, cg) =
                (Tensor::concat(&[&ac, &bc, &ac], axis).unwrap(), Tensor::concat(&[&ag, &bg, &ag], axis).unwrap());
            check_exact(&format!("concat on axis {axis}"), &cc, &cg);
            let (nc, ng) = (cc.narrow(axis, 1, 4).unwrap(), cg.narrow(axis, 1, 4).unwrap());
            check_exact(&format!("narrow on axis {axis}"), &nc, &ng);
        }
        // A narrowed view as input (to narrow and to concat); errors.
        let (xc, xg) = pair(&random(6 * 8, 32, 1.0), &[6, 8], dev);
        let (vc, vg) = (xc.narrow_rows(2, 3).unwrap(), xg.narrow_rows(2, 3).unwrap());
        check_exact("narrow of a view", &vc.narrow(1, 3, 2).unwrap(), &vg.narrow(1, 3, 2).unwrap());
        check_exact(
            "concat of views",
            &Tensor::concat(&[&vc, &xc], 0).unwrap(),
            &Tensor::concat(&[&vg, &xg], 0).unwrap(),
        );
        let c1 = Tensor::concat(&[&vc, &vc], 1).unwrap();
        check_exact("concat of views on axis 1", &c1, &Tensor::concat(&[&vg, &vg], 1).unwrap());
        assert!(matches!(vg.narrow(1, 7, 2), Err(Error::Shape { .. })));
        assert!(matches!(vg.narrow(2, 0, 1), Err(Error::Shape { .. })));
        assert!(matches!(Tensor::concat(&[&vg, &xg], 1), Err(Error::Shape { .. })));
        assert!(matches!(Tensor::concat(&[&vg, &vg], 2), Err(Error::Shape { .. })));
        let h = xg.cast(DType::F16).unwrap();
        assert!(matches!(h.narrow(0, 0, 1), Err(Error::UnsupportedDType { .. })));
        assert!(matches!(Tensor::concat(&[&xg, &h], 0), Err(Error::UnsupportedDType { .. })));
    }
}

#[test]
fn attention_dense_matches_the_cpu() {
    for dev in devices() {
        let (lens, hq, hkv, d) = ([6usize, 40, 1], 4usize, 2usize, 16usize);
        let n: usize = lens.iter().sum();
        let (qc, qg) = pair(&random(n * hq * d, 40, 1.0), &[n, hq, d], dev);
        let (kc, kg) = pair(&random(n * hkv * d, 41, 1.0), &[n, hkv, d], dev);
        let (vc, vg) = pair(&random(n * hkv * d, 42, 1.0), &[n, hkv, d], dev);
        let (bc, bg) = pair(&random(hq * 40 * 40, 43, 2.0), &[hq, 40, 40], dev);
        for (causal, bias) in [(false, false), (true, false), (false, true), (true, true)] {
            let oc = DenseAttention { scale: 0.25, causal, bias: bias.then_some(&bc) };
            let og = DenseAttention { scale: 0.25, causal, bias: bias.then_some(&bg) };
            let (c, g) =
                (qc.attention_dense(&kc, &vc, &lens, &oc).unwrap(), qg.attention_dense(&kg, &vg, &lens, &og).unwrap());
            check(&format!("attention_dense causal={causal} bias={bias}"), &c, &g, 1e-5);
        }
        // attention_full is the same kernel without options; 300 keys span three chunks of 128.
        let lens = [300usize, 7];
        let (qc, qg) = pair(&random(307 * 2 * 32, 44, 1.0), &[307, 2, 32], dev);
        let (kc, kg) = pair(&random(307 * 2 * 32, 45, 1.0), &[307, 2, 32], dev);
        let (c, g) =
            (qc.attention_full(&kc, &kc, &lens, 0.2).unwrap(), qg.attention_full(&kg, &kg, &lens, 0.2).unwrap());
        check("attention_full 300 + 7 tokens", &c, &g, 1e-5);
        // One head of 512 (the VAE's mid block: the kernel's widest), and one of 640 (host path).
        for d in [512usize, 640] {
            let (qc, qg) = pair(&random(70 * d, 46, 0.2), &[70, 1, d], dev);
            let (kc, kg) = pair(&random(70 * d, 47, 0.2), &[70, 1, d], dev);
            let (vc, vg) = pair(&random(70 * d, 48, 1.0), &[70, 1, d], dev);
            let o = DenseAttention { scale: 1.0 / (d as f32).sqrt(), causal: false, bias: None };
            let (c, g) =
                (qc.attention_dense(&kc, &vc, &[70], &o).unwrap(), qg.attention_dense(&kg, &vg, &[70], &o).unwrap());
            check(&format!("attention_dense head_dim {d}"), &c, &g, 1e-5);
        }
        // -inf in the bias masks keys as the causal mask does; a row of only -inf gives zeros.
        let (t, h, d) = (9usize, 2usize, 8usize);
        let (qc, qg) = pair(&random(t * h * d, 49, 1.0), &[t, h, d], dev);
        let mut mask: Vec<f32> =
            (0..h * t * t).map(|e| if e % t > (e / t) % t { f32::NEG_INFINITY } else { 0.0 }).collect();
        let causal = DenseAttention { scale: 1.0, causal: true, bias: None };
        let mg = Tensor::from_f32(&mask, vec![h, t, t], dev).unwrap();
        let masked = DenseAttention { scale: 1.0, causal: false, bias: Some(&mg) };
        let want = qc.attention_dense(&qc, &qc, &[t], &causal).unwrap();
        check(
            "attention_dense -inf bias as a causal mask",
            &want,
            &qg.attention_dense(&qg, &qg, &[t], &masked).unwrap(),
            1e-5,
        );
        mask[3 * t..4 * t].fill(f32::NEG_INFINITY); // head 0, query 3 sees nothing
        let (mc, mg) = pair(&mask, &[h, t, t], dev);
        let (oc, og) = (DenseAttention { bias: Some(&mc), ..causal }, DenseAttention { bias: Some(&mg), ..causal });
        let (c, g) =
            (qc.attention_dense(&qc, &qc, &[t], &oc).unwrap(), qg.attention_dense(&qg, &qg, &[t], &og).unwrap());
        check("attention_dense with a fully masked row", &c, &g, 1e-5);
        assert!(g.to_vec_f32().unwrap()[3 * h * d..3 * h * d + d].iter().all(|&v| v == 0.0));
        // Shapes are checked as on the CPU.
        let none = DenseAttention { scale: 1.0, causal: true, bias: None };
        assert!(matches!(qg.attention_dense(&qg, &qg, &[3], &none), Err(Error::Shape { .. })));
        let (_, small) = pair(&[0.0; 2 * 4 * 4], &[2, 4, 4], dev);
        let short = DenseAttention { scale: 1.0, causal: false, bias: Some(&small) };
        assert!(matches!(qg.attention_dense(&qg, &qg, &[t], &short), Err(Error::Shape { .. })));
    }
}
