//! 8-bit activation blocks for the integer dot products, rounded exactly as llama.cpp's CPU
//! backend rounds them.
//!
//! ggml pairs each weight format with its own activation format (`vec_dot_type` in
//! `ggml-cpu.c`), and so do we ([`ActFormat::for_weights`]):
//!
//! * [`ActFormat::Q8_0`] (Q4_0, Q5_0, Q8_0 weights), as `quantize_row_q8_0`: per 32 values
//!   `q = round(x · 127/amax)` (to nearest, ties to even) and the scale `amax/127` stored as
//!   fp16, so kernels see the fp16-rounded scale.
//! * [`ActFormat::Q8_1`] (Q4_1), as `quantize_row_q8_1`: as Q8_0, plus the block sum
//!   `s = fp16(d · Σq)` with the unrounded f32 `d`; the `m · s` term of the Q4_1 dot uses this
//!   rounded `s`.
//! * [`ActFormat::Q8K`] (Q4_K, Q5_K, Q6_K), as `quantize_row_q8_K_ref`: per 256 values, with
//!   `max` the signed value of largest magnitude (first one on ties), `iscale = -127/max`,
//!   `q = min(127, nearest_int(iscale · x))` and the f32 scale `d = 1/iscale`; per-16 sums.
//!
//! Every format is stored the same way, so one set of kernels reads them all: per 32 values the
//! scale `d` (a Q8K scale is repeated for its 8 sub-blocks) and the scaled block sum `s32` (the
//! q8_1 `s`), the integer sums per 16 (`bsums`, as q8_K) and per 4 values (`sum4`: with them a
//! kernel can treat signed weights as unsigned bytes for `vpdpbusd` and subtract the offset
//! exactly, lane by lane).
//!
//! Stored as structure of arrays (one contiguous `i8` run per row) so SIMD loads are plain, and
//! each row padded with zero blocks to a multiple of [`ACT_GROUP`] values, so kernels can read a
//! whole group of 8 blocks past a short tail.

use half::f16;
use rayon::prelude::*;

use crate::cpu::ops::{rows_per_task, PARALLEL_MIN_ELEMS};

use crate::{DType, Error, Result};

/// Values per activation block.
pub const ACT_BLOCK: usize = 32;
/// Rows are padded with zero blocks to a multiple of this many values (8 blocks).
pub const ACT_GROUP: usize = 256;

/// The ggml activation format a weight type's dot product consumes (its `vec_dot_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActFormat {
    /// `block_q8_0`: fp16 scale per 32.
    Q8_0,
    /// `block_q8_1`: fp16 scale and fp16 scaled sum per 32.
    Q8_1,
    /// `block_q8_K`: f32 scale per 256, integer sums per 16.
    Q8K,
}

impl ActFormat {
    /// The format ggml quantizes activations to for `dtype` weights (`None` for float weights).
    pub fn for_weights(dtype: DType) -> Option<ActFormat> {
        match dtype {
            DType::Q4_0 | DType::Q5_0 | DType::Q8_0 => Some(ActFormat::Q8_0),
            DType::Q4_1 => Some(ActFormat::Q8_1),
            DType::Q4_K | DType::Q5_K | DType::Q6_K => Some(ActFormat::Q8K),
            DType::F32 | DType::F16 | DType::BF16 => None,
        }
    }

    /// Values per scale of this format.
    fn block(self) -> usize {
        match self {
            ActFormat::Q8K => 256,
            _ => ACT_BLOCK,
        }
    }
}

/// `rows` quantized activation rows of `k` values.
#[derive(Debug, Clone, Default)]
pub struct QuantizedActs {
    k: usize,
    kp: usize,
    rows: usize,
    qs: Vec<i8>,
    d: Vec<f32>,
    s32: Vec<f32>,
    bsums: Vec<i16>,
    sum4: Vec<i32>,
}

/// One row's input and outputs: values, quants, scales, scaled sums, 16-value sums, 4-value sums.
type RowParts<'a> = (&'a [f32], &'a mut [i8], &'a mut [f32], &'a mut [f32], &'a mut [i16], &'a mut [i32]);

