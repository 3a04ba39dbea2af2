//! Cache-blocked f32 GEMM with both operands packed: `out [m, n] = A [m, k] · W [n, k]ᵀ` for
//! many activation rows: the convolutions (im2col patches packed from the image), f16/bf16
//! weights (widened while packed) and, where the CPU has AVX-512, f32 weights (packed once per
//! mapped weight, [`super::matmul`]; per call for others, [`super::gemm_f32`]).
//!
//! The classic layout of a BLIS-style GEMM, with the activations in the role of A:
//! * the weights are packed (once per call, or once for good) into panels of [`NR`] (16)
//!   weight rows, `[k][16]` each ([`PackedWeights`]); f16/bf16 weights are widened to f32
//!   while they are packed;
//! * the work is cut into tasks of `MC` activation rows by a range of weight panels; a task
//!   walks `k` in blocks of `KC`, packs its rows' slice of A for that block into panels of
//!   [`MR`] (6) rows (`[kc][6]`: 144 KiB that stay in L2), then runs the `6 x 16`
//!   microkernel over every (weight panel, row panel) pair (the `12 x 32` one over pairs of
//!   each on AVX-512), so one weight panel's block (`kc·16` values, 12 KiB; 24 KiB for a
//!   pair, half of a 48 KiB L1) is reused from L1 by all the task's row panels;
//! * the output block stays in place: the first `k` block writes it, later ones load and
//!   continue it.
//!
//! A is read through [`PackA`], so a convolution packs its im2col patches straight from the
//! image ([`super::ops::conv`]) and the patch matrix never exists.
//!
//! Every output is one FMA chain over `k` in order, from zero: the bits equal those of the
//! streaming kernel of [`super::gemm_f32`] (tested). The microkernel is AVX2 + FMA where the CPU has it (run-time detection, capped by
//! `FERRITE_ISA`), else portable Rust with the same FMAs.

use rayon::prelude::*;

use crate::cpu::kernels::detect::Isa;
use crate::cpu::OutPtr;
use crate::{DType, Error, Result};

/// Activation rows per microkernel (one packed A panel).
pub const MR: usize = 6;
/// Weight rows per microkernel (one packed weight panel, two 8-lane vectors).
pub const NR: usize = 16;
/// Depth of one packed block of `k`.
pub(crate) const KC: usize = 192;
/// Activation rows per task (a multiple of [`MR`]; `MC·KC` f32 = 144 KiB of packed A).
const MC: usize = 192;
/// Weight rows per task at most (a multiple of [`NR`]).
const NC: usize = 512;
/// Largest A (in f32 values) packed whole up front rather than per task (32 MiB).
const PREPACK_MAX: usize = 8 << 20;
/// Tasks per thread wanted (slack for uneven thread speed).
const TASKS_PER_THREAD: usize = 3;

/// A source of activation rows that packs itself.
pub trait PackA: Sync {
    /// Writes `dst[p·MR + i] = A[r0 + i][k0 + p]` for `p < kc` and `i < rows` (`rows ≤ MR`),
    /// and zeros for `rows ≤ i < MR`. `dst` holds `MR·kc` values.
    fn pack(&self, r0: usize, rows: usize, k0: usize, kc: usize, dst: &mut [f32]);
}

/// A row-major `[m, k]` matrix.
pub struct RowMajor<'a> {
    pub x: &'a [f32],
    pub k: usize,
}

impl PackA for RowMajor<'_> {
    fn pack(&self, r0: usize, rows: usize, k0: usize, kc: usize, dst: &mut [f32]) {
        let src: [&[f32]; MR] =
            std::array::from_fn(|i| if i < rows { &self.x[(r0 + i) * self.k + k0..][..kc] } else { &ZEROS[..kc] });
        interleave(src, &mut dst[..MR * kc]);
    }
}

/// Zeros for the missing rows of a panel (and a convolution's padding): `kc` never exceeds [`KC`].
pub(crate) static ZEROS: [f32; KC] = [0.0; KC];

