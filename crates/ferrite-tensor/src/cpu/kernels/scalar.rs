//! Portable dot products: the reference for the SIMD paths and the fallback on other CPUs.
//!
//! Each quantized kernel reproduces the float arithmetic of the ggml x86 kernel llama.cpp runs
//! for that weight type, so results match ggml bit for bit (the SIMD levels give the same bits):
//!
//! * Q4_0, Q4_1, Q5_0, Q8_0 (`ggml_vec_dot_q*_q8_*`, and llamafile's `tinyBLAS_Q0_AVX` for
//!   prompts, which rounds alike): one accumulator of 8 f32 lanes; per 32-weight block, lane
//!   `l` takes `fma(d_w · d_x, Σ_{4 values} w·x, acc[l])` over the lane's 4 values (signed
//!   weights: `q - 8`, `q - 16`; Q4_1 unsigned); the end sum is [`hsum8`], and Q4_1 adds
//!   `Σ fma(m, s)` with the fp16 q8_1 sums.
//! * Q6_K (`ggml_vec_dot_q6_K_q8_K`, AVX2): per super-block 8 exact integer lanes — lane `l`
//!   sums `scale · Σ_{4 values} q·x` over bytes `4l..4l+4` of each 32-value chunk, minus
//!   `32 · (bsums[2l]·sc[2l] + bsums[2l+1]·sc[2l+1])` — then `fma(d_x · d_w, lane, acc)`.
//! * Q4_K, Q5_K (as llama.cpp's repacked `ggml_gemv_q4_K_8x8_q8_K` / `ggml_gemm_q4_K_8x8_q8_K`,
//!   which it uses for Q4_K weights with a multiple of 8 rows): the exact integers
//!   `I = Σ_j sc_j · Σ q·x` and `M = Σ_j m_j · bsum32_j`, accumulated as `fma(I, d·d_x, acc)`
//!   and `fma(M, dmin·d_x, acc_min)`, the result `acc - acc_min`. ggml runs groups of 4
//!   activation rows through the GEMM, which accumulates after every pair of sub-blocks, and
//!   the rest through the GEMV, once per super-block; so do we: a call with [`super::MAX_ROWS`]
//!   (= 4) rows is a GEMM, fewer rows a GEMV (the matmul groups rows as ggml does).
//!
//! FMA is `f32::mul_add`. Callers ([`super::Kernels`]) have checked the lengths.

use half::{bf16, f16};

use crate::dtype::QK_K;
use crate::quant::act::ActRow;