/// Quantizes one row `xr` (`k` values) into `qs` (`k` values) and its block data, in `format`.
#[allow(clippy::too_many_arguments)]
fn quantize_row(
    kern: &crate::cpu::kernels::Kernels,
    format: ActFormat,
    xr: &[f32],
    qs: &mut [i8],
    d: &mut [f32],
    s32: &mut [f32],
    bsums: &mut [i16],
    sum4: &mut [i32],
) {
    if format == ActFormat::Q8K {
        for (i, (xb, qb)) in xr.chunks_exact(256).zip(qs.chunks_exact_mut(256)).enumerate() {
            let (xb, qb) = (xb.try_into().expect("256"), qb.try_into().expect("256"));
            let mut sums = [0i32; 16];
            let dk = quantize_q8k_block(xb, qb, &mut sums);
            d[8 * i..8 * i + 8].fill(dk);
            for j in 0..8 {
                s32[8 * i + j] = dk * (sums[2 * j] + sums[2 * j + 1]) as f32;
            }
            for (o, &v) in bsums[16 * i..16 * i + 16].iter_mut().zip(&sums) {
                *o = v as i16; // |v| <= 16 · 127
            }
        }
    } else {
        let (qc, _) = qs.as_chunks_mut::<32>();
        let (xc, _) = xr.as_chunks::<32>();
        for (b, (xb, qb)) in xc.iter().zip(qc).enumerate() {
            let (d32, sa, sb) = kern.quantize_block(xb, qb);
            // ggml stores the scale as fp16 (GGML_CPU_FP32_TO_FP16, round to nearest even).
            let dh = f16::from_f32(d32).to_f32();
            d[b] = dh;
            bsums[2 * b] = sa as i16;
            bsums[2 * b + 1] = sb as i16;
            s32[b] = match format {
                // quantize_row_q8_1: `y.s = FP32_TO_FP16(d * Σq)` with the f32 `d`.
                ActFormat::Q8_1 => f16::from_f32(d32 * (sa + sb) as f32).to_f32(),
                _ => dh * (sa + sb) as f32,
            };
        }
    }
    for (s4, q4) in sum4.iter_mut().zip(qs.chunks_exact(4)) {
        *s4 = q4.iter().map(|&q| q as i32).sum();
    }
}

/// Sets `v` to `len` zeros. A buffer that must grow is allocated zeroed (`vec!`, which for
/// large sizes gets fresh zero pages from the OS) instead of being filled element by element:
/// prefill quantizes megabytes of activations per matmul into a new [`QuantizedActs`].
fn zeroed<T: Clone + Default>(v: &mut Vec<T>, len: usize) {
    if v.capacity() < len {
        *v = vec![T::default(); len];
    } else {
        v.clear();
        v.resize(len, T::default());
    }
}

/// One quantized activation row, padded to a multiple of [`ACT_GROUP`] values.
#[derive(Debug, Clone, Copy)]
pub struct ActRow<'a> {
    /// Quantized values (`padded_len`).
    pub qs: &'a [i8],
    /// Scale per 32 values.
    pub d: &'a [f32],
    /// `d * sum(q)` per 32 values (for Q8_1: fp16-rounded as ggml stores it).
    pub s32: &'a [f32],
    /// `sum(q)` per 16 values (q8_K `bsums`).
    pub bsums: &'a [i16],
    /// `sum(q)` per 4 values.
    pub sum4: &'a [i32],
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

    /// Quantizes `rows = x.len() / k` rows of `k` values to `format`. `k` must be a positive
    /// multiple of the format's block (32, or 256 for Q8K) and `x.len()` a multiple of `k`.
    pub fn quantize(&mut self, x: &[f32], k: usize, format: ActFormat) -> Result<()> {
        let blk = format.block();
        if k == 0 || !k.is_multiple_of(blk) || !x.len().is_multiple_of(k) {
            return Err(Error::shape(
                "quantize_activations",
                format!("{} values in rows of {k} ({format:?})", x.len()),
            ));
        }
        let kern = crate::cpu::kernels::Kernels::best();
        let rows = x.len() / k;
        let kp = k.div_ceil(ACT_GROUP) * ACT_GROUP;
        self.k = k;
        self.kp = kp;
        self.rows = rows;
        zeroed(&mut self.qs, rows * kp);
        zeroed(&mut self.d, rows * kp / 32);
        zeroed(&mut self.s32, rows * kp / 32);
        zeroed(&mut self.bsums, rows * kp / 16);
        zeroed(&mut self.sum4, rows * kp / 4);
        let one = |(xr, qs, d, s32, bsums, sum4): RowParts<'_>| {
            quantize_row(kern, format, xr, &mut qs[..k], d, s32, bsums, sum4);
        };
        // A prefill's rows over the threads (serial, the rest of the step waits on this); a few
        // decode rows are not worth the fork.
        if rows * k >= PARALLEL_MIN_ELEMS {
            let par = (
                x.par_chunks(k),
                self.qs.par_chunks_mut(kp),
                self.d.par_chunks_mut(kp / 32),
                self.s32.par_chunks_mut(kp / 32),
                self.bsums.par_chunks_mut(kp / 16),
                self.sum4.par_chunks_mut(kp / 4),
            );
            par.into_par_iter().with_min_len(rows_per_task(k)).for_each(one);
        } else {
            x.chunks(k)
                .zip(self.qs.chunks_mut(kp))
                .zip(self.d.chunks_mut(kp / 32))
                .zip(self.s32.chunks_mut(kp / 32))
                .zip(self.bsums.chunks_mut(kp / 16))
                .zip(self.sum4.chunks_mut(kp / 4))
                .for_each(|(((((a, b), c), d), e), f)| one((a, b, c, d, e, f)));
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
            bsums: &self.bsums[r * kp / 16..(r + 1) * kp / 16],
            sum4: &self.sum4[r * kp / 4..(r + 1) * kp / 4],
        }
    }
}

