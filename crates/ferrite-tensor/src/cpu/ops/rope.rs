//! Rotary position embeddings, interleaved-pair and NeoX-half layouts.
//!
//! Angles follow ggml: `theta_i = pos * freq_scale * base^(-2i/dim)`, built by repeated f32
//! multiplication and `cosf`/`sinf`, so results match llama.cpp bit for bit where possible.

use rayon::prelude::*;

use crate::backend::{RopeConfig, RopeLayout};
use crate::cpu::{expect_f32, f32_tensor, TensorRead};
use crate::{Result, Tensor};

/// The `(cos, sin)` of each rotated pair at `pos`.
fn angles(pos: u32, cfg: &RopeConfig) -> Vec<(f32, f32)> {
    let half = cfg.dim / 2;
    let step = cfg.step();
    let mut theta = pos as f32 * cfg.freq_scale;
    (0..half)
        .map(|_| {
            let cs = (theta.cos(), theta.sin());
            theta *= step;
            cs
        })
        .collect()
}

/// One head: ggml's `rotate_pairs` as GCC contracts it, one product rounded and the other fused
/// (`vfmsub231ss` / `vfmadd132ss`): `x0·c - x1·s` is `fma(x0, c, -(x1·s))`.
#[inline(always)]
fn rotate_portable(oh: &mut [f32], sh: &[f32], cs: &[(f32, f32)], cfg: &RopeConfig) {
    oh.copy_from_slice(sh);
    for (i, &(c, sn)) in cs.iter().enumerate() {
        let (a, b) = match cfg.layout {
            RopeLayout::Interleaved => (2 * i, 2 * i + 1),
            RopeLayout::NeoX => (i, i + cfg.dim / 2),
        };
        let (x0, x1) = (sh[a], sh[b]);
        oh[a] = x0.mul_add(c, -(x1 * sn));
        oh[b] = x0.mul_add(sn, x1 * c);
    }
}

/// The same compiled with FMA, so `mul_add` is one instruction.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
fn rotate_fma(oh: &mut [f32], sh: &[f32], cs: &[(f32, f32)], cfg: &RopeConfig) {
    rotate_portable(oh, sh, cs, cfg)
}

fn rotate(oh: &mut [f32], sh: &[f32], cs: &[(f32, f32)], cfg: &RopeConfig) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: FMA was just detected.
        return unsafe { rotate_fma(oh, sh, cs, cfg) };
    }
    rotate_portable(oh, sh, cs, cfg)
}

/// Rotates `x [tokens, heads, head_dim]` by `positions[token]`.
pub fn rope(x: &Tensor, positions: &[u32], cfg: &RopeConfig) -> Result<Tensor> {
    expect_f32(x, "rope")?;
    let [_, h, d] = cfg.check(x.dims(), positions.len())?;
    let mut out = crate::cpu::buffers::zeroed(x.numel());
    {
        let xr = TensorRead::new(x, "rope")?;
        let xs = xr.f32()?;
        let token = |((o, s), &pos): ((&mut [f32], &[f32]), &u32)| {
            let cs = angles(pos, cfg);
            for (oh, sh) in o.chunks_mut(d).zip(s.chunks(d)) {
                rotate(oh, sh, &cs, cfg);
            }
        };
        let row = (h * d).max(1);
        if out.len() < super::PARALLEL_MIN_ELEMS {
            out.chunks_mut(row).zip(xs.chunks(row)).zip(positions.iter()).for_each(token);
        } else {
            out.par_chunks_mut(row).zip(xs.par_chunks(row)).zip(positions.par_iter()).for_each(token);
        }
    }
    f32_tensor(out, x.shape().clone(), x.device())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    fn reference(x: &[f32], t: usize, h: usize, d: usize, pos: &[u32], cfg: &RopeConfig) -> Vec<f64> {
        let mut out: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        for (ti, &p) in pos.iter().enumerate().take(t) {
            for hi in 0..h {
                let base = (ti * h + hi) * d;
                for i in 0..cfg.dim / 2 {
                    let freq = (cfg.theta as f64).powf(-2.0 * i as f64 / cfg.dim as f64);
                    let ang = p as f64 * cfg.freq_scale as f64 * freq;
                    let (a, b) = match cfg.layout {
                        RopeLayout::Interleaved => (2 * i, 2 * i + 1),
                        RopeLayout::NeoX => (i, i + cfg.dim / 2),
                    };
                    let (x0, x1) = (x[base + a] as f64, x[base + b] as f64);
                    out[base + a] = x0 * ang.cos() - x1 * ang.sin();
                    out[base + b] = x0 * ang.sin() + x1 * ang.cos();
                }
            }
        }
        out
    }

    #[test]
    fn both_layouts_match_f64() {
        let (t, h, d) = (5, 3, 64);
        let x = rand_vec(t * h * d, 7);
        let pos = [0u32, 1, 17, 300, 1000];
        for layout in [RopeLayout::Interleaved, RopeLayout::NeoX] {
            for dim in [64, 32] {
                let cfg = RopeConfig { theta: 10000.0, dim, layout, freq_scale: 1.0 };
                let got = tensor(&x, &[t, h, d]).rope(&pos, &cfg).unwrap().to_vec_f32().unwrap();
                // f32 angle accumulation loses ~1e-4 relative at position 1000.
                assert_close(&got, &reference(&x, t, h, d, &pos, &cfg), 2e-3, 1e-3);
            }
        }
    }

    #[test]
    fn bad_arguments_are_errors() {
        let x = tensor(&[0.0; 2 * 4], &[1, 2, 4]);
        let cfg = RopeConfig { theta: 1e4, dim: 4, layout: RopeLayout::NeoX, freq_scale: 1.0 };
        assert!(x.rope(&[0, 1], &cfg).is_err());
        assert!(x.rope(&[0], &RopeConfig { dim: 6, ..cfg }).is_err());
    }
}
