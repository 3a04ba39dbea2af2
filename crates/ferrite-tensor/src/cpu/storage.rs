//! Host memory for the CPU backend: owned buffers and zero-copy views of memory-mapped files.

use std::any::Any;
use std::ops::Deref;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::{BackendStorage, Error, Result, Tensor};

/// Bytes of a memory-mapped file (or any other immutable byte source) shared by many tensors.
pub type SharedBytes = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// CPU storage: an owned, 4-byte-aligned buffer (written by ops such as `write_kv`), or a
/// read-only window of a memory-mapped model file (weights stay in the page cache, quantized).
///
/// An owned buffer made from an op's result ([`CpuStorage::from_f32`]) goes back to
/// [`super::buffers`] when dropped, for the next op's output.
pub enum CpuStorage {
    Owned { data: RwLock<Vec<f32>>, len: usize, recycle: bool },
    Mapped { bytes: SharedBytes, start: usize, len: usize },
}

impl std::fmt::Debug for CpuStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CpuStorage::Owned { len, .. } => write!(f, "CpuStorage::Owned({len} bytes)"),
            CpuStorage::Mapped { start, len, .. } => write!(f, "CpuStorage::Mapped({start}+{len})"),
        }
    }
}

impl CpuStorage {
    /// `len` zero bytes.
    pub fn zeros(len: usize) -> Self {
        CpuStorage::Owned { data: RwLock::new(vec![0f32; len.div_ceil(4)]), len, recycle: false }
    }

    /// Takes ownership of f32 data without copying (an op's result: its buffer is reused for
    /// later results once this storage is dropped).
    pub fn from_f32(v: Vec<f32>) -> Self {
        let len = v.len() * 4;
        CpuStorage::Owned { data: RwLock::new(v), len, recycle: true }
    }

    pub fn from_bytes(b: &[u8]) -> Self {
        let s = CpuStorage::zeros(b.len());
        if let CpuStorage::Owned { data, .. } = &s {
            let mut g = data.write().unwrap_or_else(|e| e.into_inner());
            bytemuck::cast_slice_mut::<f32, u8>(&mut g)[..b.len()].copy_from_slice(b);
        }
        s
    }

    /// A window `start .. start + len` of shared bytes (checked).
    pub fn mapped(bytes: SharedBytes, start: usize, len: usize) -> Result<Self> {
        let total = (*bytes).as_ref().len();
        if start.checked_add(len).is_none_or(|e| e > total) {
            return Err(Error::OutOfRange { op: "mapped storage", index: start.saturating_add(len), len: total });
        }
        Ok(CpuStorage::Mapped { bytes, start, len })
    }

    /// Read access to all bytes.
    pub fn read(&self) -> CpuBytes<'_> {
        match self {
            CpuStorage::Owned { data, len, .. } => {
                CpuBytes::Owned(data.read().unwrap_or_else(|e| e.into_inner()), *len)
            }
            CpuStorage::Mapped { bytes, start, len } => CpuBytes::Mapped(&(**bytes).as_ref()[*start..*start + *len]),
        }
    }

    /// Write access (owned storage only).
    pub fn write(&self, op: &'static str) -> Result<RwLockWriteGuard<'_, Vec<f32>>> {
        match self {
            CpuStorage::Owned { data, .. } => Ok(data.write().unwrap_or_else(|e| e.into_inner())),
            CpuStorage::Mapped { .. } => Err(Error::ReadOnly { op }),
        }
    }
}

impl Drop for CpuStorage {
    fn drop(&mut self) {
        if let CpuStorage::Owned { data, recycle: true, .. } = self {
            super::buffers::recycle(std::mem::take(data.get_mut().unwrap_or_else(|e| e.into_inner())));
        }
    }
}

impl BackendStorage for CpuStorage {
    fn len_bytes(&self) -> usize {
        match self {
            CpuStorage::Owned { len, .. } | CpuStorage::Mapped { len, .. } => *len,
        }
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A read guard over CPU bytes.
pub enum CpuBytes<'a> {
    Owned(RwLockReadGuard<'a, Vec<f32>>, usize),
    Mapped(&'a [u8]),
}

impl Deref for CpuBytes<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            CpuBytes::Owned(g, len) => &bytemuck::cast_slice::<f32, u8>(g)[..*len],
            CpuBytes::Mapped(b) => b,
        }
    }
}

/// The CPU storage behind a tensor, or an error when it lives elsewhere.
pub fn cpu_storage<'a>(t: &'a Tensor, op: &'static str) -> Result<&'a CpuStorage> {
    t.storage().as_any().downcast_ref::<CpuStorage>().ok_or_else(|| Error::DeviceMismatch {
        op,
        expected: "cpu".into(),
        actual: t.device().name(),
    })
}

/// A read view of one tensor's bytes.
pub struct TensorRead<'a> {
    guard: CpuBytes<'a>,
    start: usize,
    len: usize,
}

impl<'a> TensorRead<'a> {
    pub fn new(t: &'a Tensor, op: &'static str) -> Result<Self> {
        let s = cpu_storage(t, op)?;
        Ok(TensorRead { guard: s.read(), start: t.offset_bytes(), len: t.len_bytes() })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.guard[self.start..self.start + self.len]
    }

    /// The view as f32 (the tensor must be f32 and 4-byte aligned, which every tensor this
    /// crate creates is; a misaligned mapped tensor gives an error).
    pub fn f32(&self) -> Result<&[f32]> {
        bytemuck::try_cast_slice(self.bytes()).map_err(|e| Error::Backend(format!("f32 view of tensor bytes: {e:?}")))
    }
}
