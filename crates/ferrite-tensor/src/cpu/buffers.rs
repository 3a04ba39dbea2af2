//! Reuse of the large f32 buffers that op outputs live in.
//!
//! A large allocation is served by the system allocator straight from the kernel (glibc maps
//! anything past 32 MiB, and any size from a thread's own arena past 64 MiB), so every op
//! output of an image model (the VAE's activations are 34 MB at 256x256, 134 MB at 512x512)
//! used to pay a page fault and a kernel zero fill per 4 KiB page, and an unmap when freed.
//! Here the buffers of dropped op outputs ([`super::CpuStorage::from_f32`]) are kept, up to
//! [`MAX_CACHED_BYTES`] in all, and [`zeroed`] / [`with_capacity`] hand them out again.
//! Buffers under [`MIN_BYTES`] go to the allocator as before (cheap there). [`release`] frees
//! everything kept (the image workers call it once idle for a few seconds).

use std::sync::Mutex;

/// Buffers smaller than this (in bytes) are neither kept nor looked up.
pub const MIN_BYTES: usize = 1 << 20;
/// At most this many bytes of free buffers are kept (the oldest go first).
pub const MAX_CACHED_BYTES: usize = 1 << 30;

/// The free buffers, oldest first, and their total capacity in bytes.
struct Cache {
    free: Vec<Vec<f32>>,
    bytes: usize,
}

/// Free buffers of at least `min_bytes`, at most `max_bytes` of them in all.
pub struct BufferCache {
    cache: Mutex<Cache>,
    min_bytes: usize,
    max_bytes: usize,
}

fn bytes_of(v: &Vec<f32>) -> usize {
    v.capacity() * size_of::<f32>()
}

impl BufferCache {
    pub const fn new(min_bytes: usize, max_bytes: usize) -> Self {
        BufferCache { cache: Mutex::new(Cache { free: Vec::new(), bytes: 0 }), min_bytes, max_bytes }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A kept buffer of capacity `n..=2n` (the smallest), with its old values, or `None`.
    fn take(&self, n: usize) -> Option<Vec<f32>> {
        if n.saturating_mul(size_of::<f32>()) < self.min_bytes {
            return None;
        }
        let mut c = self.lock();
        let (i, _) = c
            .free
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= n && v.capacity() / 2 <= n)
            .min_by_key(|(_, v)| v.capacity())?;
        let v = c.free.remove(i);
        c.bytes -= bytes_of(&v);
        Some(v)
    }

    /// `n` zeros, in a kept buffer where one fits.
    pub fn zeroed(&self, n: usize) -> Vec<f32> {
        match self.take(n) {
            Some(mut v) => {
                v.clear();
                v.resize(n, 0.0);
                v
            }
            None => vec![0f32; n],
        }
    }

    /// `n` values for a caller that overwrites them all: a kept buffer's old values where one
    /// fits (no zero fill), else fresh zeros (pages the kernel zeroes only when first touched).
    pub fn overwritable(&self, n: usize) -> Vec<f32> {
        match self.take(n) {
            Some(mut v) => {
                if v.len() >= n {
                    v.truncate(n);
                } else {
                    v.resize(n, 0.0);
                }
                v
            }
            None => vec![0f32; n],
        }
    }

    /// An empty vector with room for `n` values, a kept buffer where one fits.
    pub fn with_capacity(&self, n: usize) -> Vec<f32> {
        let mut v = self.take(n).unwrap_or_else(|| Vec::with_capacity(n));
        v.clear();
        v
    }

    /// Keeps `v` for reuse (when it is large enough), dropping the oldest kept buffers to stay
    /// within the bound.
    pub fn recycle(&self, v: Vec<f32>) {
        let size = bytes_of(&v);
        if !(self.min_bytes..=self.max_bytes).contains(&size) {
            return;
        }
        let mut evicted = Vec::new();
        {
            let mut c = self.lock();
            while c.bytes + size > self.max_bytes {
                let old = c.free.remove(0);
                c.bytes -= bytes_of(&old);
                evicted.push(old);
            }
            c.bytes += size;
            c.free.push(v);
        }
        // Freed outside the lock (unmapping takes a while).
        drop(evicted);
    }

    /// Frees every kept buffer; returns the bytes freed.
    pub fn release(&self) -> usize {
        let free = {
            let mut c = self.lock();
            c.bytes = 0;
            std::mem::take(&mut c.free)
        };
        free.iter().map(bytes_of).sum()
    }

    /// Bytes of buffers kept now.
    pub fn cached_bytes(&self) -> usize {
        self.lock().bytes
    }
}

/// The process's cache, behind the functions below.
static GLOBAL: BufferCache = BufferCache::new(MIN_BYTES, MAX_CACHED_BYTES);

