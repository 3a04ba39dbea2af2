//! 8-bit activation blocks for the integer dot products.
//!
//! llama.cpp pairs each weight format with its own activation format (q8_0 for Q4_0/Q5_0/Q8_0,
//! q8_1 with block sums for Q4_1, q8_K with per-16 sums for the K-quants). We use one layout
//! that carries all of that, so an activation row is quantized once and serves every weight
//! type: per 32 values a symmetric scale `d = amax / 127` (kept in f32, so no fp16 rounding),
//! `q = round(x / d)` as i8, and the block sums pre-multiplied by `d` both per 32 (`s32`, the
//! q8_1 sums) and per 16 (`s16`, the q8_K `bsums`). The sums let kernels treat weights as
//! unsigned bytes (`vpdpbusd`) and subtract the offset afterwards.
//!
//! Stored as structure of arrays (one contiguous `i8` run per row) so SIMD loads are plain, and
//! each row padded with zero blocks to a multiple of [`ACT_GROUP`] values, so kernels can read a
//! whole group of 8 blocks past a short tail.

use crate::{Error, Result};

/// Values per activation block.
pub const ACT_BLOCK: usize = 32;
/// Rows are padded with zero blocks to a multiple of this many values (8 blocks).
pub const ACT_GROUP: usize = 256;

/// `rows` quantized activation rows of `k` values.
#[derive(Debug, Clone, Default)]
pub struct QuantizedActs {
    k: usize,
    kp: usize,
    rows: usize,
    qs: Vec<i8>,
    d: Vec<f32>,
    s32: Vec<f32>,
    s16: Vec<f32>,
}

/// One quantized activation row, padded to a multiple of [`ACT_GROUP`] values.
#[derive(Debug, Clone, Copy)]
pub struct ActRow<'a> {
    /// Quantized values (`padded_len`).
    pub qs: &'a [i8],
    /// Scale per 32 values.
    pub d: &'a [f32],
    /// `d * sum(q)` per 32 values.
    pub s32: &'a [f32],
    /// `d * sum(q)` per 16 values.
    pub s16: &'a [f32],
}

impl ActRow<'_> {
    /// Padded length in values (a multiple of [`ACT_GROUP`]).
    pub fn padded_len(&self) -> usize {
        self.qs.len()
    }
}

impl QuantizedActs {
    /// An empty buffer; [`QuantizedActs::quantize`] sizes it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Quantizes `rows = x.len() / k` rows of `k` values. `k` must be a positive multiple of
    /// 32 and `x.len()` a multiple of `k`.
    pub fn quantize(&mut self, x: &[f32], k: usize) -> Result<()> {
        if k == 0 || !k.is_multiple_of(ACT_BLOCK) || !x.len().is_multiple_of(k) {
            return Err(Error::shape("quantize_activations", format!("{} values in rows of {k}", x.len())));
        }
        let kern = crate::cpu::kernels::Kernels::best();
        let rows = x.len() / k;
        let kp = k.div_ceil(ACT_GROUP) * ACT_GROUP;
        self.k = k;
        self.kp = kp;
        self.rows = rows;
        self.qs.clear();
        self.qs.resize(rows * kp, 0);
        self.d.clear();
        self.d.resize(rows * kp / 32, 0.0);
        self.s32.clear();
        self.s32.resize(rows * kp / 32, 0.0);
        self.s16.clear();
        self.s16.resize(rows * kp / 16, 0.0);
        for r in 0..rows {
            let xr = &x[r * k..(r + 1) * k];
            let (qs, _) = self.qs[r * kp..r * kp + k].as_chunks_mut::<32>();
            let (xr, _) = xr.as_chunks::<32>();
            let b0 = r * kp / 32;
            for (b, (xb, qb)) in xr.iter().zip(qs).enumerate() {
                let (d, s16a, s16b) = kern.quantize_block(xb, qb);
                self.d[b0 + b] = d;
                self.s16[2 * (b0 + b)] = d * s16a as f32;
                self.s16[2 * (b0 + b) + 1] = d * s16b as f32;
                self.s32[b0 + b] = d * (s16a + s16b) as f32;
            }
        }
        Ok(())
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn k(&self) -> usize {
        self.k
    }

    /// Row `r` (panics when out of range).
    pub fn row(&self, r: usize) -> ActRow<'_> {
        let kp = self.kp;
        ActRow {
            qs: &self.qs[r * kp..(r + 1) * kp],
            d: &self.d[r * kp / 32..(r + 1) * kp / 32],
            s32: &self.s32[r * kp / 32..(r + 1) * kp / 32],
            s16: &self.s16[r * kp / 16..(r + 1) * kp / 16],
        }
    }
}

/// Quantizes 32 values (portable version; the SIMD one is in `cpu::kernels`); returns the
/// scale and the sums of the two 16-value halves. Rounds to nearest, ties to even, with the
/// `1.5·2^23` trick (exact for |v| < 2^22; Rust never fuses the add and subtract).
pub(crate) fn quantize_block_scalar(x: &[f32; 32], q: &mut [i8; 32]) -> (f32, i32, i32) {
    const MAGIC: f32 = 12_582_912.0;
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d > 0.0 { 1.0 / d } else { 0.0 };
    let mut s = [0i32; 2];
    for (i, (qv, &xv)) in q.iter_mut().zip(x).enumerate() {
        let v = ((xv * id + MAGIC) - MAGIC).clamp(-127.0, 127.0) as i8;
        *qv = v;
        s[i / 16] += v as i32;
    }
    (d, s[0], s[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_level_quantizes_like_the_scalar_code() {
        use crate::cpu::kernels::{Isa, Kernels};
        let x: [f32; 32] = std::array::from_fn(|i| ((i * 53 % 37) as f32 - 18.0) * 0.37);
        let mut want = [0i8; 32];
        let w = quantize_block_scalar(&x, &mut want);
        for kern in Isa::ALL.into_iter().filter_map(Kernels::for_isa) {
            let mut q = [0i8; 32];
            assert_eq!(kern.quantize_block(&x, &mut q), w, "{:?}", kern.isa());
            assert_eq!(q, want, "{:?}", kern.isa());
        }
        let mut q = [1i8; 32];
        assert_eq!(quantize_block_scalar(&[0.0; 32], &mut q), (0.0, 0, 0));
        assert_eq!(q, [0; 32]);
    }

    #[test]
    fn quantize_round_trips_within_half_a_step() {
        let k = 96;
        let x: Vec<f32> = (0..2 * k).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013).collect();
        let mut a = QuantizedActs::new();
        a.quantize(&x, k).expect("quantize");
        assert_eq!(a.rows(), 2);
        assert!(a.quantize(&x, 33).is_err() && a.quantize(&x[..50], 96).is_err() && a.quantize(&x, 0).is_err());
        a.quantize(&x, k).expect("quantize");
        for r in 0..2 {
            let row = a.row(r);
            assert_eq!(row.padded_len(), 256);
            assert!(row.qs[k..].iter().all(|&q| q == 0), "padding is zero");
            for (i, &xv) in x[r * k..(r + 1) * k].iter().enumerate() {
                let d = row.d[i / 32];
                assert!((xv - d * row.qs[i] as f32).abs() <= d * 0.5 + 1e-7);
            }
            for b in 0..k / 32 {
                let s: i32 = row.qs[32 * b..32 * b + 32].iter().map(|&q| q as i32).sum();
                assert_eq!(row.s32[b], row.d[b] * s as f32);
                assert!((row.s16[2 * b] + row.s16[2 * b + 1] - row.s32[b]).abs() <= 1e-5 * row.d[b] * 4064.0);
            }
        }
    }
}
