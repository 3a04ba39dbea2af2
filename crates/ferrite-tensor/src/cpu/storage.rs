//! Host memory for the CPU backend: owned buffers and zero-copy views of memory-mapped files.

use std::any::Any;
use std::ops::Deref;
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::{BackendStorage, Error, Result, Tensor};

/// Bytes of a memory-mapped file (or any other immutable byte source) shared by many tensors.
pub type SharedBytes = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// CPU storage: an owned, 4-byte-aligned buffer (written by ops such as `write_kv`), or a
/// read-only window of a memory-mapped model file (weights stay in the page cache, quantized).
///
/// An owned buffer made from an op's result ([`CpuStorage::from_f32`]) goes back to
/// [`super::buffers`] when dropped, for the next op's output.
///
/// Mapped storage, which never changes, can also hold a copy of its bytes laid out for a
/// faster kernel (`CpuStorage::prepared`), made at first use.
pub enum CpuStorage {
    Owned {
        data: RwLock<Vec<f32>>,
        len: usize,
        recycle: bool,
    },
    Mapped {
        bytes: SharedBytes,
        start: usize,
        len: usize,
        /// `bytes` is a read-only map of a file: pages can be given back to the page cache.
        file_backed: bool,
        prepared: OnceLock<Option<Prepared>>,
    },
}

/// A kernel's own layout of (a view of) mapped bytes, with the view it was made from.
pub struct Prepared {
    /// Offset and length of the view within the storage.
    view: (usize, usize),
    data: Box<dyn Any + Send + Sync>,
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
        Self::mapped_from(bytes, start, len, false)
    }

    /// [`CpuStorage::mapped`] over bytes that are a read-only memory map of a file (a
    /// `memmap2::Mmap` made by this crate's readers): once a kernel has its own copy of the
    /// window ([`CpuStorage::prepared`]), the window's pages are handed back to the page cache,
    /// so the model is not resident twice; a later read maps them in again from the file.
    pub(crate) fn mapped_file(bytes: SharedBytes, start: usize, len: usize) -> Result<Self> {
        Self::mapped_from(bytes, start, len, true)
    }

    fn mapped_from(bytes: SharedBytes, start: usize, len: usize, file_backed: bool) -> Result<Self> {
        let total = (*bytes).as_ref().len();
        if start.checked_add(len).is_none_or(|e| e > total) {
            return Err(Error::OutOfRange { op: "mapped storage", index: start.saturating_add(len), len: total });
        }
        Ok(CpuStorage::Mapped { bytes, start, len, file_backed, prepared: OnceLock::new() })
    }

    /// The prepared copy of bytes `view` (offset, length) of mapped storage: made by
    /// `make(bytes, done)` on the first call (on the calling thread; concurrent callers wait for
    /// it), `None` for owned storage (which can change), when `make` declines, or when the
    /// storage was prepared for another view. `make` may call `done` with the parts of `bytes`
    /// it has finished reading, whose pages are then handed back at once where the storage maps
    /// a file (so the copy and the file are not both resident while a large weight is packed).
    pub(crate) fn prepared(
        &self,
        view: (usize, usize),
        make: impl FnOnce(&[u8], &dyn Fn(&[u8])) -> Option<Box<dyn Any + Send + Sync>>,
    ) -> Option<&(dyn Any + Send + Sync)> {
        let CpuStorage::Mapped { bytes, start, len, file_backed, prepared } = self else {
            return None;
        };
        let slot = prepared.get_or_init(|| {
            let all = &(**bytes).as_ref()[*start..*start + *len];
            let src = all.get(view.0..view.0.checked_add(view.1)?)?;
            let done = |part: &[u8]| {
                if *file_backed {
                    release_pages(part);
                }
            };
            let data = make(src, &done)?;
            done(src);
            Some(Prepared { view, data })
        });
        slot.as_ref().filter(|p| p.view == view).map(|p| &*p.data)
    }

    /// Hands back the pages around `reads` (offsets within the storage) after reads that
    /// bypassed the prepared copy, such as the row gather of an embedding table that is also the
    /// (packed) output matrix: for each read, the aligned 2 MiB window around it (a fault maps
    /// a whole folio of the file, 64 KiB to 2 MiB here), within `view` (offset and length).
    /// Without this every new token would leave up to 2 MiB of the file resident next to the
    /// copy. Nothing happens unless the storage is a file map whose prepared copy exists.
    pub(crate) fn release_after_read(&self, view: (usize, usize), reads: &[usize]) {
        const WINDOW: usize = 2 << 20;
        let CpuStorage::Mapped { bytes, start, len, file_backed: true, prepared } = self else {
            return;
        };
        if !matches!(prepared.get(), Some(Some(_))) {
            return;
        }
        let all = &(**bytes).as_ref()[*start..*start + *len];
        let Some(part) = all.get(view.0..view.0.saturating_add(view.1)) else {
            return;
        };
        let addr = all.as_ptr() as usize;
        let mut windows: Vec<usize> = reads.iter().map(|&r| (addr + r) / WINDOW).collect();
        windows.sort_unstable();
        windows.dedup();
        let (lo, hi) = (part.as_ptr() as usize, part.as_ptr() as usize + part.len());
        for w in windows {
            let (from, to) = ((w * WINDOW).max(lo), ((w + 1) * WINDOW).min(hi));
            if from < to {
                release_pages(&part[from - lo..to - lo]);
            }
        }
    }

    /// Read access to all bytes.
    pub fn read(&self) -> CpuBytes<'_> {
        match self {
            CpuStorage::Owned { data, len, .. } => {
                CpuBytes::Owned(data.read().unwrap_or_else(|e| e.into_inner()), *len)
            }
            CpuStorage::Mapped { bytes, start, len, .. } => {
                CpuBytes::Mapped(&(**bytes).as_ref()[*start..*start + *len])
            }
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

/// Hands the whole pages inside `src`, part of a read-only private file map that nothing
/// writes, back to the kernel (`MADV_DONTNEED`): they leave this process's resident set, and a
/// later read faults them in again from the file, unchanged.
#[cfg(unix)]
pub(crate) fn release_pages(src: &[u8]) {
    const PAGE: usize = 4096;
    let (a, b) = (src.as_ptr() as usize, src.as_ptr() as usize + src.len());
    let (first, end) = (a.next_multiple_of(PAGE), b / PAGE * PAGE);
    if end > first {
        // SAFETY: `first..end` lies inside `src`, whole pages of a private read-only file map
        // (the caller's `file_backed`); dropping unwritten pages of such a map does not change
        // what reads of it see. A failure only leaves the pages resident.
        unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_DONTNEED) };
    }
}

