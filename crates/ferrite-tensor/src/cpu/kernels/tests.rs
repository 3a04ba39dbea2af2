//! Every kernel of every supported level against an f64 reference: the dequantized weights
//! (bit-exact, see `tests/golden_dequant.rs`) times the original f32 activations.
//!
//! Tolerance for quantized weights: activation quantization moves each `x` by at most half a
//! step (`d_x / 2`), so `|got - ref| <= Σ |w|·d_x/2 + 1e-4·Σ |w·x|` (the second term covers f32
//! accumulation). Tighter: against the f64 dot of the weights with the *dequantized*
//! activations (`d_x·q_x`) every level must agree within `2e-5·Σ |w·x|`, which only f32
//! rounding and reassociation can explain. The SIMD levels must equal the scalar kernels bit for
//! bit (all of them mirror ggml's order of operations).

use half::{bf16, f16};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Isa, Kernels, UnpackedRows, MAX_ROWS};
use crate::quant::act::{ActFormat, ActRow, QuantizedActs};
use crate::quant::dequantize;
use crate::DType;

/// Random blocks of `dtype` with sane f16 scales (random bytes elsewhere).
pub(crate) fn random_blocks(dtype: DType, nblocks: usize, rng: &mut StdRng) -> Vec<u8> {
    let ts = dtype.type_size();
    let mut w: Vec<u8> = (0..nblocks * ts).map(|_| rng.gen()).collect();
    let scale_offsets: &[usize] = match dtype {
        DType::Q4_0 | DType::Q5_0 | DType::Q8_0 => &[0],
        DType::Q4_1 | DType::Q4_K | DType::Q5_K => &[0, 2],
        DType::Q6_K => &[208],
        _ => &[],
    };
    for b in 0..nblocks {
        for &o in scale_offsets {
            let s = rng.gen_range(0.002f32..0.05) * if rng.gen_bool(0.3) { -1.0 } else { 1.0 };
            w[b * ts + o..b * ts + o + 2].copy_from_slice(&f16::from_f32(s).to_le_bytes());
        }
    }
    w
}

