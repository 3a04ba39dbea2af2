//! Bit-exact block dequantization.
//!
//! Each decoder reproduces, operation by operation, the f32 arithmetic of the numpy
//! dequantizers in the `gguf` Python package (llama.cpp's reference reader), so the results are
//! equal bit for bit (checked by `tests/golden_dequant.rs`). Rust never contracts `a * b + c`
//! into a fused multiply-add, so writing the same expression gives the same rounding.

use half::f16;

use crate::dtype::QK_K;
use crate::quant::blocks::get_scale_min_k4;

#[inline]
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Q4_0: `d * (q - 8)`.
pub(crate) fn q4_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(18).zip(dst.chunks_exact_mut(32)) {
        let d = f16_at(b, 0);
        let qs = &b[2..18];
        for l in 0..16 {
            y[l] = d * ((qs[l] & 0xF) as i32 - 8) as f32;
            y[l + 16] = d * ((qs[l] >> 4) as i32 - 8) as f32;
        }
    }
}

/// Q4_1: `(d * q) + m`.
pub(crate) fn q4_1(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(20).zip(dst.chunks_exact_mut(32)) {
        let d = f16_at(b, 0);
        let m = f16_at(b, 2);
        let qs = &b[4..20];
        for l in 0..16 {
            y[l] = d * (qs[l] & 0xF) as f32 + m;
            y[l + 16] = d * (qs[l] >> 4) as f32 + m;
        }
    }
}

/// Q5_0: `d * (q - 16)`, the fifth bit of weight `j` in bit `j` of `qh`.
pub(crate) fn q5_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(22).zip(dst.chunks_exact_mut(32)) {
        let d = f16_at(b, 0);
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let qs = &b[6..22];
        for l in 0..16 {
            let lo = (qs[l] & 0xF) as u32 | ((qh >> l) & 1) << 4;
            let hi = (qs[l] >> 4) as u32 | ((qh >> (l + 16)) & 1) << 4;
            y[l] = d * (lo as i32 - 16) as f32;
            y[l + 16] = d * (hi as i32 - 16) as f32;
        }
    }
}

/// Q8_0: `q * d`.
pub(crate) fn q8_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(34).zip(dst.chunks_exact_mut(32)) {
        let d = f16_at(b, 0);
        for (yl, &q) in y.iter_mut().zip(&b[2..34]) {
            *yl = (q as i8) as f32 * d;
        }
    }
}

/// The 8 (scale, min) pairs of a Q4_K/Q5_K block, as `d * sc` and `dmin * m` in f32.
#[inline]
fn k4_scales(b: &[u8]) -> ([f32; 8], [f32; 8]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let mut sc12 = [0u8; 12];
    sc12.copy_from_slice(&b[4..16]);
    let mut dl = [0f32; 8];
    let mut ml = [0f32; 8];
    for j in 0..8 {
        let (sc, m) = get_scale_min_k4(j, &sc12);
        dl[j] = d * sc as f32;
        ml[j] = dmin * m as f32;
    }
    (dl, ml)
}

/// Q4_K: `(d * sc) * q - (dmin * m)` per 32-weight sub-block.
pub(crate) fn q4_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(144).zip(dst.chunks_exact_mut(QK_K)) {
        let (dl, ml) = k4_scales(b);
        let qs = &b[16..144];
        for i in 0..4 {
            let q = &qs[32 * i..32 * i + 32];
            for l in 0..32 {
                y[64 * i + l] = dl[2 * i] * (q[l] & 0xF) as f32 - ml[2 * i];
                y[64 * i + 32 + l] = dl[2 * i + 1] * (q[l] >> 4) as f32 - ml[2 * i + 1];
            }
        }
    }
}

/// Q5_K: as Q4_K with the fifth bit of sub-block `j`, position `l` in bit `j` of `qh[l]`.
pub(crate) fn q5_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(176).zip(dst.chunks_exact_mut(QK_K)) {
        let (dl, ml) = k4_scales(b);
        let qh = &b[16..48];
        let qs = &b[48..176];
        for i in 0..4 {
            let q = &qs[32 * i..32 * i + 32];
            for l in 0..32 {
                let lo = (q[l] & 0xF) | ((qh[l] >> (2 * i)) & 1) << 4;
                let hi = (q[l] >> 4) | ((qh[l] >> (2 * i + 1)) & 1) << 4;
                y[64 * i + l] = dl[2 * i] * lo as f32 - ml[2 * i];
                y[64 * i + 32 + l] = dl[2 * i + 1] * hi as f32 - ml[2 * i + 1];
            }
        }
    }
}

/// Q6_K: `(d * sc) * (q - 32)` per 16-weight sub-block.
pub(crate) fn q6_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(210).zip(dst.chunks_exact_mut(QK_K)) {
        let ql = &b[0..128];
        let qh = &b[128..192];
        let sc = &b[192..208];
        let d = f16_at(b, 208);
        let mut dl = [0f32; 16];
        for (o, &s) in dl.iter_mut().zip(sc) {
            *o = d * (s as i8) as f32;
        }
        for n in 0..2 {
            let (ql, qh, y) = (&ql[64 * n..], &qh[32 * n..], &mut y[128 * n..]);
            for l in 0..32 {
                let q = [
                    (ql[l] & 0xF) | (qh[l] & 3) << 4,
                    (ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4,
                    (ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4,
                    (ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4,
                ];
                for (t, &qt) in q.iter().enumerate() {
                    let e = 32 * t + l;
                    y[e] = dl[8 * n + e / 16] * (qt as i32 - 32) as f32;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16b(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    #[test]
    fn q4_0_formula() {
        let mut b = vec![0u8; 18];
        b[..2].copy_from_slice(&f16b(0.5));
        b[2] = 0x3A; // weight 0: 10, weight 16: 3
        let mut y = [0f32; 32];
        q4_0(&b, &mut y);
        assert_eq!(y[0], 1.0);
        assert_eq!(y[16], -2.5);
        assert_eq!(y[1], -4.0);
    }

    #[test]
    fn q5_0_high_bits() {
        let mut b = vec![0u8; 22];
        b[..2].copy_from_slice(&f16b(1.0));
        b[2..6].copy_from_slice(&(1u32 | 1 << 17).to_le_bytes());
        let mut y = [0f32; 32];
        q5_0(&b, &mut y);
        assert_eq!(y[0], 0.0); // 16 - 16
        assert_eq!(y[17], 0.0);
        assert_eq!(y[1], -16.0);
    }

    #[test]
    fn q6_k_layout() {
        let mut b = vec![0u8; 210];
        b[208..210].copy_from_slice(&f16b(1.0));
        for s in &mut b[192..208] {
            *s = 1;
        }
        b[0] = 0x21; // ql[0]: element 0 low = 1, element 64 high = 2
        b[128] = 0b1110_0100; // qh[0]: element 0 -> 0, 32 -> 1, 64 -> 2, 96 -> 3
        let mut y = [0f32; 256];
        q6_k(&b, &mut y);
        assert_eq!(y[0], 1.0 - 32.0);
        assert_eq!(y[32], 16.0 - 32.0);
        assert_eq!(y[64], (2 + 32) as f32 - 32.0);
        assert_eq!(y[96], 48.0 - 32.0);
    }
}
