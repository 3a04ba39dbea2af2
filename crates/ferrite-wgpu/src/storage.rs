//! Device memory: one wgpu storage buffer per tensor storage.

use std::any::Any;

use ferrite_tensor::BackendStorage;

/// A storage buffer of `len` bytes (the buffer itself is rounded up to whole 4-byte words, at
/// least one, as WGSL arrays of `u32`/`f32` need).
#[derive(Debug)]
pub struct WgpuStorage {
    pub(crate) buffer: wgpu::Buffer,
    len: usize,
}

impl WgpuStorage {
    /// Bytes the buffer for `len` bytes of data takes.
    pub fn padded(len: usize) -> u64 {
        (len.max(4).div_ceil(4) * 4) as u64
    }

    pub(crate) fn new(device: &wgpu::Device, len: usize, label: &str) -> Self {
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: Self::padded(len),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        WgpuStorage { buffer, len }
    }
}

impl BackendStorage for WgpuStorage {
    fn len_bytes(&self) -> usize {
        self.len
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
