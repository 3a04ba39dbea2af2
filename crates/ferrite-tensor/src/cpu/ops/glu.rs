//! Gated activations (`act(gate) · up`) rounded as ggml's CPU backend rounds them on an
//! AVX-512 CPU, so that the 8-bit quantization of the next matmul sees the same values:
//!
//! * SwiGLU, as `ggml_vec_swiglu_f32`: runs of 16 use `ggml_v_silu` = `x / (1 + ggml_v_expf(-x))`
//!   with ggml's own exp polynomial (mirrored lane by lane in [`expf_ggml`]); the last `n % 16`
//!   values use `ggml_silu_f32` with libm's `expf`.
//! * GeGLU (tanh GELU), as `ggml_vec_geglu_f32` with `GGML_GELU_FP16`: `gelu(x)` is looked up in
//!   a table indexed by `x` rounded to fp16 and holding fp16 results
//!   (`ggml_table_gelu_f16[i] = fp16(ggml_gelu_f32(i))`), 0 below -10 and `x` above 10.

use std::sync::OnceLock;

use half::f16;

const fn c(bits: u32) -> f32 {
    f32::from_bits(bits)
}

/// `ggml_v_expf` (AVX-512 version) for one lane: FMAs are `mul_add`, `_mm512_scalef_ps` is an
/// exact scaling by `2^n`.
#[inline(always)]
pub(super) fn expf_ggml(x: f32) -> f32 {
    let r = c(0x4b40_0000); // 0x1.8p23
    let z = x.mul_add(c(0x3fb8_aa3b), r);
    let n = z - r;
    let b = (-n).mul_add(c(0x35bf_be8e), (-n).mul_add(c(0x3f31_7200), x));
    let u = b * b;
    let p = c(0x3c07_2010).mul_add(b, c(0x3d2b_9f17)).mul_add(u, c(0x3e2a_af33).mul_add(b, c(0x3eff_fedb)));
    let j = p.mul_add(u, c(0x3f7f_fff6).mul_add(b, 1.0));
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    scalef(j, n as i32)
}

/// `j · 2^n` rounded once (`vscalefps`), for |n| <= 192 and `j` near 1.
#[inline(always)]
fn scalef(j: f32, n: i32) -> f32 {
    let pow2 = |e: i32| f32::from_bits(((e + 127) as u32) << 23);
    if n < -126 {
        // Exact scaling to a normal value, then one rounding into the subnormals (or zero);
        // `n + 126` stays a normal exponent down to n = -192.
        j * pow2(n + 126) * pow2(-126)
    } else if n > 127 {
        j * pow2(127) * pow2(n - 127)
    } else {
        j * pow2(n)
    }
}

/// `ggml_v_silu` for one lane.
#[inline(always)]
fn silu_ggml(x: f32) -> f32 {
    x / (1.0 + expf_ggml(0.0 - x))
}

#[inline(always)]
fn swiglu_portable(gate: &[f32], up: &[f32], out: &mut [f32]) {
    let n = out.len().min(gate.len()).min(up.len());
    let np = n & !15;
    for ((o, &g), &u) in out[..np].iter_mut().zip(&gate[..np]).zip(&up[..np]) {
        *o = silu_ggml(g) * u;
    }
    // `ggml_silu_f32` for the tail.
    for ((o, &g), &u) in out[np..n].iter_mut().zip(&gate[np..n]).zip(&up[np..n]) {
        *o = g / (1.0 + (-g).exp()) * u;
    }
}

/// The same code compiled with FMA, so `mul_add` is one instruction (and vectorizes).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn swiglu_fma(gate: &[f32], up: &[f32], out: &mut [f32]) {
    swiglu_portable(gate, up, out)
}

/// `out = silu(gate) · up` as `ggml_vec_swiglu_f32`.
pub(crate) fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the features were just detected.
        return unsafe { swiglu_fma(gate, up, out) };
    }
    swiglu_portable(gate, up, out)
}

/// `ggml_gelu_f32` as GCC compiles it: `0.5x · (1 + tanhf(√(2/π)·x · fma(0.044715·x, x, 1)))`.
fn gelu_ggml(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const GELU_COEF_A: f32 = 0.044_715;
    let inner = (GELU_COEF_A * x).mul_add(x, 1.0);
    (0.5 * x) * (1.0 + (SQRT_2_OVER_PI * x * inner).tanh())
}

/// `ggml_table_gelu_f16`: fp16 GELU of every fp16 value.
fn gelu_table() -> &'static [f16] {
    static T: OnceLock<Vec<f16>> = OnceLock::new();
    T.get_or_init(|| (0..=u16::MAX).map(|i| f16::from_f32(gelu_ggml(f16::from_bits(i).to_f32()))).collect())
}

/// `out = gelu_tanh(gate) · up` as `ggml_vec_geglu_f32` (fp16 table).
pub(crate) fn geglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    let t = gelu_table();
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = if g <= -10.0 {
            0.0
        } else if g >= 10.0 {
            g * u
        } else {
            t[f16::from_f32(g).to_bits() as usize].to_f32() * u
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ggml_exp_is_close_to_exp() {
        for i in -2000..2000 {
            let x = i as f32 * 0.0437;
            let (got, want) = (expf_ggml(x) as f64, (x as f64).exp());
            assert!((got - want).abs() <= 4e-7 * want, "{x}: {got} vs {want}");
        }
        // Down through the subnormals to the last exponents before the cut-off (n = -192).
        for i in 0..2000 {
            let x = -87.0 - i as f32 * 0.0232;
            let (got, want) = (expf_ggml(x) as f64, (x as f64).exp());
            assert!((got - want).abs() <= 4e-7 * want + 1.5e-45, "{x}: {got} vs {want}");
        }
        assert_eq!(expf_ggml(-200.0), 0.0);
        assert_eq!(expf_ggml(200.0), f32::INFINITY);
    }

    #[test]
    fn fma_build_matches_portable() {
        let g: Vec<f32> = (0..77).map(|i| (i as f32 - 38.0) * 0.31).collect();
        let u: Vec<f32> = (0..77).map(|i| (i % 5) as f32 * 0.7 - 1.0).collect();
        let (mut a, mut b) = (vec![0f32; 77], vec![0f32; 77]);
        swiglu(&g, &u, &mut a);
        swiglu_portable(&g, &u, &mut b);
        assert_eq!(a, b);
    }
}
