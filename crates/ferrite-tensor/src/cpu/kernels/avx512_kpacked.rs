//! K-quant weights (Q4_K, Q6_K) packed once for AVX-512 VNNI, 16 rows per zmm as in
//! [`super::avx512_gemm`]: the matrix, its 16-row groups and the two entry points (a matmul over
//! all groups, and the groups of one fused-matvec task). Each type's layout and micro-kernel
//! live in [`super::avx512_q4k`] and [`super::avx512_q6k`] ([`Layout`]).

use super::avx512_gemm::{each_group, pack_groups, par_groups, Line, GROUP};
use crate::quant::act::{ActRow, QuantizedActs};
use crate::{DType, Error, Result};

/// A micro-kernel run: one packed group (`nsb` super-blocks) against 1..=`Layout::rows`
/// activation rows, `valid` outputs of row `r` written at `out + r·n`; `grouped`: the rows
/// belong to whole groups of 4 (the Q4_K rounding). Safety: AVX-512 VNNI, rows covering the
/// group, writable outputs. `prefetch`: the first run over this group, which fetches the
/// weight lines ahead ([`super::avx512_gemm::prefetch_ahead`]); later runs find them in cache.
pub(super) type GroupKernel = unsafe fn(
    lines: &[Line],
    nsb: usize,
    xs: &[ActRow<'_>],
    grouped: bool,
    prefetch: bool,
    out: *mut f32,
    n: usize,
    valid: usize,
);

/// One K-quant type's packed layout and kernels.
pub(super) struct Layout {
    /// Bytes of a GGUF block (256 values).
    pub block: usize,
    /// Lines per super-block of a packed group.
    pub sb_lines: usize,
    /// Activation rows per micro-kernel call, at most.
    pub rows: usize,
    /// Packs `valid` (1..=16) rows of GGUF bytes (`rb` bytes each, `nsb` blocks) into one
    /// group's lines. Safety: AVX-512 VNNI, `valid` rows, `nsb · sb_lines` lines.
    pub pack: unsafe fn(rows: &[u8], rb: usize, valid: usize, nsb: usize, dst: &mut [Line]),
    /// The micro-kernel.
    pub run: GroupKernel,
}

fn layout(dtype: DType) -> Option<&'static Layout> {
    match dtype {
        DType::Q4_K => Some(&super::avx512_q4k::LAYOUT),
        DType::Q6_K => Some(&super::avx512_q6k::LAYOUT),
        _ => None,
    }
}

/// Whether [`PackedK`] runs `dtype` on this CPU.
pub(crate) fn supports(dtype: DType) -> bool {
    layout(dtype).is_some() && super::Isa::Avx512Vnni.supported()
}

/// A whole K-quant weight matrix (`n` rows of `k` values) in its packed layout.
pub(crate) struct PackedK {
    dtype: DType,
    layout: &'static Layout,
    n: usize,
    k: usize,
    lines: Vec<Line>,
}

impl std::fmt::Debug for PackedK {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedK({:?}, {}x{}, {} bytes)", self.dtype, self.n, self.k, self.lines.len() * 64)
    }
}

impl PackedK {
    /// Packs `w` (`n` rows of `k` values of `dtype`, GGUF blocks) on the calling thread,
    /// calling `done` with each stretch of `w` (about 1 MiB) once it is packed.
    pub(crate) fn new(w: &[u8], dtype: DType, n: usize, k: usize, done: &dyn Fn(&[u8])) -> Result<PackedK> {
        let layout = layout(dtype).ok_or(Error::UnsupportedDType { dtype, op: "packed k-quant matmul" })?;
        if !supports(dtype) {
            return Err(Error::Backend("the packed K-quant kernels need AVX-512 VNNI".into()));
        }
        let nsb = k / 256;
        let rb = nsb * layout.block;
        if !k.is_multiple_of(256) || Some(w.len()) != n.checked_mul(rb) {
            return Err(Error::shape("packed k-quant", format!("{dtype:?}, k {k}, w {} bytes for {n} rows", w.len())));
        }
        let lines = pack_groups(w, n, rb, nsb * layout.sb_lines, done, |rows, valid, dst| {
            // SAFETY: AVX-512 VNNI was checked; `rows` holds `valid` rows of `nsb` blocks and
            // `dst` one group's lines.
            unsafe { (layout.pack)(rows, rb, valid, nsb, dst) }
        });
        Ok(PackedK { dtype, layout, n, k, lines })
    }

