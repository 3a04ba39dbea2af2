//! Dot-product kernels: one weight row (GGUF blocks read in place, or f32/f16/bf16) against up
//! to [`MAX_ROWS`] activation rows at once, so that in prefill each weight block is unpacked
//! once and used for several tokens.
//!
//! Quantized weights meet 8-bit activations ([`crate::quant::act`]); float weights meet f32
//! activations. Each instruction-set level ([`Isa`]) has its own kernels: AVX-512 VNNI
//! (`avx512_legacy`, `avx512_kquants`), AVX2 (`avx2_legacy`, `avx2_kquants`), both with a
//! shared float file, and portable Rust (`scalar`). [`Kernels::best`] picks them once per
//! process; [`Kernels::for_isa`] gives a specific level (tests compare all of them).

/// Expands to a loop over the weight rows of `$w` (`$rb` bytes each) calling
/// `$body::<$($arg,)* R>(row, xs, out_j)` with `R = xs.len()` (1..=4) fixed at compile time and
/// `out_j = out[j·stride ..][..R]`. Used by every SIMD kernel file for its entry points.
macro_rules! row_loop {
    ($body:ident, [$($arg:expr),*], $w:expr, $rb:expr, $xs:expr, $out:expr, $stride:expr) => {{
        let (w, rb, xs, out, stride) = ($w, $rb, $xs, $out, $stride);
        match xs.len() {
            1 => row_loop!(@rows $body, [$($arg),*], 1, w, rb, xs, out, stride),
            2 => row_loop!(@rows $body, [$($arg),*], 2, w, rb, xs, out, stride),
            3 => row_loop!(@rows $body, [$($arg),*], 3, w, rb, xs, out, stride),
            _ => row_loop!(@rows $body, [$($arg),*], 4, w, rb, xs, out, stride),
        }
    }};
    (@rows $body:ident, [$($arg:expr),*], $r:literal, $w:ident, $rb:ident, $xs:ident, $out:ident, $stride:ident) => {
        for (j, row) in $w.chunks_exact($rb).enumerate() {
            $body::<$($arg,)* $r>(row, $xs, &mut $out[j * $stride..j * $stride + $r]);
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx2_kquants;
#[cfg(target_arch = "x86_64")]
mod avx2_legacy;
#[cfg(target_arch = "x86_64")]
mod avx512_chunks;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512_gemm;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512_kpacked;
#[cfg(target_arch = "x86_64")]
mod avx512_kquants;
#[cfg(target_arch = "x86_64")]
mod avx512_legacy;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512_q4k;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512_q6k;
pub mod detect;
#[cfg(target_arch = "x86_64")]
mod float_simd;
#[cfg(target_arch = "x86_64")]
pub(crate) mod gemm_avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod gemm_avx512;
#[cfg(target_arch = "x86_64")]
mod quantize;
mod scalar;
#[cfg(test)]
pub(crate) mod tests;

use std::sync::OnceLock;

pub use detect::Isa;

#[cfg(target_arch = "x86_64")]
pub(crate) use avx2_legacy::hsum8x8;

use crate::quant::act::{quantize_block_scalar, ActRow, ACT_GROUP};
use crate::{DType, Error, Result};

/// Most activation rows one kernel call takes.
pub const MAX_ROWS: usize = 4;

/// `out[j·stride + r] = Σ w_j · x_r` for the weight rows `w_j` (`row_bytes` each, whole
/// blocks) of `w` and the `xs.len()` activation rows.
///
/// # Safety
/// The CPU supports the kernel's [`Isa`]; `w.len()` is a multiple of `row_bytes`, itself a
/// multiple of the block size; `1 <= xs.len() <= MAX_ROWS <= stride` or `xs.len() == stride`;
/// `out` covers every written index; every activation row covers a weight row rounded up to
/// [`ACT_GROUP`] values. [`Kernels::quant_dot`] checks all of this.
type QuantDot = unsafe fn(w: &[u8], row_bytes: usize, xs: &[ActRow<'_>], out: &mut [f32], stride: usize);

/// Quantizes one activation block: returns `d` and the sums of the two 16-value halves.
///
/// # Safety
/// The CPU supports the kernel's [`Isa`].
type QuantizeBlock = unsafe fn(x: &[f32; 32], q: &mut [i8; 32]) -> (f32, i32, i32);

/// Unpacks the weight rows `w` (whole `dtype` blocks) into `u` for [`UnpackedDot`]; returns
/// `false` (leaving `u` unusable) when this level has no such path for `dtype`.
///
/// # Safety
/// The CPU supports the kernel's [`Isa`]; `w.len()` is a multiple of the block size of `dtype`.
type UnpackFn = unsafe fn(dtype: DType, w: &[u8], u: &mut UnpackedRows) -> bool;

/// As [`QuantDot`], with the rows of `w` also given unpacked in `u`.
///
/// # Safety
/// As [`QuantDot`]; `u` was filled from `w` by the same level's [`UnpackFn`] for `dtype`.
type UnpackedDot = unsafe fn(
    dtype: DType,
    w: &[u8],
    row_bytes: usize,
    u: &UnpackedRows,
    xs: &[ActRow<'_>],
    out: &mut [f32],
    stride: usize,
);

/// Weight rows unpacked once for many activation rows (prefill, where each weight block meets
/// every activation row): per block the 32 weight bytes the integer kernel multiplies, its
/// scale and (Q4_1) min as f32. Scratch for [`Kernels::unpack_rows`] and
/// [`Kernels::quant_dot_unpacked`]; reused across calls.
#[derive(Debug, Default)]
pub struct UnpackedRows {
    /// The weights it was filled from: dtype, address and length (checked before use).
    src: Option<(DType, usize, usize)>,
    /// 32 bytes per block.
    q: Vec<u8>,
    /// Scale per block, plus 8 padding values.
    d: Vec<f32>,
    /// Q4_1: min per block, plus 8 padding values.
    m: Vec<f32>,
}

impl UnpackedRows {
    /// An empty scratch.
    pub fn new() -> Self {
        Self::default()
    }
}

/// No level but AVX2 unpacks: the others keep reading blocks in place.
unsafe fn no_unpack(_: DType, _: &[u8], _: &mut UnpackedRows) -> bool {
    false
}

/// Never called: [`no_unpack`] fills nothing.
unsafe fn no_unpacked_dot(_: DType, _: &[u8], _: usize, _: &UnpackedRows, _: &[ActRow<'_>], _: &mut [f32], _: usize) {
    unreachable!("no level fills UnpackedRows without its own dot")
}

/// As [`QuantDot`] for float weights (as bytes) and f32 activation rows of the row length.
type FloatDot = unsafe fn(w: &[u8], row_bytes: usize, xs: &[&[f32]], out: &mut [f32], stride: usize);

/// The kernels of one instruction-set level. Only built by [`Kernels::for_isa`], which checks
/// the CPU first: that is what makes calling the `unsafe` function pointers sound.
#[derive(Debug, Clone, Copy)]
pub struct Kernels {
    isa: Isa,
    q4_0: QuantDot,
    q4_1: QuantDot,
    q5_0: QuantDot,
    q8_0: QuantDot,
    q4_k: QuantDot,
    q5_k: QuantDot,
    q6_k: QuantDot,
    f32: FloatDot,
    f16: FloatDot,
    bf16: FloatDot,
    quantize: QuantizeBlock,
    unpack: UnpackFn,
    unpacked_dot: UnpackedDot,
}

impl Kernels {
    /// The kernels of the best level this CPU supports (detected once).
    pub fn best() -> &'static Kernels {
        static BEST: OnceLock<Kernels> = OnceLock::new();
        BEST.get_or_init(|| Kernels::for_isa(Isa::best()).unwrap_or_else(Kernels::scalar))
    }

    /// The kernels of `isa`, or `None` when this CPU lacks it.
    pub fn for_isa(isa: Isa) -> Option<Kernels> {
        if !isa.supported() {
            return None;
        }
        match isa {
            Isa::Scalar => Some(Kernels::scalar()),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Some(Kernels {
                isa,
                q4_0: avx2_legacy::q4_0,
                q4_1: avx2_legacy::q4_1,
                q5_0: avx2_legacy::q5_0,
                q8_0: avx2_legacy::q8_0,
                q4_k: avx2_kquants::q4_k,
                q5_k: avx2_kquants::q5_k,
                q6_k: avx2_kquants::q6_k,
                f32: float_simd::f32_avx2,
                f16: float_simd::f16_avx2,
                bf16: float_simd::bf16_avx2,
                quantize: quantize::block_avx2,
                unpack: avx2_legacy::unpack_tile,
                unpacked_dot: avx2_legacy::dot_unpacked,
            }),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => Some(Kernels {
                isa,
                q4_0: avx512_legacy::q4_0,
                q4_1: avx512_legacy::q4_1,
                q5_0: avx512_legacy::q5_0,
                q8_0: avx512_legacy::q8_0,
                q4_k: avx512_kquants::q4_k,
                q5_k: avx512_kquants::q5_k,
                q6_k: avx512_kquants::q6_k,
                f32: float_simd::f32_avx512,
                f16: float_simd::f16_avx512,
                bf16: float_simd::bf16_avx512,
                quantize: quantize::block_avx512,
                unpack: no_unpack,
                unpacked_dot: no_unpacked_dot,
            }),
            #[cfg(not(target_arch = "x86_64"))]
            _ => None,
        }
    }

    fn scalar() -> Kernels {
        Kernels {
            isa: Isa::Scalar,
            q4_0: scalar::q4_0,
            q4_1: scalar::q4_1,
            q5_0: scalar::q5_0,
            q8_0: scalar::q8_0,
            q4_k: scalar::q4_k,
            q5_k: scalar::q5_k,
            q6_k: scalar::q6_k,
            f32: scalar::f32_dot,
            f16: scalar::f16_dot,
            bf16: scalar::bf16_dot,
            quantize: quantize_block_scalar,
            unpack: no_unpack,
            unpacked_dot: no_unpacked_dot,
        }
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Quantizes one 32-value activation block into `q`; returns its scale `d` and the sums of
    /// `q` over the two 16-value halves (see [`crate::quant::act`]).
    pub fn quantize_block(&self, x: &[f32; 32], q: &mut [i8; 32]) -> (f32, i32, i32) {
        // SAFETY: `self` was built by `for_isa`, which checked the CPU supports its level.
        unsafe { (self.quantize)(x, q) }
    }

    fn quant_fn(&self, dtype: DType) -> Option<QuantDot> {
        Some(match dtype {
            DType::Q4_0 => self.q4_0,
            DType::Q4_1 => self.q4_1,
            DType::Q5_0 => self.q5_0,
            DType::Q8_0 => self.q8_0,
            DType::Q4_K => self.q4_k,
            DType::Q5_K => self.q5_k,
            DType::Q6_K => self.q6_k,
            DType::F32 | DType::F16 | DType::BF16 => return None,
        })
    }

    /// `out[j·stride + r] = Σ w_j · xs[r]` for every row `w_j` (`row_bytes`, whole `dtype`
    /// blocks) of `w` and 1..=[`MAX_ROWS`] activation rows quantized with the row's `k`.
    pub fn quant_dot(
        &self,
        dtype: DType,
        w: &[u8],
        row_bytes: usize,
        xs: &[ActRow<'_>],
        out: &mut [f32],
        stride: usize,
    ) -> Result<()> {
        let f = self.quant_fn(dtype).ok_or(Error::UnsupportedDType { dtype, op: "quant_dot" })?;
        check_quant(dtype, w, row_bytes, xs, out.len(), stride, "quant_dot")?;
        // SAFETY: `self` was built by `for_isa`, which checked that the CPU supports its level,
        // and the lengths were checked above as `QuantDot` requires.
        unsafe { f(w, row_bytes, xs, out, stride) };
        Ok(())
    }

    /// Unpacks the rows `w` (whole `dtype` blocks) into `u` for
    /// [`Kernels::quant_dot_unpacked`], when this level has such a path for `dtype` (AVX2:
    /// Q4_0, Q4_1, Q5_0, whose unpacking costs more than reading 32 bytes). Returns whether it did.
    pub fn unpack_rows(&self, dtype: DType, w: &[u8], u: &mut UnpackedRows) -> Result<bool> {
        u.src = None;
        if !dtype.is_quantized() || !w.len().is_multiple_of(dtype.type_size()) {
            return Err(Error::shape("unpack_rows", format!("{} bytes is not whole {dtype:?} blocks", w.len())));
        }
        // SAFETY: `self` was built by `for_isa` (the CPU supports its level); whole blocks.
        let done = unsafe { (self.unpack)(dtype, w, u) };
        if done {
            u.src = Some((dtype, w.as_ptr() as usize, w.len()));
        }
        Ok(done)
    }

    /// As [`Kernels::quant_dot`], reading the weights from `u`, which
    /// [`Kernels::unpack_rows`] filled from this same `w` (checked).
    #[allow(clippy::too_many_arguments)]
    pub fn quant_dot_unpacked(
        &self,
        dtype: DType,
        w: &[u8],
        row_bytes: usize,
        u: &UnpackedRows,
        xs: &[ActRow<'_>],
        out: &mut [f32],
        stride: usize,
    ) -> Result<()> {
        if u.src != Some((dtype, w.as_ptr() as usize, w.len())) {
            return Err(Error::shape("quant_dot_unpacked", "the unpacked rows are not these weights'".to_string()));
        }
        check_quant(dtype, w, row_bytes, xs, out.len(), stride, "quant_dot_unpacked")?;
        // SAFETY: `self` was built by `for_isa` (the CPU supports its level); the lengths were
        // checked as `QuantDot` requires, and `u` holds these weights unpacked by this level.
        unsafe { (self.unpacked_dot)(dtype, w, row_bytes, u, xs, out, stride) };
        Ok(())
    }

    /// As [`Kernels::quant_dot`] for `dtype` float weights (f32, f16, bf16) as bytes.
    pub fn float_dot(
        &self,
        dtype: DType,
        w: &[u8],
        row_bytes: usize,
        xs: &[&[f32]],
        out: &mut [f32],
        stride: usize,
    ) -> Result<()> {
        let f = match dtype {
            DType::F32 => self.f32,
            DType::F16 => self.f16,
            DType::BF16 => self.bf16,
            _ => return Err(Error::UnsupportedDType { dtype, op: "float_dot" }),
        };
        let es = dtype.type_size();
        if row_bytes == 0 || !row_bytes.is_multiple_of(es) || !w.len().is_multiple_of(row_bytes) {
            return Err(Error::shape("float_dot", format!("{} bytes in rows of {row_bytes}", w.len())));
        }
        check_rows(w.len() / row_bytes, xs.len(), out.len(), stride, "float_dot")?;
        let k = row_bytes / es;
        if xs.iter().any(|x| x.len() != k) {
            return Err(Error::shape("float_dot", format!("activation rows must have {k} values")));
        }
        // SAFETY: as in `quant_dot`: the level was checked by `for_isa`, the lengths above.
        unsafe { f(w, row_bytes, xs, out, stride) };
        Ok(())
    }
}

/// The checks [`QuantDot`] needs: whole blocks, row counts, output extent, activation lengths.
fn check_quant(
    dtype: DType,
    w: &[u8],
    row_bytes: usize,
    xs: &[ActRow<'_>],
    out_len: usize,
    stride: usize,
    op: &'static str,
) -> Result<()> {
    let ts = dtype.type_size();
    if row_bytes == 0 || !row_bytes.is_multiple_of(ts) || !w.len().is_multiple_of(row_bytes) {
        return Err(Error::shape(
            op,
            format!("{} bytes in rows of {row_bytes} is not whole {dtype:?} blocks", w.len()),
        ));
    }
    let k = row_bytes / ts * dtype.block_size();
    let kp = k.div_ceil(ACT_GROUP) * ACT_GROUP;
    check_rows(w.len() / row_bytes, xs.len(), out_len, stride, op)?;
    for x in xs {
        if x.qs.len() < kp
            || x.d.len() < kp / 32
            || x.s32.len() < kp / 32
            || x.bsums.len() < kp / 16
            || x.sum4.len() < kp / 4
        {
            return Err(Error::shape(op, format!("activation row of {} values for {k} weights", x.qs.len())));
        }
    }
    Ok(())
}

/// Checks the row counts and the output extent shared by both kernel kinds.
fn check_rows(nrows: usize, r: usize, out_len: usize, stride: usize, op: &'static str) -> Result<()> {
    let need = nrows.checked_sub(1).map_or(0, |l| l * stride + r);
    if r == 0 || r > MAX_ROWS || stride < r || out_len < need {
        return Err(Error::shape(
            op,
            format!("{r} activation rows, stride {stride}, {out_len} outputs for {nrows} weight rows"),
        ));
    }
    Ok(())
}
