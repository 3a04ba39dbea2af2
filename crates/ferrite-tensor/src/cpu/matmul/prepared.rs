//! Weights laid out once for the AVX-512 kernels, made at a mapped weight's first matmul and
//! kept beside its storage (`CpuStorage::prepared`): the 32-value block types and the K-quants
//! Q4_K / Q6_K for the VNNI kernels, f32 for the blocked GEMM. Off x86-64 there are none.

use crate::cpu::gemm_blocked;
#[cfg(target_arch = "x86_64")]
use crate::cpu::kernels::Isa;
#[cfg(target_arch = "x86_64")]
use crate::cpu::kernels::{avx512_gemm, avx512_kpacked, Kernels};
#[cfg(target_arch = "x86_64")]
use crate::cpu::{cpu_storage, CpuStorage};
use crate::quant::act::ActRow;
#[cfg(target_arch = "x86_64")]
use crate::quant::act::{ActFormat, QuantizedActs};
#[cfg(target_arch = "x86_64")]
use crate::{DType, Error};
use crate::{Result, Tensor};

/// A weight's copy packed for the AVX-512 VNNI kernels: the 32-value block types
/// ([`avx512_gemm`]) or the K-quants Q4_K and Q6_K ([`avx512_kpacked`]).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(super) enum Packed<'a> {
    Legacy(&'a avx512_gemm::Packed),
    K(&'a avx512_kpacked::PackedK),
}

/// The packed copy of weight `w`, made at its first use: only for mapped storage (owned
/// storage can change), on AVX-512 VNNI, for the block types that have a packed kernel, and
/// for a 2-D view of the whole tensor.
#[cfg(target_arch = "x86_64")]
pub(super) fn packed_weights(w: &Tensor) -> Option<Packed<'_>> {
    let &[n, k] = w.dims() else { return None };
    let dtype = w.dtype();
    let legacy = avx512_gemm::supports(dtype) && k.is_multiple_of(32);
    let kquant = avx512_kpacked::supports(dtype) && k.is_multiple_of(256);
    if Kernels::best().isa() != Isa::Avx512Vnni || !(legacy || kquant) {
        return None;
    }
    let storage: &CpuStorage = cpu_storage(w, "matmul").ok()?;
    let prepared = storage.prepared((w.offset_bytes(), w.len_bytes()), |bytes, done| {
        let packed: Box<dyn std::any::Any + Send + Sync> = if kquant {
            Box::new(avx512_kpacked::PackedK::new(bytes, dtype, n, k, done).ok()?)
        } else {
            Box::new(avx512_gemm::Packed::new_releasing(bytes, dtype, n, k, done).ok()?)
        };
        Some(packed)
    })?;
    if let Some(p) = prepared.downcast_ref::<avx512_gemm::Packed>() {
        return (p.dtype() == dtype && p.n() == n && p.k() == k).then_some(Packed::Legacy(p));
    }
    let p = prepared.downcast_ref::<avx512_kpacked::PackedK>()?;
    (p.dtype() == dtype && p.n() == n && p.k() == k).then_some(Packed::K(p))
}

/// The packed copy of f32 weight `w` for [`gemm_blocked`], made at its first use: only for
/// mapped storage and a 2-D view of the whole tensor, where the CPU has AVX-512 (whose `12 x 32`
/// kernel makes the packed GEMM the fastest f32 path from 64 rows up; for fewer rows the
/// weights stream from memory either way). Every later matmul with `w`, one row included,
/// runs the packed GEMM: one FMA chain per output in `k` order, as before for 8 rows or more.
#[cfg(target_arch = "x86_64")]
pub(super) fn packed_float(w: &Tensor) -> Option<&gemm_blocked::PackedWeights> {
    let &[n, k] = w.dims() else { return None };
    if w.dtype() != DType::F32 || gemm_blocked::wide(Isa::best()).is_none() {
        return None;
    }
    let storage: &CpuStorage = cpu_storage(w, "matmul").ok()?;
    let prepared = storage.prepared((w.offset_bytes(), w.len_bytes()), |bytes, _| {
        let packed: Box<dyn std::any::Any + Send + Sync> =
            Box::new(gemm_blocked::PackedWeights::new(bytes, DType::F32, n, k).ok()?);
        Some(packed)
    })?;
    prepared.downcast_ref::<gemm_blocked::PackedWeights>().filter(|p| p.n() == n && p.k() == k)
}

#[cfg(not(target_arch = "x86_64"))]
pub(super) fn packed_float(_: &Tensor) -> Option<&gemm_blocked::PackedWeights> {
    None
}

#[cfg(target_arch = "x86_64")]
impl Packed<'_> {
    pub(super) fn dtype(self) -> DType {
        match self {
            Packed::Legacy(p) => p.dtype(),
            Packed::K(p) => p.dtype(),
        }
    }

    /// What the fused matvec's tasks of this weight need for `row` (see
    /// [`avx512_gemm::matvec_groups`]).
    pub(super) fn starts(self, row: &ActRow<'_>) -> Vec<Vec<i32>> {
        match self {
            Packed::Legacy(p) => p.start_values(row),
            Packed::K(_) => Vec::new(),
        }
    }

    pub(super) fn groups(self) -> usize {
        match self {
            Packed::Legacy(p) => p.groups(),
            Packed::K(p) => p.groups(),
        }
    }

    pub(super) fn matvec(
        self,
        row: &ActRow<'_>,
        starts: &[Vec<i32>],
        groups: std::ops::Range<usize>,
        out: &mut [f32],
    ) -> Result<()> {
        match self {
            Packed::Legacy(p) => avx512_gemm::matvec_groups(p, row, starts, groups, out),
            Packed::K(p) => avx512_kpacked::matvec_groups(p, row, groups, out),
        }
    }

    /// `out [m, n] = x [m, k] · wᵀ`.
    pub(super) fn matmul(self, x: &[f32], k: usize, out: &mut [f32]) -> Result<()> {
        let dtype = self.dtype();
        let format = ActFormat::for_weights(dtype)
            .ok_or_else(|| Error::Backend(format!("no activation format for {dtype:?}")))?;
        let mut acts = QuantizedActs::new();
        acts.quantize(x, k, format)?;
        match self {
            Packed::Legacy(p) => avx512_gemm::gemm_packed(&acts, p, out),
            Packed::K(p) => avx512_kpacked::gemm(&acts, p, out),
        }
    }
}

/// No packed layouts off x86-64.
#[cfg(not(target_arch = "x86_64"))]
#[derive(Clone, Copy)]
pub(super) enum Packed<'a> {
    Never(std::convert::Infallible, std::marker::PhantomData<&'a ()>),
}

#[cfg(not(target_arch = "x86_64"))]
pub(super) fn packed_weights(_: &Tensor) -> Option<Packed<'_>> {
    None
}

#[cfg(not(target_arch = "x86_64"))]
impl Packed<'_> {
    pub(super) fn starts(self, _: &ActRow<'_>) -> Vec<Vec<i32>> {
        match self {
            Packed::Never(n, _) => match n {},
        }
    }

    pub(super) fn groups(self) -> usize {
        match self {
            Packed::Never(n, _) => match n {},
        }
    }

    pub(super) fn matvec(self, _: &ActRow<'_>, _: &[Vec<i32>], _: std::ops::Range<usize>, _: &mut [f32]) -> Result<()> {
        match self {
            Packed::Never(n, _) => match n {},
        }
    }

    pub(super) fn matmul(self, _: &[f32], _: usize, _: &mut [f32]) -> Result<()> {
        match self {
            Packed::Never(n, _) => match n {},
        }
    }
}
