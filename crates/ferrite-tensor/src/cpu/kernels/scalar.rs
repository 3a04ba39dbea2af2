//! Portable dot products: the reference for the SIMD paths and the fallback on other CPUs.
//!
//! Same arithmetic as the SIMD kernels: integer sums per block of `q_w * q_x` with the weights'
//! offsets (-8, -16, -32, the Q4_1/K-quant mins) applied through the activation block sums.
//! Callers ([`super::Kernels`]) have checked the lengths.

use half::{bf16, f16};

use crate::dtype::QK_K;
use crate::quant::act::ActRow;

#[inline]
fn h(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

#[inline]
fn dot_u4(qs: &[u8], x: &[i8], shift: u32) -> i32 {
    qs.iter().zip(x).map(|(&q, &v)| ((q >> shift) & 0xF) as i32 * v as i32).sum()
}

/// `Σ_b dw·dx·Σ q·x + off(b)·s32[b]`: the shape shared by the legacy 32-weight blocks.
fn legacy(w: &[u8], xs: &[ActRow<'_>], out: &mut [f32], ts: usize, block: impl Fn(&[u8], &[i8]) -> (f32, i32, f32)) {
    for (o, x) in out.iter_mut().zip(xs) {
        let mut acc = 0f32;
        for (b, wb) in w.chunks_exact(ts).enumerate() {
            let (dw, isum, off) = block(wb, &x.qs[32 * b..32 * b + 32]);
            acc += dw * x.d[b] * isum as f32 + off * x.s32[b];
        }
        *o = acc;
    }
}

fn q4_0_row(w: &[u8], xs: &[ActRow<'_>], out: &mut [f32]) {
    legacy(w, xs, out, 18, |b, x| {
        let d = h(b, 0);
        (d, dot_u4(&b[2..18], &x[..16], 0) + dot_u4(&b[2..18], &x[16..], 4), -8.0 * d)
    });
}

fn q4_1_row(w: &[u8], xs: &[ActRow<'_>], out: &mut [f32]) {
    legacy(w, xs, out, 20, |b, x| (h(b, 0), dot_u4(&b[4..20], &x[..16], 0) + dot_u4(&b[4..20], &x[16..], 4), h(b, 2)));
}

fn q5_0_row(w: &[u8], xs: &[ActRow<'_>], out: &mut [f32]) {
    legacy(w, xs, out, 22, |b, x| {
        let d = h(b, 0);
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let mut s = 0i32;
        for l in 0..16 {
            let lo = (b[6 + l] & 0xF) as u32 | ((qh >> l) & 1) << 4;
            let hi = (b[6 + l] >> 4) as u32 | ((qh >> (l + 16)) & 1) << 4;
            s += lo as i32 * x[l] as i32 + hi as i32 * x[l + 16] as i32;
        }
        (d, s, -16.0 * d)
    });
}

fn q8_0_row(w: &[u8], xs: &[ActRow<'_>], out: &mut [f32]) {
    legacy(w, xs, out, 34, |b, x| {
        let s = b[2..34].iter().zip(x).map(|(&q, &v)| (q as i8) as i32 * v as i32).sum();
        (h(b, 0), s, 0.0)
    });
}

/// The 8 (scale, min) of a Q4_K/Q5_K block times `d` / `dmin`.
pub(crate) fn k4_scales(b: &[u8]) -> ([f32; 8], [f32; 8]) {
    let (d, dmin) = (h(b, 0), h(b, 2));
    let mut q = [0u8; 12];
    q.copy_from_slice(&b[4..16]);
    let mut sc = [0f32; 8];
    let mut mn = [0f32; 8];
    for j in 0..8 {
        let (s, m) = crate::quant::blocks::get_scale_min_k4(j, &q);
        sc[j] = d * s as f32;
        mn[j] = dmin * m as f32;
    }
    (sc, mn)
}

fn k4_family(w: &[u8], xs: &[ActRow<'_>], out: &mut [f32], ts: usize, five: bool) {
    for (o, x) in out.iter_mut().zip(xs) {
        let mut acc = 0f32;
        for (sb, b) in w.chunks_exact(ts).enumerate() {
            let (sc, mn) = k4_scales(b);
            let (qh, qs) = if five { (&b[16..48], &b[48..176]) } else { (&b[0..0], &b[16..144]) };
            for j in 0..8 {
                let (i, shift) = (j / 2, 4 * (j as u32 % 2));
                let xb = &x.qs[QK_K * sb + 32 * j..][..32];
                let mut s = 0i32;
                for l in 0..32 {
                    let mut q = ((qs[32 * i + l] >> shift) & 0xF) as i32;
                    if five {
                        q |= (((qh[l] >> j) & 1) as i32) << 4;
                    }
                    s += q * xb[l] as i32;
                }
                let blk = 8 * sb + j;
                acc += sc[j] * x.d[blk] * s as f32 - mn[j] * x.s32[blk];
            }
        }
        *o = acc;
    }
}

fn q4_k_row(w: &[u8], xs: &[ActRow<'_>], out: &mut [f32]) {
    k4_family(w, xs, out, 144, false);
}

fn q5_k_row(w: &[u8], xs: &[ActRow<'_>], out: &mut [f32]) {
    k4_family(w, xs, out, 176, true);
}

fn q6_k_row(w: &[u8], xs: &[ActRow<'_>], out: &mut [f32]) {
    for (o, x) in out.iter_mut().zip(xs) {
        let mut acc = 0f32;
        for (sb, b) in w.chunks_exact(210).enumerate() {
            let d = h(b, 208);
            let mut isum = [0i32; 16];
            for n in 0..2 {
                let (ql, qh) = (&b[64 * n..], &b[128 + 32 * n..]);
                for l in 0..32 {
                    let q = [
                        (ql[l] & 0xF) | (qh[l] & 3) << 4,
                        (ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4,
                        (ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4,
                        (ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4,
                    ];
                    for (t, &qt) in q.iter().enumerate() {
                        let e = 128 * n + 32 * t + l;
                        isum[e / 16] += qt as i32 * x.qs[QK_K * sb + e] as i32;
                    }
                }
            }
            for (i, &s) in isum.iter().enumerate() {
                let sc = d * (b[192 + i] as i8) as f32;
                acc += sc * x.d[8 * sb + i / 2] * s as f32 - 32.0 * sc * x.s16[16 * sb + i];
            }
        }
        *o = acc;
    }
}

/// Float weights (f32, f16 or bf16 by `elem`) times f32 activations.
fn float_dot(w: &[u8], xs: &[&[f32]], out: &mut [f32], size: usize, elem: impl Fn(&[u8]) -> f32) {
    for (o, x) in out.iter_mut().zip(xs) {
        *o = w.chunks_exact(size).zip(x.iter()).map(|(b, &v)| elem(b) * v).sum();
    }
}

fn f32_dot_row(w: &[u8], xs: &[&[f32]], out: &mut [f32]) {
    float_dot(w, xs, out, 4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
}

fn f16_dot_row(w: &[u8], xs: &[&[f32]], out: &mut [f32]) {
    float_dot(w, xs, out, 2, |b| f16::from_le_bytes([b[0], b[1]]).to_f32());
}

fn bf16_dot_row(w: &[u8], xs: &[&[f32]], out: &mut [f32]) {
    float_dot(w, xs, out, 2, |b| bf16::from_le_bytes([b[0], b[1]]).to_f32());
}

macro_rules! rows {
    ($($name:ident => $row:ident, $x:ty;)*) => {$(
        /// Every weight row of `w` (`rb` bytes each) against `xs`, into `out[j·stride + r]`.
        pub(crate) fn $name(w: &[u8], rb: usize, xs: &[$x], out: &mut [f32], stride: usize) {
            for (j, row) in w.chunks_exact(rb).enumerate() {
                $row(row, xs, &mut out[j * stride..j * stride + xs.len()]);
            }
        }
    )*};
}

rows! {
    q4_0 => q4_0_row, ActRow<'_>;
    q4_1 => q4_1_row, ActRow<'_>;
    q5_0 => q5_0_row, ActRow<'_>;
    q8_0 => q8_0_row, ActRow<'_>;
    q4_k => q4_k_row, ActRow<'_>;
    q5_k => q5_k_row, ActRow<'_>;
    q6_k => q6_k_row, ActRow<'_>;
    f32_dot => f32_dot_row, &[f32];
    f16_dot => f16_dot_row, &[f32];
    bf16_dot => bf16_dot_row, &[f32];
}
