//! SiLU and GELU, alone and gated (`act(gate) * up`).

use rayon::prelude::*;

use crate::backend::Activation;
use crate::cpu::{expect_f32, f32_tensor, TensorRead};
use crate::{Error, Result, Tensor};

use super::map_rows;

/// erf with |error| < 1.5e-7 (Abramowitz & Stegun 7.1.26), in f64 then rounded.
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t + 0.254_829_592)
            * t
            * (-x * x).exp();
    if x >= 0.0 {
        y
    } else {
        -y
    }
}

/// Exact GELU, `x·Φ(x)`, through [`erf`] in f64.
#[inline]
fn gelu_erf(x: f32) -> f32 {
    (0.5 * x as f64 * (1.0 + erf(x as f64 / std::f64::consts::SQRT_2))) as f32
}

/// SiLU, quick GELU and tanh GELU all have the form `x · σ(z)`, `σ(z) = 1 / (1 + e^-z)` (tanh
/// GELU: `½(1 + tanh y) = σ(2y)`), computed with ggml's exp polynomial, which vectorizes (libm's
/// `expf`/`tanhf` do not); within a few ulp of the f64 values (tested). Exact GELU keeps `erf`.
#[inline(always)]
fn sigmoid_form(s: &[f32], o: &mut [f32], z: impl Fn(f32) -> f32) {
    for (o, &x) in o.iter_mut().zip(s) {
        *o = x / (1.0 + super::glu::expf_ggml(-z(x)));
    }
}

#[inline(always)]
fn activate_portable(act: Activation, s: &[f32], o: &mut [f32]) {
    const C: f32 = 0.797_884_6; // sqrt(2/pi)
                                // One loop per activation (no branch inside), so each vectorizes.
    match act {
        Activation::Silu => sigmoid_form(s, o, |x| x),
        Activation::QuickGelu => sigmoid_form(s, o, |x| 1.702 * x),
        Activation::GeluTanh => sigmoid_form(s, o, |x| 2.0 * C * (0.044_715 * x * x).mul_add(x, x)),
        Activation::Gelu => o.iter_mut().zip(s).for_each(|(o, &x)| *o = gelu_erf(x)),
    }
}

/// The same code compiled with AVX2 and FMA, so the loop vectorizes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn activate_fma(act: Activation, s: &[f32], o: &mut [f32]) {
    activate_portable(act, s, o)
}

/// `o[i] = act(s[i])`.
fn activate(act: Activation, s: &[f32], o: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the features were just detected.
        return unsafe { activate_fma(act, s, o) };
    }
    activate_portable(act, s, o)
}

pub fn activation(x: &Tensor, act: Activation) -> Result<Tensor> {
    expect_f32(x, "activation")?;
    let mut out = crate::cpu::buffers::overwritable(x.numel());
    {
        let xr = TensorRead::new(x, "activation")?;
        map_rows(xr.f32()?, &mut out, x.shape().last(), |s, o| activate(act, s, o));
    }
    f32_tensor(out, x.shape().clone(), x.device())
}