#[inline]
fn h(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// `hsum_float_8`: `((a4 + a0) + (a6 + a2)) + ((a5 + a1) + (a7 + a3))`.
#[inline(always)]
pub(crate) fn hsum8(a: &[f32; 8]) -> f32 {
    let r: [f32; 4] = std::array::from_fn(|i| a[i + 4] + a[i]);
    (r[0] + r[2]) + (r[1] + r[3])
}

/// The 32 weights of a legacy block as ggml's integer kernels see them, its scale `d` and
/// (Q4_1) min `m`.
type Unpack = fn(&[u8]) -> ([i32; 32], f32, f32);

fn unpack_q4_0(b: &[u8]) -> ([i32; 32], f32, f32) {
    (std::array::from_fn(|e| ((b[2 + e % 16] >> (4 * (e / 16) as u32)) & 0xF) as i32 - 8), h(b, 0), 0.0)
}

fn unpack_q4_1(b: &[u8]) -> ([i32; 32], f32, f32) {
    (std::array::from_fn(|e| ((b[4 + e % 16] >> (4 * (e / 16) as u32)) & 0xF) as i32), h(b, 0), h(b, 2))
}

fn unpack_q5_0(b: &[u8]) -> ([i32; 32], f32, f32) {
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let q = std::array::from_fn(|e| {
        let lo = ((b[6 + e % 16] >> (4 * (e / 16) as u32)) & 0xF) as u32;
        (lo | ((qh >> e) & 1) << 4) as i32 - 16
    });
    (q, h(b, 0), 0.0)
}

fn unpack_q8_0(b: &[u8]) -> ([i32; 32], f32, f32) {
    (std::array::from_fn(|e| (b[2 + e] as i8) as i32), h(b, 0), 0.0)
}

fn legacy(w: &[u8], xs: &[ActRow<'_>], out: &mut [f32], ts: usize, unpack: Unpack, with_min: bool) {
    for (o, x) in out.iter_mut().zip(xs) {
        let mut acc = [0f32; 8];
        let mut summs = 0f32;
        for (b, wb) in w.chunks_exact(ts).enumerate() {
            let (q, dw, m) = unpack(wb);
            let dd = dw * x.d[b];
            for (l, a) in acc.iter_mut().enumerate() {
                let s: i32 = (4 * l..4 * l + 4).map(|e| q[e] * x.qs[32 * b + e] as i32).sum();
                *a = dd.mul_add(s as f32, *a);
            }
            if with_min {
                summs = m.mul_add(x.s32[b], summs);
            }
        }
        *o = hsum8(&acc) + summs;
    }
}

fn q4_0_row(w: &[u8], xs: &[ActRow<'_>], out: &mut [f32]) {
    legacy(w, xs, out, 18, unpack_q4_0, false);
}

fn q4_1_row(w: &[u8], xs: &[ActRow<'_>], out: &mut [f32]) {
    legacy(w, xs, out, 20, unpack_q4_1, true);
}

fn q5_0_row(w: &[u8], xs: &[ActRow<'_>], out: &mut [f32]) {
    legacy(w, xs, out, 22, unpack_q5_0, false);
}

fn q8_0_row(w: &[u8], xs: &[ActRow<'_>], out: &mut [f32]) {
    legacy(w, xs, out, 34, unpack_q8_0, false);
}

/// The 8 6-bit scales and 8 mins of a Q4_K/Q5_K block.
pub(crate) fn k4_scales_mins(b: &[u8]) -> ([i32; 8], [i32; 8]) {
    let mut q = [0u8; 12];
    q.copy_from_slice(&b[4..16]);
    let mut sc = [0i32; 8];
    let mut mn = [0i32; 8];
    for j in 0..8 {
        let (s, m) = crate::quant::blocks::get_scale_min_k4(j, &q);
        sc[j] = s as i32;
        mn[j] = m as i32;
    }
    (sc, mn)
}

fn k4_family(w: &[u8], xs: &[ActRow<'_>], out: &mut [f32], ts: usize, five: bool) {
    let gemm = xs.len() == super::MAX_ROWS;
    for (o, x) in out.iter_mut().zip(xs) {
        let (mut acc, mut acc_min) = (0f32, 0f32);
        for (sb, b) in w.chunks_exact(ts).enumerate() {
            let (sc, mn) = k4_scales_mins(b);
            let (qh, qs) = if five { (&b[16..48], &b[48..176]) } else { (&b[0..0], &b[16..144]) };
            let (mut isum, mut imin) = (0i32, 0i32);
            let dx = x.d[8 * sb];
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
                isum += sc[j] * s;
                let bs = x.bsums[16 * sb + 2 * j] as i32 + x.bsums[16 * sb + 2 * j + 1] as i32;
                imin += mn[j] * bs;
                // The 4-row GEMM accumulates after every pair of sub-blocks, the GEMV once per
                // super-block.
                if j % 2 == 1 && (gemm || j == 7) {
                    acc = (isum as f32).mul_add(h(b, 0) * dx, acc);
                    acc_min = (imin as f32).mul_add(h(b, 2) * dx, acc_min);
                    (isum, imin) = (0, 0);
                }
            }
        }
        *o = acc - acc_min;
    }
}

fn q4_k_row(w: &[u8], xs: &[ActRow<'_>], out: &mut [f32]) {
    k4_family(w, xs, out, 144, false);
}

fn q5_k_row(w: &[u8], xs: &[ActRow<'_>], out: &mut [f32]) {
    k4_family(w, xs, out, 176, true);
}

/// The unsigned 6-bit weight `e` (0..256) of a Q6_K block.
#[inline]
pub(crate) fn q6_value(b: &[u8], e: usize) -> i32 {
    let (n, t, l) = (e / 128, (e % 128) / 32, e % 32);
    let (ql, qh) = (&b[64 * n..], b[128 + 32 * n + l]);
    let lo = if t % 2 == 0 { ql[l] } else { ql[l + 32] };
    let lo = if t < 2 { lo & 0xF } else { lo >> 4 };
    (lo | ((qh >> (2 * t)) & 3) << 4) as i32
}

fn q6_k_row(w: &[u8], xs: &[ActRow<'_>], out: &mut [f32]) {
    for (o, x) in out.iter_mut().zip(xs) {
        let mut acc = [0f32; 8];
        for (sb, b) in w.chunks_exact(210).enumerate() {
            let sc: [i32; 16] = std::array::from_fn(|i| (b[192 + i] as i8) as i32);
            let xq = &x.qs[QK_K * sb..][..QK_K];
            let bs = &x.bsums[16 * sb..][..16];
            let d = x.d[8 * sb] * h(b, 208);
            for (l, a) in acc.iter_mut().enumerate() {
                let mut s = 0i32;
                for c in 0..8 {
                    let e0 = 32 * c + 4 * l;
                    let p: i32 = (e0..e0 + 4).map(|e| q6_value(b, e) * xq[e] as i32).sum();
                    s += sc[2 * c + l / 4] * p;
                }
                s -= 32 * (bs[2 * l] as i32 * sc[2 * l] + bs[2 * l + 1] as i32 * sc[2 * l + 1]);
                *a = d.mul_add(s as f32, *a);
            }
        }
        *o = hsum8(&acc);
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