    pub(crate) fn dtype(&self) -> DType {
        self.dtype
    }

    pub(crate) fn n(&self) -> usize {
        self.n
    }

    pub(crate) fn k(&self) -> usize {
        self.k
    }

    /// The 16-row groups.
    pub(crate) fn groups(&self) -> usize {
        self.n.div_ceil(GROUP)
    }

    fn group(&self, g: usize) -> &[Line] {
        let gl = self.k / 256 * self.layout.sb_lines;
        &self.lines[g * gl..(g + 1) * gl]
    }

    /// Group `g` against every activation row, at most `layout.rows` per micro-kernel call
    /// (4 rows left go as 2 + 2: a single row wastes the loaded weights), writing `valid`
    /// outputs of row `r` at `out + r·n`; rows before `grouped` form whole groups of 4.
    ///
    /// # Safety
    /// `self` exists only where AVX-512 VNNI does; every row covers `k` values; the outputs are
    /// writable.
    unsafe fn run_rows(&self, g: usize, rows: &[ActRow<'_>], grouped: usize, out: *mut f32, n: usize, valid: usize) {
        let (lines, nsb, most) = (self.group(g), self.k / 256, self.layout.rows);
        let mut first = true;
        for (start, end, in_group) in [(0, grouped, true), (grouped, rows.len(), false)] {
            let mut r0 = start;
            while r0 < end {
                let take = if end - r0 == most + 1 { 2 } else { most.min(end - r0) };
                // SAFETY: forwarded from the caller.
                unsafe {
                    (self.layout.run)(
                        lines,
                        nsb,
                        &rows[r0..r0 + take],
                        in_group,
                        first,
                        out.wrapping_add(r0 * n),
                        n,
                        valid,
                    )
                };
                first = false;
                r0 += take;
            }
        }
    }
}

/// `out [m, n] = x [m, k] · w [n, k]ᵀ` with `acts` quantized as Q8_K.
pub(crate) fn gemm(acts: &QuantizedActs, p: &PackedK, out: &mut [f32]) -> Result<()> {
    let m = acts.rows();
    if acts.k() != p.k || Some(out.len()) != m.checked_mul(p.n) {
        return Err(Error::shape(
            "packed k-quant gemm",
            format!("{m} rows of {}, w {}x{}, out {}", acts.k(), p.n, p.k, out.len()),
        ));
    }
    if m == 0 || p.n == 0 {
        return Ok(());
    }
    let rows: Vec<_> = (0..m).map(|r| acts.row(r)).collect();
    par_groups(p.n, out, |_: &mut (), g, valid, o| {
        // SAFETY: `p` exists only where AVX-512 VNNI does; columns `g·16 .. g·16 + valid` of
        // every row of `out` (`m·n` long) belong to this task alone.
        unsafe { p.run_rows(g, &rows, m / 4 * 4, o, p.n, valid) };
    });
    Ok(())
}

/// `out[j] = row · w_jᵀ` for the weight rows of groups `groups` (`out` holds exactly those
/// rows' outputs): one task of a fused matvec.
pub(crate) fn matvec_groups(
    p: &PackedK,
    row: &ActRow<'_>,
    groups: std::ops::Range<usize>,
    out: &mut [f32],
) -> Result<()> {
    each_group("packed k-quant matvec", p.n, p.k, row, groups, out, |g, valid, o| {
        // SAFETY: as in `gemm`; `o` holds this group's outputs.
        unsafe { p.run_rows(g, std::slice::from_ref(row), 0, o, 0, valid) }
    })
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::cpu::kernels::tests::random_blocks;
    use crate::quant::act::ActFormat;
    use crate::quant::dequantize;

    /// Every output has the bits of the dot kernels' row-group matmul (`cpu::matmul::matmul` on
    /// the GGUF bytes) and is within 1e-5 of the magnitude of an f64 dot of the dequantized
    /// weights and Q8_K activations, for partial groups, 1..16 rows, 1 and 3 threads, and the
    /// fused matvec's split (the bits of one row).
    #[test]
    fn matches_the_dequantized_dot() {
        if !super::super::Isa::Avx512Vnni.supported() {
            eprintln!("skipped: this CPU has no AVX-512 VNNI");
            return;
        }
        let mut rng = StdRng::seed_from_u64(31);
        for dtype in [DType::Q4_K, DType::Q6_K] {
            for (k, n) in [(256usize, 16usize), (512, 37), (1024, 5), (4864 / 256 * 256, 50)] {
                let w = random_blocks(dtype, n * k / 256, &mut rng);
                let mut wf = vec![0f32; n * k];
                dequantize(dtype, &w, &mut wf).expect("dequantize");
                let p = PackedK::new(&w, dtype, n, k, &|_| ()).expect("pack");
                for m in [1usize, 2, 3, 4, 5, 7, 16] {
                    let x: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
                    let mut acts = QuantizedActs::new();
                    acts.quantize(&x, k, ActFormat::Q8K).expect("quantize");
                    let want = |r: usize, j: usize| -> (f64, f64) {
                        let a = acts.row(r);
                        let (mut s, mut mag) = (0f64, 0f64);
                        for e in 0..k {
                            let v = wf[j * k + e] as f64 * (a.qs[e] as f64 * a.d[e / 32] as f64);
                            s += v;
                            mag += v.abs();
                        }
                        (s, mag)
                    };
                    let what = format!("{dtype:?} k {k} n {n} m {m}");
                    for threads in [1usize, 3] {
                        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
                        let mut out = vec![f32::NAN; m * n];
                        pool.install(|| gemm(&acts, &p, &mut out)).expect("gemm");
                        let mut dots = vec![f32::NAN; m * n];
                        pool.install(|| crate::cpu::matmul::matmul(&x, m, k, &w, dtype, n, &mut dots)).expect("dots");
                        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                        assert_eq!(bits(&out), bits(&dots), "{what}: the dot kernels' bits");
                        for r in 0..m {
                            for j in 0..n {
                                let (s, mag) = want(r, j);
                                let got = out[r * n + j] as f64;
                                assert!((got - s).abs() <= 1e-5 * mag + 1e-6, "{what} ({r},{j}): {got} vs {s}");
                            }
                        }
                        let row = acts.row(0);
                        let mut one = vec![f32::NAN; n];
                        let split = p.groups() / 2;
                        let (a, b) = one.split_at_mut((split * 16).min(n));
                        matvec_groups(&p, &row, 0..split, a).expect("first");
                        matvec_groups(&p, &row, split..p.groups(), b).expect("last");
                        let mut single = vec![f32::NAN; n];
                        crate::cpu::matmul::matmul(&x[..k], 1, k, &w, dtype, n, &mut single).expect("matvec");
                        assert_eq!(bits(&one), bits(&single), "{what}: matvec_groups");
                    }
                }
            }
        }
    }

    #[test]
    fn bad_shapes_and_types_are_errors() {
        if !super::super::Isa::Avx512Vnni.supported() {
            eprintln!("skipped: this CPU has no AVX-512 VNNI");
            return;
        }
        for (dtype, block) in [(DType::Q4_K, 144usize), (DType::Q6_K, 210)] {
            let w = vec![0u8; block * 3];
            assert!(PackedK::new(&w, dtype, 3, 512, &|_| ()).is_err());
            assert!(PackedK::new(&w, dtype, 3, 200, &|_| ()).is_err());
            let p = PackedK::new(&w, dtype, 3, 256, &|_| ()).expect("pack");
            let mut acts = QuantizedActs::new();
            acts.quantize(&[0.5; 512], 256, ActFormat::Q8K).expect("quantize");
            let mut out = vec![0f32; 6];
            assert!(gemm(&acts, &p, &mut out).is_ok());
            assert!(gemm(&acts, &p, &mut out[..5]).is_err());
            assert!(matvec_groups(&p, &acts.row(0), 0..1, &mut out[..3]).is_ok());
            assert!(matvec_groups(&p, &acts.row(0), 0..2, &mut out[..3]).is_err());
        }
        assert!(PackedK::new(&[0u8; 34 * 8], DType::Q8_0, 1, 256, &|_| ()).is_err());
    }
}