/// `dst[p·6 + i] = src[i][p]`: six rows of equal length interleaved into a packed panel (of
/// any length; a missing row taken from [`ZEROS`] bounds it by [`KC`]).
pub(crate) fn interleave(src: [&[f32]; MR], dst: &mut [f32]) {
    let len = src[0].len();
    assert!(src.iter().all(|s| s.len() == len) && dst.len() == MR * len, "interleave extents");
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 was just detected; the extents were checked above.
        return unsafe { super::kernels::gemm_avx2::interleave6(src.map(|s| s.as_ptr()), len, dst.as_mut_ptr()) };
    }
    for (p, d) in dst.chunks_exact_mut(MR).enumerate() {
        for (d, s) in d.iter_mut().zip(&src) {
            *d = s[p];
        }
    }
}

/// Weights `[n, k]` packed as `⌈n/16⌉` panels of `[k][16]` f32 (rows past `n` zero).
pub struct PackedWeights {
    data: Vec<f32>,
    n: usize,
    k: usize,
}

impl Drop for PackedWeights {
    fn drop(&mut self) {
        super::buffers::recycle(std::mem::take(&mut self.data));
    }
}

impl PackedWeights {
    /// Packs `w`, `n` rows of `k` values of `dtype` (f32, f16 or bf16; little-endian bytes,
    /// any alignment).
    pub fn new(w: &[u8], dtype: DType, n: usize, k: usize) -> Result<PackedWeights> {
        let size = match dtype {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            other => return Err(Error::UnsupportedDType { dtype: other, op: "gemm (packed weights)" }),
        };
        let row_bytes = k.checked_mul(size).ok_or_else(|| Error::shape("gemm", format!("k={k} overflows")))?;
        if n.checked_mul(row_bytes) != Some(w.len()) {
            return Err(Error::shape("gemm", format!("weights of {} bytes for {n} rows of {k} {dtype:?}", w.len())));
        }
        let panels = n.div_ceil(NR);
        let mut data = super::buffers::with_capacity(panels * k * NR);
        // SAFETY: every element is written below (each panel's 16 lanes over all of `k`).
        #[allow(clippy::uninit_vec)]
        unsafe {
            data.set_len(panels * k * NR)
        };
        data.par_chunks_mut((k * NR).max(1)).enumerate().for_each(|(jp, panel)| {
            // The panel's 16 rows (fewer in the last panel), written one `k` step at a time.
            let rows: Vec<&[u8]> =
                (jp * NR..((jp + 1) * NR).min(n)).map(|r| &w[r * row_bytes..][..row_bytes]).collect();
            match dtype {
                DType::F32 if rows.len() == NR => fill_panel_f32(panel, &rows, k),
                DType::F32 => fill_panel(panel, &rows, |r, p| {
                    f32::from_le_bytes([r[4 * p], r[4 * p + 1], r[4 * p + 2], r[4 * p + 3]])
                }),
                DType::F16 => {
                    fill_panel(panel, &rows, |r, p| half::f16::from_le_bytes([r[2 * p], r[2 * p + 1]]).to_f32())
                }
                _ => fill_panel(panel, &rows, |r, p| half::bf16::from_le_bytes([r[2 * p], r[2 * p + 1]]).to_f32()),
            }
        });
        Ok(PackedWeights { data, n, k })
    }

    /// Weight rows.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Values per weight row.
    pub fn k(&self) -> usize {
        self.k
    }
}