/// Quantizes 32 values as ggml's `quantize_row_q8_0` / `quantize_row_q8_1` do (portable
/// version; the SIMD one is in `cpu::kernels`): `q = round(x · 127/amax)`, to nearest with ties
/// to even (`_mm256_round_ps`, here the `1.5·2^23` trick, exact for |v| < 2^22; Rust never fuses
/// the add and subtract). Returns the f32 scale `amax/127` (before fp16 rounding) and the sums
/// of the two 16-value halves.
pub(crate) fn quantize_block_scalar(x: &[f32; 32], q: &mut [i8; 32]) -> (f32, i32, i32) {
    const MAGIC: f32 = 12_582_912.0;
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut s = [0i32; 2];
    for (i, (qv, &xv)) in q.iter_mut().zip(x).enumerate() {
        let v = ((xv * id + MAGIC) - MAGIC).clamp(-127.0, 127.0) as i8;
        *qv = v;
        s[i / 16] += v as i32;
    }
    (d, s[0], s[1])
}

/// Quantizes 256 values as ggml's `quantize_row_q8_K_ref`: `max` is the first value of largest
/// magnitude (signed), `iscale = -127/max`, `q = min(127, nearest_int(iscale · x))` where
/// `nearest_int` adds `1.5·2^23` to the f32 product (ties to even). Writes the 16 per-16 sums
/// (`bsums`) and returns `d = 1/iscale` (0 for an all-zero block).
pub(crate) fn quantize_q8k_block(x: &[f32; 256], q: &mut [i8; 256], sums: &mut [i32; 16]) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax == 0.0 {
        q.fill(0);
        sums.fill(0);
        return 0.0;
    }
    let iscale = -127.0 / max;
    for (qc, (xc, s)) in q.chunks_exact_mut(16).zip(x.chunks_exact(16).zip(sums.iter_mut())) {
        let mut acc = 0i32;
        for (qv, &xv) in qc.iter_mut().zip(xc) {
            let v = (((iscale * xv + MAGIC) - MAGIC) as i32).min(127);
            *qv = v as i8;
            acc += v;
        }
        *s = acc;
    }
    1.0 / iscale
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer reused for fewer or more values (a shorter `k` after a longer one, and back)
    /// holds exactly what a fresh one would: zero padding included.
    #[test]
    fn reused_buffers_quantize_like_fresh_ones() {
        let x = |n: usize| -> Vec<f32> { (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.03).collect() };
        let mut reused = QuantizedActs::new();
        for (rows, k) in [(3usize, 512usize), (5, 96), (2, 800), (4, 64)] {
            let xs = x(rows * k);
            reused.quantize(&xs, k, ActFormat::Q8_0).expect("reused");
            let mut fresh = QuantizedActs::new();
            fresh.quantize(&xs, k, ActFormat::Q8_0).expect("fresh");
            for r in 0..rows {
                let (a, b) = (reused.row(r), fresh.row(r));
                assert_eq!((a.qs, a.bsums, a.sum4), (b.qs, b.bsums, b.sum4), "rows {rows} k {k} row {r}");
                assert_eq!(
                    a.d.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    b.d.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                );
            }
        }
        let mut v = vec![7i32; 10];
        zeroed(&mut v, 6);
        assert_eq!(v, vec![0; 6]);
        zeroed(&mut v, 20);
        assert_eq!(v, vec![0; 20]);
    }

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
        // Many blocks, with exact ties (x · 127/amax = n + 0.5) and mixed magnitudes.
        for seed in 0..300u32 {
            let x: [f32; 32] = std::array::from_fn(|i| {
                let h = (seed.wrapping_mul(2_654_435_761) ^ (i as u32).wrapping_mul(40_503)) % 1_000;
                if seed % 3 == 0 {
                    (h as f32 - 500.0) * 0.5
                } else {
                    (h as f32 - 500.0) * 1e-3 * (1 + seed % 7) as f32
                }
            });
            let mut want = [0i8; 32];
            let w = quantize_block_scalar(&x, &mut want);
            for kern in Isa::ALL.into_iter().filter_map(Kernels::for_isa) {
                let mut q = [0i8; 32];
                assert_eq!(kern.quantize_block(&x, &mut q), w, "{:?} seed {seed}", kern.isa());
                assert_eq!(q, want, "{:?} seed {seed}", kern.isa());
            }
        }
        let mut q = [1i8; 32];
        assert_eq!(quantize_block_scalar(&[0.0; 32], &mut q), (0.0, 0, 0));
        assert_eq!(q, [0; 32]);
    }

    /// Hand-checked ggml roundings: the q8_0 multiplier is `127/amax` (not `1/d`), the scale is
    /// fp16, q8_1's sum is fp16 of the f32 `d · Σq`, and q8_K maps the signed max to -127.
    #[test]
    fn roundings_follow_ggml() {
        let mut x = [0f32; 256];
        x[0] = 0.3;
        x[1] = -1.1;
        x[2] = 0.55;
        x[40] = 2.0;
        let mut a = QuantizedActs::new();
        a.quantize(&x, 256, ActFormat::Q8_0).expect("q8_0");
        let r = a.row(0);
        let d = 1.1f32 / 127.0;
        assert_eq!(r.d[0], f16::from_f32(d).to_f32());
        let id = 127.0f32 / 1.1;
        assert_eq!(&r.qs[..3], &[(0.3f32 * id).round_ties_even() as i8, -127, (0.55f32 * id).round_ties_even() as i8]);
        let sum: i32 = r.qs[..32].iter().map(|&q| q as i32).sum();
        a.quantize(&x, 256, ActFormat::Q8_1).expect("q8_1");
        assert_eq!(a.row(0).s32[0], f16::from_f32(d * sum as f32).to_f32());
        a.quantize(&x, 256, ActFormat::Q8K).expect("q8_K");
        let r = a.row(0);
        let iscale = -127.0f32 / 2.0;
        assert_eq!(r.d, &[1.0 / iscale; 8]);
        assert_eq!(r.qs[40], -127);
        assert_eq!(r.qs[1], (iscale * -1.1f32).round_ties_even() as i8);
        assert!(a.quantize(&x[..64], 64, ActFormat::Q8K).is_err());
    }

    #[test]
    fn quantize_round_trips_within_half_a_step() {
        let k = 256;
        let x: Vec<f32> = (0..2 * k).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013).collect();
        let mut a = QuantizedActs::new();
        a.quantize(&x[..192], 96, ActFormat::Q8_0).expect("quantize");
        assert_eq!(a.rows(), 2);
        assert!(a.row(1).qs[96..].iter().all(|&q| q == 0), "padding is zero");
        assert!(a.quantize(&x, 33, ActFormat::Q8_0).is_err() && a.quantize(&x[..50], 96, ActFormat::Q8_0).is_err());
        assert!(a.quantize(&x, 0, ActFormat::Q8_0).is_err());
        for format in [ActFormat::Q8_0, ActFormat::Q8_1, ActFormat::Q8K] {
            a.quantize(&x, k, format).expect("quantize");
            assert_eq!(a.rows(), 2);
            for r in 0..2 {
                let row = a.row(r);
                assert_eq!(row.padded_len(), 256);
                let xr = &x[r * k..(r + 1) * k];
                for b in 0..k / 32 {
                    // The unrounded step: amax/127 of the format's block.
                    let blk = if format == ActFormat::Q8K { 256 } else { 32 };
                    let s0 = b * 32 / blk * blk;
                    let step = xr[s0..s0 + blk].iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
                    let d = row.d[b];
                    for (i, (&xv, &q)) in xr.iter().zip(row.qs).enumerate().skip(32 * b).take(32) {
                        // Half a step, plus the fp16 rounding of the scale times |q| <= 127.
                        let bound = step * 0.5 * 1.0001 + (d - step).abs() * 127.0 + 1e-7;
                        assert!((xv - d * q as f32).abs() <= bound, "{format:?} {i}");
                    }
                    let s: i32 = row.qs[32 * b..32 * b + 32].iter().map(|&q| q as i32).sum();
                    let want = if format == ActFormat::Q8_1 { row.s32[b] } else { d * s as f32 };
                    assert_eq!(row.s32[b], want);
                    assert!((row.s32[b] - d * s as f32).abs() <= 1e-3 * (d * s as f32).abs() + 1e-6);
                    assert_eq!(row.bsums[2 * b] as i32 + row.bsums[2 * b + 1] as i32, s);
                    assert_eq!(row.sum4[8 * b..8 * b + 8].iter().sum::<i32>(), s);
                }
            }
        }
    }
}