pub fn gated_activation(gate: &Tensor, up: &Tensor, act: Activation) -> Result<Tensor> {
    expect_f32(gate, "gated_activation")?;
    expect_f32(up, "gated_activation")?;
    if gate.shape() != up.shape() {
        return Err(Error::shape("gated_activation", format!("{:?} vs {:?}", gate.dims(), up.dims())));
    }
    let mut out = crate::cpu::buffers::overwritable(gate.numel());
    {
        let (g, u) = (TensorRead::new(gate, "gated_activation")?, TensorRead::new(up, "gated_activation")?);
        let d = gate.shape().last().max(1);
        let (gv, uv) = (g.f32()?, u.f32()?);
        // Whole rows per chunk, so the SIMD lanes line up with ggml's per-row loops. SiLU and
        // tanh GELU are rounded as ggml's `swiglu` / `geglu` ops round them ([`super::glu`]).
        let apply_rows = |(o, (gs, us)): (&mut [f32], (&[f32], &[f32]))| {
            for ((o, gs), us) in o.chunks_mut(d).zip(gs.chunks(d)).zip(us.chunks(d)) {
                match act {
                    Activation::Silu => super::glu::swiglu(gs, us, o),
                    Activation::GeluTanh => super::glu::geglu(gs, us, o),
                    Activation::Gelu => {
                        for ((o, &g), &u) in o.iter_mut().zip(gs).zip(us) {
                            *o = gelu_erf(g) * u;
                        }
                    }
                    Activation::QuickGelu => {
                        for ((o, &g), &u) in o.iter_mut().zip(gs).zip(us) {
                            *o = g / (1.0 + (-1.702 * g).exp()) * u;
                        }
                    }
                }
            }
        };
        let chunk = d * (4096 / d).max(1);
        if out.len() < super::PARALLEL_MIN_ELEMS {
            out.chunks_mut(chunk).zip(gv.chunks(chunk).zip(uv.chunks(chunk))).for_each(apply_rows);
        } else {
            out.par_chunks_mut(chunk).zip(gv.par_chunks(chunk).zip(uv.par_chunks(chunk))).for_each(apply_rows);
        }
    }
    f32_tensor(out, gate.shape().clone(), gate.device())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    fn reference(act: Activation, x: f64) -> f64 {
        match act {
            Activation::Silu => x / (1.0 + (-x).exp()),
            // erf via its series is accurate for |x| <= 4; beyond, gelu(x) is x or 0 in f32.
            Activation::Gelu => {
                let z = x / std::f64::consts::SQRT_2;
                let mut term = z;
                let mut sum = z;
                for n in 1..200 {
                    term *= -z * z / n as f64;
                    sum += term / (2 * n + 1) as f64;
                }
                0.5 * x * (1.0 + 2.0 / std::f64::consts::PI.sqrt() * sum)
            }
            // ½(1 + tanh y) = σ(2y), without the cancellation of 1 + tanh y far left.
            Activation::GeluTanh => {
                x / (1.0 + (-2.0 * (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).exp())
            }
            Activation::QuickGelu => x / (1.0 + (-1.702 * x).exp()),
        }
    }

    #[test]
    fn activations_match_f64() {
        let x = rand_vec(2 * 512, 21);
        for act in [Activation::Silu, Activation::Gelu, Activation::GeluTanh, Activation::QuickGelu] {
            let got = tensor(&x, &[2, 512]).activation(act).unwrap().to_vec_f32().unwrap();
            let want: Vec<f64> = x.iter().map(|&v| reference(act, v as f64)).collect();
            assert_close(&got, &want, 1e-6, 1e-5);
        }
    }

    /// Wide inputs (both tails, where `e^-z` under- or overflows) on the vectorized path and the
    /// portable one: within a few ulp of f64 (plus the rounding of the exponent's argument), and the two paths agree bit for bit.
    #[test]
    fn sigmoid_form_activations_over_a_wide_range() {
        let x: Vec<f32> = (0..4001).map(|i| (i as f32 - 2000.0) * 0.05).chain([-1e4, -100.0, 100.0, 1e4]).collect();
        for act in [Activation::Silu, Activation::GeluTanh, Activation::QuickGelu] {
            let mut fast = vec![0f32; x.len()];
            activate(act, &x, &mut fast);
            let mut portable = vec![0f32; x.len()];
            activate_portable(act, &x, &mut portable);
            assert_eq!(
                fast.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                portable.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
            for (&g, &v) in fast.iter().zip(&x) {
                let want = reference(act, v as f64);
                assert!(g.is_finite(), "{act:?}({v}) = {g}");
                // e^-z in f32 carries z's own rounding: |z|·ε relative, on top of a few ulp.
                let x = v as f64;
                let z = match act {
                    Activation::Silu => x,
                    Activation::QuickGelu => 1.702 * x,
                    _ => 2.0 * 0.797_884_6 * (x + 0.044_715 * x * x * x),
                }
                .abs();
                let tol = (4.0 + 2.0 * z) * f32::EPSILON as f64 * want.abs() + 1e-30;
                assert!((g as f64 - want).abs() <= tol, "{act:?}({v}): {g} vs {want}");
            }
        }
    }

    #[test]
    fn gated_matches_f64() {
        let g = rand_vec(3 * 100, 22);
        let u = rand_vec(3 * 100, 23);
        for act in [Activation::Silu, Activation::GeluTanh] {
            let got =
                tensor(&g, &[3, 100]).gated_activation(&tensor(&u, &[3, 100]), act).unwrap().to_vec_f32().unwrap();
            if act == Activation::GeluTanh {
                // ggml's GeGLU looks GELU up in an fp16 table: the input is rounded to fp16
                // and so is the result. Exactly that, and within those two roundings of f64.
                for ((&o, &gv), &uv) in got.iter().zip(&g).zip(&u) {
                    let x16 = half::f16::from_f32(gv).to_f64();
                    let table = half::f16::from_f64(reference(act, x16)).to_f64();
                    assert!((o as f64 - table * uv as f64).abs() <= 2e-3 * (table * uv as f64).abs() + 1e-7, "{gv}");
                    let step = (gv as f64 - x16).abs() * 1.2 + reference(act, x16).abs() / 2048.0;
                    assert!((o as f64 - reference(act, gv as f64) * uv as f64).abs() <= step * uv.abs() as f64 + 1e-6);
                }
                continue;
            }
            let want: Vec<f64> = g.iter().zip(&u).map(|(&g, &u)| reference(act, g as f64) * u as f64).collect();
            assert_close(&got, &want, 1e-6, 1e-5);
        }
        assert!(tensor(&g, &[3, 100]).silu_mul(&tensor(&u[..100], &[1, 100])).is_err());
    }
}