/// [`fill_panel`] for 16 rows of f32: 16 x 16 tiles copied out of the rows, then transposed in
/// L1 (about 4x faster than a value at a time from 16 rows).
fn fill_panel_f32(panel: &mut [f32], rows: &[&[u8]], k: usize) {
    let mut tile = [[0f32; NR]; NR];
    let whole = k / NR * NR;
    for p0 in (0..whole).step_by(NR) {
        for (t, r) in tile.iter_mut().zip(rows) {
            for (v, b) in t.iter_mut().zip(r[4 * p0..4 * (p0 + NR)].chunks_exact(4)) {
                *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        for (q, d) in panel[p0 * NR..(p0 + NR) * NR].chunks_exact_mut(NR).enumerate() {
            for (d, t) in d.iter_mut().zip(&tile) {
                *d = t[q];
            }
        }
    }
    for p in whole..k {
        for (d, r) in panel[p * NR..(p + 1) * NR].iter_mut().zip(rows) {
            *d = f32::from_le_bytes([r[4 * p], r[4 * p + 1], r[4 * p + 2], r[4 * p + 3]]);
        }
    }
}

/// `panel[p·16 + j] = get(rows[j], p)`, zeros for `j ≥ rows.len()`.
#[inline(always)]
fn fill_panel(panel: &mut [f32], rows: &[&[u8]], get: impl Fn(&[u8], usize) -> f32) {
    if let Ok(full) = <&[&[u8]; NR]>::try_from(rows) {
        for (p, d) in panel.chunks_exact_mut(NR).enumerate() {
            for (d, r) in d.iter_mut().zip(full) {
                *d = get(r, p);
            }
        }
    } else {
        for (p, d) in panel.chunks_exact_mut(NR).enumerate() {
            for (j, d) in d.iter_mut().enumerate() {
                *d = rows.get(j).map_or(0.0, |r| get(r, p));
            }
        }
    }
}

/// The microkernel: `6 x 16` output block at `c` (rows `ldc` apart) from packed panels.
pub(crate) type Micro = unsafe fn(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, load: bool);

pub(crate) fn micro(simd: bool) -> Micro {
    #[cfg(target_arch = "x86_64")]
    if simd && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        return super::kernels::gemm_avx2::packed_6x16;
    }
    let _ = simd;
    portable_6x16
}

/// The portable microkernel: the same FMAs in the same order as the AVX2 one.
///
/// # Safety
/// As [`super::kernels::gemm_avx2::packed_6x16`], without the CPU requirement.
unsafe fn portable_6x16(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, load: bool) {
    // SAFETY: the caller guarantees the extents.
    unsafe {
        let (a, b) = (std::slice::from_raw_parts(a, MR * kc), std::slice::from_raw_parts(b, NR * kc));
        let mut acc = [[0f32; NR]; MR];
        if load {
            for (i, r) in acc.iter_mut().enumerate() {
                r.copy_from_slice(std::slice::from_raw_parts(c.add(i * ldc), NR));
            }
        }
        for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
            for (r, &av) in acc.iter_mut().zip(ap) {
                for (s, &bv) in r.iter_mut().zip(bp) {
                    *s = av.mul_add(bv, *s);
                }
            }
        }
        for (i, r) in acc.iter().enumerate() {
            std::slice::from_raw_parts_mut(c.add(i * ldc), NR).copy_from_slice(r);
        }
    }
}

/// `out [m, n] = A [m, k] · Wᵀ`, on the current rayon pool, with the best microkernel.
pub fn gemm(a: &impl PackA, m: usize, w: &PackedWeights, out: &mut [f32]) -> Result<()> {
    gemm_with(a, m, w, out, Isa::best())
}

/// The `12 x 32` AVX-512 microkernel where `isa` allows it and the CPU has AVX-512F.
pub(crate) fn wide(isa: Isa) -> Option<Wide> {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512Vnni && is_x86_feature_detected!("avx512f") {
        return Some(super::kernels::gemm_avx512::packed_12x32);
    }
    let _ = isa;
    None
}

/// The `12 x 32` microkernel: two activation panels, two weight panels (see
/// [`super::kernels::gemm_avx512`]).
pub(crate) type Wide = unsafe fn(usize, *const f32, *const f32, *const f32, *const f32, *mut f32, usize, bool);