#[cfg(not(unix))]
pub(crate) fn release_pages(_: &[u8]) {}

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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn boxed(v: usize) -> Option<Box<dyn Any + Send + Sync>> {
        Some(Box::new(v))
    }

    /// Owned storage is never prepared; mapped storage once, for the view asked first.
    #[test]
    fn prepared_is_made_once_per_mapped_storage() {
        let owned = CpuStorage::from_bytes(&[1, 2, 3, 4]);
        assert!(owned.prepared((0, 4), |_, _| boxed(1)).is_none());
        let mapped = CpuStorage::mapped(Arc::new(vec![5u8; 64]), 8, 32).expect("mapped");
        let mut calls = 0;
        let mut get = |view| {
            mapped
                .prepared(view, |b: &[u8], _: &dyn Fn(&[u8])| {
                    calls += 1;
                    boxed(b.len())
                })
                .and_then(|p| p.downcast_ref::<usize>().copied())
        };
        assert_eq!(get((4, 16)), Some(16));
        assert_eq!(get((4, 16)), Some(16));
        assert_eq!(get((0, 32)), None, "another view");
        assert_eq!(calls, 1);
        // A view past the storage is declined, not a panic.
        let other = CpuStorage::mapped(Arc::new(vec![0u8; 64]), 0, 64).expect("mapped");
        assert!(other.prepared((60, 8), |_, _| boxed(0)).is_none());
        assert!(other.prepared((usize::MAX, 8), |_, _| boxed(0)).is_none());
    }

    /// A file map whose pages were handed back still reads the file's bytes.
    #[test]
    fn released_file_pages_read_the_same() {
        let path = std::env::temp_dir().join(format!("ferrite-release-{}.bin", std::process::id()));
        let data: Vec<u8> = (0..5 * 4096 + 123).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::File::create(&path).and_then(|mut f| f.write_all(&data)).expect("write");
        let file = std::fs::File::open(&path).expect("open");
        // SAFETY: a private read-only map of a file this test alone writes, before mapping.
        let map = unsafe { memmap2::Mmap::map(&file) }.expect("map");
        let storage = CpuStorage::mapped_file(Arc::new(map), 100, data.len() - 200).expect("mapped");
        assert!(storage.read().iter().zip(&data[100..]).all(|(a, b)| a == b));
        let made = storage.prepared((0, data.len() - 200), |b: &[u8], done: &dyn Fn(&[u8])| {
            let sum = b.iter().map(|&v| v as usize).sum();
            done(&b[..2 * 4096]);
            assert_eq!(b.iter().map(|&v| v as usize).sum::<usize>(), sum, "released pages read the same");
            boxed(sum)
        });
        assert!(made.is_some());
        let bytes = storage.read();
        assert_eq!(&bytes[..], &data[100..data.len() - 100]);
        drop(bytes);
        let _ = std::fs::remove_file(&path);
    }

    /// Whether the page holding `p` is mapped in this process (`/proc/self/pagemap`, bit 63).
    #[cfg(target_os = "linux")]
    fn resident(p: *const u8) -> bool {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open("/proc/self/pagemap").expect("pagemap");
        f.seek(SeekFrom::Start((p as u64 / 4096) * 8)).expect("seek");
        let mut e = [0u8; 8];
        f.read_exact(&mut e).expect("read pagemap");
        u64::from_le_bytes(e) >> 63 == 1
    }

    /// After a read beside the prepared copy, the pages read leave the resident set; without a
    /// prepared copy, or for memory that is not a file map, they stay.
    #[cfg(target_os = "linux")]
    #[test]
    fn reads_beside_a_prepared_copy_give_their_pages_back() {
        use std::io::Write;
        let path = std::env::temp_dir().join(format!("ferrite-release-read-{}.bin", std::process::id()));
        let data: Vec<u8> = (0..8 * 4096).map(|i| (i * 13 % 251) as u8).collect();
        std::fs::File::create(&path).and_then(|mut f| f.write_all(&data)).expect("write");
        let file = std::fs::File::open(&path).expect("open");
        // SAFETY: a private read-only map of a file this test alone writes, before mapping.
        let map = unsafe { memmap2::Mmap::map(&file) }.expect("map");
        let storage = CpuStorage::mapped_file(Arc::new(map), 0, data.len()).expect("mapped");
        let page = |k: usize| {
            let bytes = storage.read();
            let p = &bytes[k * 4096 + 7];
            assert_eq!(std::hint::black_box(*p), data[k * 4096 + 7]);
            resident(p)
        };
        assert!(page(3), "a page just read is mapped");
        storage.release_after_read((0, data.len()), &[3 * 4096]);
        assert!(page(3), "no prepared copy: the read pages stay");
        assert!(storage.prepared((0, data.len()), |_, _| boxed(0usize)).is_some());
        assert!(page(5), "read again after packing");
        storage.release_after_read((0, data.len()), &[5 * 4096 + 7]);
        assert!(!resident(&storage.read()[5 * 4096]), "given back after the read");
        assert!(page(5), "and read the same afterwards");
        let owned = CpuStorage::mapped(Arc::new(data.clone()), 0, data.len()).expect("mapped");
        assert!(owned.prepared((0, data.len()), |_, _| boxed(0usize)).is_some());
        owned.release_after_read((0, data.len()), &[5 * 4096]);
        assert!(resident(&owned.read()[5 * 4096]), "memory that is not a file map is left alone");
        let _ = std::fs::remove_file(&path);
    }
}