/// `n` zeros, in a kept buffer where one fits.
pub fn zeroed(n: usize) -> Vec<f32> {
    GLOBAL.zeroed(n)
}

/// An empty vector with room for `n` values, a kept buffer where one fits.
pub fn with_capacity(n: usize) -> Vec<f32> {
    GLOBAL.with_capacity(n)
}

/// `n` values of unspecified content for a caller that overwrites them all (see
/// [`BufferCache::overwritable`]).
pub fn overwritable(n: usize) -> Vec<f32> {
    GLOBAL.overwritable(n)
}

/// Keeps `v` for reuse when it is large enough (an op output being dropped).
pub fn recycle(v: Vec<f32>) {
    GLOBAL.recycle(v)
}

/// Frees every buffer the process keeps; returns the bytes freed.
pub fn release() -> usize {
    GLOBAL.release()
}

/// Bytes of buffers the process keeps now.
pub fn cached_bytes() -> usize {
    GLOBAL.cached_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache of its own per test (the process's one is shared with every other test).
    const MIN: usize = 1024;
    const MAX: usize = 16 * 1024;

    #[test]
    fn reused_buffers_come_back_zeroed_and_sized() {
        let c = BufferCache::new(MIN, MAX);
        let n = MIN; // 4 KiB of f32
        let mut v = c.zeroed(n);
        v.iter_mut().for_each(|x| *x = 7.0);
        let ptr = v.as_ptr();
        c.recycle(v);
        assert_eq!(c.cached_bytes(), 4 * n);
        // A smaller request takes it, all zeros and of the asked length.
        let w = c.zeroed(n - 100);
        assert_eq!((w.as_ptr(), w.len()), (ptr, n - 100));
        assert!(w.iter().all(|&x| x == 0.0));
        assert_eq!(c.cached_bytes(), 0);
        c.recycle(w);
        let e = c.with_capacity(n / 2 + 1);
        assert_eq!((e.as_ptr(), e.len()), (ptr, 0));
        c.recycle(e);
        // An overwritable buffer keeps the old values it has room for and zero-fills the rest.
        let mut o = c.overwritable(n - 50);
        assert_eq!((o.as_ptr(), o.len()), (ptr, n - 50));
        o.iter_mut().for_each(|x| *x = 3.0);
        o.truncate(n - 60);
        c.recycle(o);
        let o = c.overwritable(n - 50);
        assert_eq!((o.as_ptr(), o.len()), (ptr, n - 50));
        assert!(o[..n - 60].iter().all(|&x| x == 3.0) && o[n - 60..].iter().all(|&x| x == 0.0));
        c.recycle(o);
        assert_eq!(c.release(), 4 * n);
        assert_eq!(c.cached_bytes(), 0);
    }

    #[test]
    fn small_buffers_and_wasteful_reuse_are_left_to_the_allocator() {
        let c = BufferCache::new(MIN, MAX);
        c.recycle(vec![1.0; 16]);
        assert_eq!(c.cached_bytes(), 0, "small buffers are not kept");
        let big = vec![1.0f32; 2048];
        let ptr = big.as_ptr();
        c.recycle(big);
        assert_eq!(c.cached_bytes(), 8192);
        // Under half the kept capacity: a fresh buffer.
        let half = c.zeroed(1023);
        assert_ne!(half.as_ptr(), ptr);
        assert_eq!(c.cached_bytes(), 8192);
        // Larger than any kept one: a fresh buffer too.
        let more = c.zeroed(2049);
        assert_eq!((more.len(), c.cached_bytes()), (2049, 8192));
        // The smallest buffer that fits is the one taken.
        c.recycle(vec![0f32; 1500]);
        assert_eq!(c.zeroed(1400).capacity(), 1500);
    }

    #[test]
    fn the_total_kept_is_bounded_oldest_first() {
        let c = BufferCache::new(MIN, MAX);
        let quarter = MAX / 4 / size_of::<f32>();
        let first = vec![0f32; quarter];
        let first_ptr = first.as_ptr() as usize;
        c.recycle(first);
        let mut kept = Vec::new();
        for _ in 0..4 {
            let v = vec![0f32; quarter];
            kept.push(v.as_ptr() as usize);
            c.recycle(v);
        }
        assert_eq!(c.cached_bytes(), MAX);
        let now: Vec<usize> = c.lock().free.iter().map(|v| v.as_ptr() as usize).collect();
        assert!(!now.contains(&first_ptr), "the oldest was evicted");
        assert_eq!(now, kept);
        // Larger than the whole bound: not kept, nothing evicted.
        c.recycle(vec![0f32; MAX / size_of::<f32>() + 1]);
        assert_eq!(c.cached_bytes(), MAX);
    }
}