pub(crate) fn random_floats(dtype: DType, k: usize, rng: &mut StdRng) -> Vec<u8> {
    let v: Vec<f32> = (0..k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    match dtype {
        DType::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        DType::F16 => v.iter().flat_map(|&x| f16::from_f32(x).to_le_bytes()).collect(),
        _ => v.iter().flat_map(|&x| bf16::from_f32(x).to_le_bytes()).collect(),
    }
}

fn acts(rng: &mut StdRng, rows: usize, k: usize) -> Vec<f32> {
    (0..rows * k).map(|i| rng.gen_range(-2.0f32..2.0) * if i % 7 == 0 { 3.0 } else { 1.0 }).collect()
}

/// Largest |x| in the activation block (of `format`) holding element `e`.
fn amax(x: &[f32], e: usize, format: ActFormat) -> f64 {
    let blk = if format == ActFormat::Q8K { 256 } else { 32 };
    let s = e / blk * blk;
    x[s..s + blk].iter().fold(0f64, |m, v| m.max(v.abs() as f64))
}

/// `m · (s - d·Σq)` for Q4_1 block `b` (bytes at `blk`): what ggml's fp16 rounding of the q8_1
/// sum `s` adds to the dot product.
fn q4_1_sum_correction(blk: &[u8], row: &ActRow<'_>, b: usize) -> f64 {
    let m = f16::from_le_bytes([blk[2], blk[3]]).to_f64();
    let sum: i32 = row.qs[32 * b..32 * b + 32].iter().map(|&q| q as i32).sum();
    m * (row.s32[b] as f64 - row.d[b] as f64 * sum as f64)
}

const QUANT: [DType; 7] = [DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K];

#[test]
fn quantized_kernels_match_f64_reference_on_every_level() {
    let mut rng = StdRng::seed_from_u64(7);
    let levels: Vec<Kernels> = Isa::ALL.into_iter().filter_map(Kernels::for_isa).collect();
    assert!(levels.iter().any(|k| k.isa() == Isa::Scalar));
    eprintln!("levels tested: {:?}", levels.iter().map(|k| k.isa()).collect::<Vec<_>>());
    for dtype in QUANT {
        let counts: &[usize] = if dtype.block_size() == 32 { &[1, 3, 7, 8, 9, 18, 29] } else { &[1, 3, 5] };
        for &nb in counts {
            let k = nb * dtype.block_size();
            // 9 weight rows: whole tiles of 2 (AVX2) or 4 (AVX-512) rows, and an odd last row.
            let nrows = 9;
            let w = random_blocks(dtype, nb * nrows, &mut rng);
            let row_bytes = nb * dtype.type_size();
            let mut wf = vec![0f32; k * nrows];
            dequantize(dtype, &w, &mut wf).expect("dequantize");
            for r in 1..=MAX_ROWS {
                let x = acts(&mut rng, r, k);
                let mut qa = QuantizedActs::new();
                let format = ActFormat::for_weights(dtype).expect("quantized");
                qa.quantize(&x, k, format).expect("quantize");
                let rows: Vec<_> = (0..r).map(|i| qa.row(i)).collect();
                let stride = r + 1;
                let mut scalar_out = vec![f32::NAN; nrows * stride];
                for kern in &levels {
                    let mut out = vec![f32::NAN; nrows * stride];
                    kern.quant_dot(dtype, &w, row_bytes, &rows, &mut out, stride).expect("quant_dot");
                    if kern.isa() == Isa::Scalar {
                        scalar_out.clone_from(&out);
                    }
                    for j in 0..nrows {
                        assert!(out[j * stride + r].is_nan(), "wrote past its rows");
                        for i in 0..r {
                            let (wr, xr) = (&wf[j * k..(j + 1) * k], &x[i * k..(i + 1) * k]);
                            let reference: f64 = wr.iter().zip(xr).map(|(&a, &b)| a as f64 * b as f64).sum();
                            let row = qa.row(i);
                            // Half a step of the unrounded scale, plus the fp16 rounding of the
                            // scale (|q| <= 127), plus Q4_1's rounded sums.
                            let step: f64 = wr
                                .iter()
                                .enumerate()
                                .map(|(e, &a)| {
                                    a.abs() as f64 * (amax(xr, e, format) * (0.5 / 127.0 + 1.0 / 2048.0)) * 1.0001
                                })
                                .sum::<f64>()
                                + if dtype == DType::Q4_1 {
                                    (0..nb)
                                        .map(|b| q4_1_sum_correction(&w[(j * nb + b) * 20..], &row, b).abs())
                                        .sum::<f64>()
                                } else {
                                    0.0
                                };
                            let mag: f64 = wr.iter().zip(xr).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
                            let got = out[j * stride + i] as f64;
                            let mut exact: f64 = wr
                                .iter()
                                .enumerate()
                                .map(|(e, &a)| a as f64 * row.d[e / 32] as f64 * row.qs[e] as f64)
                                .sum();
                            if dtype == DType::Q4_1 {
                                // ggml's Q4_1 dot takes `m · s` with the fp16-rounded sum `s`.
                                exact +=
                                    (0..nb).map(|b| q4_1_sum_correction(&w[(j * nb + b) * 20..], &row, b)).sum::<f64>();
                            }
                            assert!(
                                (got - exact).abs() <= 2e-5 * mag + 1e-6,
                                "{:?} {dtype:?} nb={nb} rows={r} row {j}/{i}: got {got}, exact {exact}",
                                kern.isa()
                            );
                            let tol = step + 1e-4 * mag + 1e-6;
                            assert!(
                                (got - reference).abs() <= tol,
                                "{:?} {dtype:?} nb={nb} rows={r} row {j}/{i}: got {got}, f64 reference {reference}, tol {tol}",
                                kern.isa()
                            );
                        }
                    }
                }
                for kern in &levels {
                    let mut out = vec![f32::NAN; nrows * stride];
                    kern.quant_dot(dtype, &w, row_bytes, &rows, &mut out, stride).expect("quant_dot");
                    for j in 0..nrows {
                        for i in 0..r {
                            let wr = &wf[j * k..(j + 1) * k];
                            let xr = &x[i * k..(i + 1) * k];
                            let mag: f64 = wr.iter().zip(xr).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
                            let (a, b) = (out[j * stride + i], scalar_out[j * stride + i]);
                            // Every level mirrors ggml's rounding, so they agree to the bit.
                            let _ = mag;
                            assert_eq!(
                                a.to_bits(),
                                b.to_bits(),
                                "{:?} {dtype:?} nb={nb}: {a} vs scalar {b}",
                                kern.isa()
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The prefill path that unpacks weight rows once (`unpack_rows` + `quant_dot_unpacked`)
/// gives `quant_dot`'s bits on every level that has it: every row count, odd weight rows,
/// short rows, tails of the 8-block groups and rows longer than one 64-block scale table.
#[test]
fn unpacked_rows_give_quant_dot_bits() {
    let mut rng = StdRng::seed_from_u64(11);
    let levels: Vec<Kernels> = Isa::ALL.into_iter().filter_map(Kernels::for_isa).collect();
    let mut unpacked_any = false;
    for dtype in QUANT {
        for nb in [1usize, 3, 8, 9, 29, 64, 70, 131] {
            let k = nb * dtype.block_size();
            let row_bytes = nb * dtype.type_size();
            for nrows in [1usize, 2, 5, 8] {
                let w = random_blocks(dtype, nb * nrows, &mut rng);
                for r in 1..=MAX_ROWS {
                    let x = acts(&mut rng, r, k);
                    let mut qa = QuantizedActs::new();
                    qa.quantize(&x, k, ActFormat::for_weights(dtype).expect("quantized")).expect("quantize");
                    let rows: Vec<_> = (0..r).map(|i| qa.row(i)).collect();
                    for kern in &levels {
                        let mut u = UnpackedRows::new();
                        if !kern.unpack_rows(dtype, &w, &mut u).expect("unpack") {
                            assert!(kern
                                .quant_dot_unpacked(dtype, &w, row_bytes, &u, &rows, &mut [0.0; 64], r)
                                .is_err());
                            continue;
                        }
                        unpacked_any = true;
                        let stride = r + 1;
                        let (mut a, mut b) = (vec![f32::NAN; nrows * stride], vec![f32::NAN; nrows * stride]);
                        kern.quant_dot(dtype, &w, row_bytes, &rows, &mut a, stride).expect("quant_dot");
                        kern.quant_dot_unpacked(dtype, &w, row_bytes, &u, &rows, &mut b, stride).expect("unpacked");
                        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                        assert_eq!(bits(&a), bits(&b), "{:?} {dtype:?} nb={nb} rows={nrows} r={r}", kern.isa());
                        // Scratch filled from other weights is refused.
                        let other = w.clone();
                        assert!(kern.quant_dot_unpacked(dtype, &other, row_bytes, &u, &rows, &mut b, stride).is_err());
                    }
                }
            }
        }
    }
    if Kernels::for_isa(Isa::Avx2).is_some() {
        assert!(unpacked_any, "AVX2 unpacks Q4_0, Q4_1 and Q5_0");
    }
}

#[test]
fn float_kernels_match_f64_reference_on_every_level() {
    let mut rng = StdRng::seed_from_u64(11);
    for kern in Isa::ALL.into_iter().filter_map(Kernels::for_isa) {
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            for k in [1usize, 7, 16, 33, 100, 577] {
                let nrows = 2;
                let w = random_floats(dtype, k * nrows, &mut rng);
                let mut wf = vec![0f32; k * nrows];
                dequantize(dtype, &w, &mut wf).expect("widen");
                for r in 1..=MAX_ROWS {
                    let x = acts(&mut rng, r, k);
                    let rows: Vec<&[f32]> = x.chunks_exact(k).collect();
                    let mut out = vec![f32::NAN; nrows * r];
                    kern.float_dot(dtype, &w, k * dtype.type_size(), &rows, &mut out, r).expect("float_dot");
                    for j in 0..nrows {
                        for i in 0..r {
                            let pairs = wf[j * k..(j + 1) * k].iter().zip(&x[i * k..(i + 1) * k]);
                            let reference: f64 = pairs.clone().map(|(&a, &b)| a as f64 * b as f64).sum();
                            let mag: f64 = pairs.map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
                            let got = out[j * r + i] as f64;
                            assert!(
                                (got - reference).abs() <= 1e-5 * mag + 1e-6,
                                "{:?} {dtype:?} k={k}: {got} vs {reference}",
                                kern.isa()
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn kernels_reject_bad_shapes() {
    let kern = Kernels::best();
    let mut qa = QuantizedActs::new();
    qa.quantize(&[0.5; 64], 64, ActFormat::Q8_0).expect("quantize");
    let row = qa.row(0);
    let w = vec![0u8; 2 * 18];
    let mut out = [0f32; 8];
    assert!(kern.quant_dot(DType::Q4_0, &w, 18, &[row], &mut out, 1).is_ok());
    assert!(kern.quant_dot(DType::Q4_0, &w[..35], 18, &[row], &mut out, 1).is_err());
    assert!(kern.quant_dot(DType::Q4_0, &w, 17, &[row], &mut out, 1).is_err());
    assert!(kern.quant_dot(DType::Q4_0, &w, 18, &[row; MAX_ROWS + 1], &mut out, 5).is_err());
    assert!(kern.quant_dot(DType::Q4_0, &w, 18, &[row, row], &mut out[..2], 2).is_err());
    assert!(kern.quant_dot(DType::F32, &w, 18, &[row], &mut out, 1).is_err());
    // A weight row longer than the activation row.
    let long = vec![0u8; 9 * 18];
    assert!(kern.quant_dot(DType::Q4_0, &long, 9 * 18, &[row], &mut out, 1).is_err());
}