/// [`gemm`] with the kernels of `isa`: on AVX-512 the `12 x 32` kernel for whole pairs of
/// panels and the AVX2 `6 x 16` one for the rest; AVX2; or portable (`Isa::Scalar`). Every
/// choice gives the same bits.
pub(crate) fn gemm_with(a: &impl PackA, m: usize, w: &PackedWeights, out: &mut [f32], isa: Isa) -> Result<()> {
    let (n, k) = (w.n, w.k);
    if m.checked_mul(n) != Some(out.len()) {
        return Err(Error::shape("gemm", format!("out {} for m={m}, n={n}", out.len())));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        out.fill(0.0);
        return Ok(());
    }
    let kernel = micro(isa != Isa::Scalar);
    let wide = wide(isa);
    let threads = rayon::current_num_threads().max(1);
    let row_blocks = m.div_ceil(MC);
    let panels = n.div_ceil(NR);
    // Weight panels per task: at most NC rows, fewer when the row blocks alone leave threads idle.
    let want = (threads * TASKS_PER_THREAD).div_ceil(row_blocks);
    let per_task = panels.div_ceil(want).clamp(1, NC / NR);
    let col_blocks = panels.div_ceil(per_task);
    // With several column blocks per row block, A is packed once up front (when it is small
    // enough) instead of once per task: block `k0` of row panel `ip` at `k0·m_pad + ip·MR·kc`.
    let m_pad = m.div_ceil(MR) * MR;
    let whole_a = (col_blocks > 1 && m_pad * k <= PREPACK_MAX).then(|| {
        // Every value is written below (all row panels of every block of `k`).
        let mut packed = super::buffers::overwritable(m_pad * k);
        let mut parts = Vec::new();
        let mut rest = &mut packed[..];
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            let (block, r) = rest.split_at_mut(m_pad * kc);
            parts.extend(block.chunks_mut(MR * kc).enumerate().map(|(ip, d)| (k0, kc, ip, d)));
            rest = r;
        }
        parts.into_par_iter().for_each(|(k0, kc, ip, d)| a.pack(ip * MR, MR.min(m - ip * MR), k0, kc, d));
        packed
    });
    let dst = OutPtr(out.as_mut_ptr());
    (0..row_blocks * col_blocks).into_par_iter().for_each_init(
        || if whole_a.is_some() { Vec::new() } else { vec![0f32; MC * KC] },
        |abuf, t| {
            let (rb, cb) = (t / col_blocks, t % col_blocks);
            let (i0, i1) = (rb * MC, ((rb + 1) * MC).min(m));
            let (p0, p1) = (cb * per_task, ((cb + 1) * per_task).min(panels));
            let row_panels = (i1 - i0).div_ceil(MR);
            let mut k0 = 0;
            while k0 < k {
                let kc = KC.min(k - k0);
                let abuf: &[f32] = match &whole_a {
                    Some(packed) => &packed[k0 * m_pad + i0 * kc..][..row_panels * MR * kc],
                    None => {
                        for ip in 0..row_panels {
                            let r0 = i0 + ip * MR;
                            a.pack(r0, MR.min(i1 - r0), k0, kc, &mut abuf[ip * MR * kc..][..MR * kc]);
                        }
                        abuf
                    }
                };
                // One 6 x 16 block: row panel `ip` of this task against weight panel `jp`.
                let one = |ip: usize, jp: usize| {
                    let bp = w.data[(jp * k + k0) * NR..].as_ptr();
                    let (c0, cols) = (jp * NR, NR.min(n - jp * NR));
                    let r0 = i0 + ip * MR;
                    let rows = MR.min(i1 - r0);
                    let ap = abuf[ip * MR * kc..].as_ptr();
                    // SAFETY: the packed panels hold `MR·kc` and `NR·kc` values from `ap`
                    // and `bp`; a full block writes rows r0..r0+6 x columns c0..c0+16 of the
                    // `m x n` output, inside it and owned by this task alone; partial
                    // blocks go through a local `6 x 16` buffer.
                    unsafe {
                        let c = dst.get().add(r0 * n + c0);
                        if rows == MR && cols == NR {
                            kernel(kc, ap, bp, c, n, k0 > 0);
                        } else {
                            let mut tmp = [0f32; MR * NR];
                            if k0 > 0 {
                                for i in 0..rows {
                                    std::ptr::copy_nonoverlapping(c.add(i * n), tmp[i * NR..].as_mut_ptr(), cols);
                                }
                            }
                            kernel(kc, ap, bp, tmp.as_mut_ptr(), NR, k0 > 0);
                            for i in 0..rows {
                                std::ptr::copy_nonoverlapping(tmp[i * NR..].as_ptr(), c.add(i * n), cols);
                            }
                        }
                    }
                };
                // Whole row panels and whole weight panels of this task.
                let full_rows = (i1 - i0) / MR;
                let full_panels = p1.min(n / NR);
                let mut jp = p0;
                while jp < p1 {
                    let mut ip = 0;
                    if let Some(wide) = wide.filter(|_| jp + 2 <= full_panels) {
                        while ip + 2 <= full_rows {
                            let b = |j: usize| w.data[(j * k + k0) * NR..].as_ptr();
                            let a = |i: usize| abuf[i * MR * kc..].as_ptr();
                            // SAFETY: row panels ip, ip+1 and weight panels jp, jp+1 are whole,
                            // so the block of rows i0+ip·6 .. +12 and columns jp·16 .. +32 lies
                            // inside the `m x n` output and belongs to this task alone.
                            unsafe {
                                let c = dst.get().add((i0 + ip * MR) * n + jp * NR);
                                wide(kc, a(ip), a(ip + 1), b(jp), b(jp + 1), c, n, k0 > 0);
                            }
                            ip += 2;
                        }
                        for jq in [jp, jp + 1] {
                            for i in ip..row_panels {
                                one(i, jq);
                            }
                        }
                        jp += 2;
                    } else {
                        for i in 0..row_panels {
                            one(i, jp);
                        }
                        jp += 1;
                    }
                }
                k0 += kc;
            }
        },
    );
    if let Some(packed) = whole_a {
        super::buffers::recycle(packed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// Odd shapes (partial row and weight panels, `k` across several blocks, `k` of 1) on 1 and
    /// 3 threads, every kernel level this CPU has (portable, AVX2 `6 x 16`, AVX-512 `12 x 32`
    /// with `6 x 16` edges): the bits of the streaming GEMM (one FMA chain per output),
    /// which is itself tested against an f64 reference.
    #[test]
    fn equals_the_streaming_gemm_bit_for_bit() {
        let mut rng = StdRng::seed_from_u64(21);
        for threads in [1usize, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
            for (m, k, n) in [(1usize, 1usize, 1usize), (7, 5, 17), (13, 300, 33), (150, 513, 40), (301, 64, 530)] {
                let x: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
                let w: Vec<u8> = (0..n * k).flat_map(|_| rng.gen_range(-1.0f32..1.0).to_le_bytes()).collect();
                let mut want = vec![0f32; m * n];
                crate::cpu::gemm_f32::gemm_with(&x, m, k, &w, n, &mut want, false).expect("streaming");
                let packed = PackedWeights::new(&w, DType::F32, n, k).expect("pack");
                for isa in Isa::ALL.into_iter().filter(|i| i.supported()) {
                    let mut got = vec![f32::NAN; m * n];
                    pool.install(|| gemm_with(&RowMajor { x: &x, k }, m, &packed, &mut got, isa)).expect("gemm");
                    assert_eq!(bits(&got), bits(&want), "{isa:?} threads={threads} m={m} k={k} n={n}");
                }
            }
        }
    }

    /// f16 and bf16 weights are widened exactly while packed.
    #[test]
    fn half_precision_weights_are_widened_exactly() {
        let mut rng = StdRng::seed_from_u64(22);
        let (m, k, n) = (20, 70, 19);
        let x: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        let wf: Vec<f32> = (0..n * k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        let h: Vec<u8> = wf.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
        let b: Vec<u8> = wf.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect();
        let wide_h: Vec<u8> = wf.iter().flat_map(|&v| half::f16::from_f32(v).to_f32().to_le_bytes()).collect();
        let wide_b: Vec<u8> = wf.iter().flat_map(|&v| half::bf16::from_f32(v).to_f32().to_le_bytes()).collect();
        for (bytes, dtype, wide) in [(&h, DType::F16, &wide_h), (&b, DType::BF16, &wide_b)] {
            let mut want = vec![0f32; m * n];
            crate::cpu::gemm_f32::gemm_with(&x, m, k, wide, n, &mut want, false).expect("streaming");
            let mut got = vec![0f32; m * n];
            gemm(&RowMajor { x: &x, k }, m, &PackedWeights::new(bytes, dtype, n, k).expect("pack"), &mut got)
                .expect("gemm");
            assert_eq!(bits(&got), bits(&want), "{dtype:?}");
        }
    }

    #[test]
    fn bad_sizes_and_dtypes_are_errors() {
        let w = vec![0u8; 4 * 3 * 5];
        assert!(PackedWeights::new(&w, DType::F32, 3, 5).is_ok());
        assert!(PackedWeights::new(&w[1..], DType::F32, 3, 5).is_err());
        assert!(matches!(PackedWeights::new(&w, DType::Q8_0, 3, 5), Err(Error::UnsupportedDType { .. })));
        let p = PackedWeights::new(&w, DType::F32, 3, 5).expect("pack");
        let x = vec![0f32; 2 * 5];
        assert!(gemm(&RowMajor { x: &x, k: 5 }, 2, &p, &mut [0f32; 5]).is_err());
    }
}
